"""Cross-session micro-batching: concurrent requests for one model run as one batch.

A caller's item waits at most `max_wait_s` (a few milliseconds) for items from other threads
(other sessions' turns), up to `max_batch`, but only under load (another request was still
pending or running when it arrived): a lone user, even one asking in quick succession, never
pays the wait. One of the waiting callers (the leader) runs the whole batch and hands every
caller its own row. One batch runs at a time, and
the next leader takes its batch only when the model is free, so the requests that arrive while
a batch runs join the next one (batches grow with the load instead of queueing one by one).
Order is preserved, and if the batch fails, each item is retried alone so that a failing item
fails only its own request.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
RECENT_BATCHES = 1000
BATCH_WAIT_S = 0.005  # how long a request waits for others to share its forward pass
# Images per shared forward pass. On CPU, batches beyond a few images lose throughput (the
# starter classifier at 288 px on 2 cores: 18 img/s at batch 1, 22 at 2, 21 at 4, 15 at 8, 12
# at 16); a GPU gains from larger ones.
CPU_MAX_BATCH, ACCELERATOR_MAX_BATCH = 4, 16


class MicroBatcher(Generic[Item, Result]):
    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Sequence[Result]],
        *,
        max_batch: int = 16,
        max_wait_s: float = 0.008,
    ) -> None:
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._pending: list[tuple[Item, Future[Result]]] = []
        self._condition = threading.Condition()
        self._leader_active = False
        self._running = threading.Lock()  # held while a batch runs
        # Sizes of the latest batches run (for benchmarks and tests); bounded, as a server
        # runs batches for as long as it lives.
        self.batches: deque[int] = deque(maxlen=RECENT_BATCHES)

    def submit(self, item: Item) -> Result:
        """The result for one item; blocks the calling thread until its batch has run."""
        future: Future[Result] = Future()
        with self._condition:
            busy = bool(self._pending) or self._running.locked()  # another request in flight
            self._pending.append((item, future))
            lead = not self._leader_active
            if lead:
                self._leader_active = True
            elif len(self._pending) >= self.max_batch:
                self._condition.notify_all()  # a full batch need not wait any longer
        if lead:
            self._lead(wait=busy)
        return future.result()

    def _lead(self, wait: bool = True) -> None:
        deadline = time.monotonic() + (self.max_wait_s if wait else 0.0)
        with self._running:  # while the previous batch runs, this one fills up
            with self._condition:
                while len(self._pending) < self.max_batch:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._condition.wait(left)
                batch = self._pending[: self.max_batch]
                self._pending = self._pending[self.max_batch :]
                # Whoever is still waiting leads the next batch once this one is taken.
                self._leader_active = False
                successor = self._pending[0][1] if self._pending else None
            self.batches.append(len(batch))
            self._run(batch)
        if successor is not None:
            threading.Thread(target=self._lead_next, daemon=True).start()

    def _lead_next(self) -> None:
        with self._condition:
            if self._leader_active or not self._pending:
                return
            self._leader_active = True
        self._lead()

    def _run(self, batch: list[tuple[Item, Future[Result]]]) -> None:
        try:
            results = self._run_batch([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} returned {len(results)} results")
        except Exception:
            # Retry alone so that one bad item cannot fail the other sessions' requests.
            for item, future in batch:
                try:
                    future.set_result(self._run_batch([item])[0])
                except Exception as error:  # the item's own failure, raised in its caller
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)


def model_batcher(
    run_batch: Callable[[Sequence[Item]], Sequence[Result]], device: str, wait_s: float
) -> MicroBatcher[Item, Result]:
    """The batcher for one model's forward passes on `device`. A wait of zero or less turns
    batching off: every request runs alone and never waits."""
    largest = CPU_MAX_BATCH if device == "cpu" else ACCELERATOR_MAX_BATCH
    return MicroBatcher(
        run_batch, max_batch=largest if wait_s > 0 else 1, max_wait_s=max(wait_s, 0.0)
    )

"""A circuit breaker: after repeated LLM failures, stop asking for a while.

A slow or down LLM must not make every turn wait for its timeouts. After `threshold`
consecutive failures the circuit opens and the planner goes straight to the embedded planner;
after `cooldown_s` one trial request is let through (half-open), and a success closes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(
        self,
        threshold: int = 3,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half_open" if self._cooled_down() else "open"

    def allows(self) -> bool:
        """Whether a request may go to the LLM now."""
        with self._lock:
            return self._opened_at is None or self._cooled_down()

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self.threshold:
                self._opened_at = self._clock()  # (re)open: a failed trial waits a full cooldown

    def _cooled_down(self) -> bool:
        assert self._opened_at is not None
        return self._clock() - self._opened_at >= self.cooldown_s

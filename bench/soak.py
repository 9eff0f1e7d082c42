"""Soak test: concurrent clients on a loopback server for minutes, watching for errors and
memory growth.

Each of N client threads loops until the time is up: create a session, upload a development
image, ask 2-3 questions, delete the session. The server's resident memory (RSS, with its
child processes) is sampled every few seconds. Prints and writes (bench/results/soak.json,
and a Markdown table in soak.md beside it) request and error counts, latency percentiles, RSS
at start, after warm-up and at the end, and the growth per 100 sessions after warm-up. Exits 1
when any request failed or RSS grew by more than --max-growth-mb after warm-up (warm-up: lazy
model loads, caches filling).

    python bench/soak.py [--minutes 10] [--clients 4] [--max-growth-mb 150]
    python bench/soak.py --url http://127.0.0.1:8000 --pid 1234   # a server already running
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import RESULTS, Target, dev_images, percentile, write_report

QUESTIONS = [
    "Is there a pleural effusion?",
    "Where is it?",
    "What do you see?",
    "How big is the heart?",
    "Why did you say that?",
    "Write a report",
]


@dataclass
class Record:
    """What the clients did: every request's latency, errors, finished sessions."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    session_times: list[float] = field(default_factory=list)  # when each session finished
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, kind: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = call(*args, **kwargs)
        with self.lock:
            self.latencies[kind].append(time.perf_counter() - started)
        return result

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)


def client_loop(url: str, images: list[Path], seed: int, deadline: float, record: Record) -> None:
    """One client: whole sessions, one after another, until the deadline."""
    import httpx

    from radpilot.app.client import ApiClientError, Client

    rng = random.Random(seed)
    with Client(url, timeout=300) as rp:
        while time.monotonic() < deadline:
            image = rng.choice(images)
            questions = rng.sample(QUESTIONS, rng.choice([2, 3]))
            try:
                session = record.timed("create", rp.create_session)
                record.timed("upload", rp.upload_study, session, image)
                for question in questions:
                    answer = record.timed("ask", rp.ask, session, question)
                    if not (answer.claims or answer.clarification):
                        record.error(f"empty answer to {question!r}")
                record.timed("delete", rp.delete_session, session)
                with record.lock:
                    record.session_times.append(time.monotonic())
            except (ApiClientError, httpx.HTTPError) as error:
                record.error(f"{type(error).__name__}: {error}")


def prime(url: str, image: Path, record: Record) -> None:
    """One session asking every question once, so that lazily loaded models are in memory
    before the 'after warm-up' reading, however short the run."""
    from radpilot.app.client import Client

    with Client(url, timeout=300) as rp:
        session = record.timed("create", rp.create_session)
        record.timed("upload", rp.upload_study, session, image)
        for question in QUESTIONS:
            record.timed("ask", rp.ask, session, question)
        record.timed("delete", rp.delete_session, session)


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its children, in MB; raises ProcessLookupError once
    the process is gone. Threads and children that end while being read are skipped."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            process = psutil.Process(pid)
            total = process.memory_info().rss
            for child in process.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += child.memory_info().rss
        except psutil.NoSuchProcess:
            raise ProcessLookupError(pid) from None
        return float(total) / 2**20
    kilobytes = _vm_rss_kb(pid)
    if kilobytes is None:
        raise ProcessLookupError(pid)
    children: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                children += [int(child) for child in (task / "children").read_text().split()]
    return (kilobytes + sum(_vm_rss_kb(child) or 0 for child in children)) / 1024


def _vm_rss_kb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None  # a zombie has no memory left to report


def sample_rss(
    pid: int,
    every_s: float,
    stop: threading.Event,
    record: Record,
    samples: list[tuple[float, float, int]],
) -> None:
    """(time, RSS MB, sessions finished so far) every `every_s` seconds until stopped."""
    while True:
        with record.lock:
            sessions = len(record.session_times)
        try:
            samples.append((time.monotonic(), rss_mb(pid), sessions))
        except ProcessLookupError:
            record.error(f"the server (pid {pid}) is gone")
            return
        if stop.wait(every_s):
            return


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(state_dir: Path, log: Any) -> tuple[str, subprocess.Popen[bytes]]:
    """`radpilot serve` on a free loopback port; returns once /readyz says ready."""
    import httpx

    port = free_port()
    env = {**os.environ, "RADPILOT_STATE_DIR": str(state_dir), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "radpilot.app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} at start")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return url, process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise TimeoutError("the server was not ready within 300 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def median_between(samples: list[tuple[float, float, int]], start: float, end: float) -> float:
    window = [rss for at, rss, _ in samples if start <= at <= end]
    return statistics.median(window) if window else min(samples, key=lambda s: abs(s[0] - end))[1]


def warmup_end(
    args: argparse.Namespace, record: Record, began: float, primed: float
) -> float | None:
    """When warm-up is over: after the priming session, the --warmup-fraction of the run and
    the first --warmup-sessions sessions. The server's anatomy cache keeps 32 studies and
    about half the sessions ask a measuring question, so it is full after some 64 sessions;
    its thread pool's allocator arenas grow as threads join in. None if never reached."""
    finished = sorted(record.session_times)
    if len(finished) < args.warmup_sessions:
        return None
    by_sessions = finished[args.warmup_sessions - 1] if args.warmup_sessions else began
    return max(primed, began + args.minutes * 60 * args.warmup_fraction, by_sessions)


def summarise(
    args: argparse.Namespace,
    record: Record,
    samples: list[tuple[float, float, int]],
    began: float,
    primed: float,
    ended: float,
) -> dict[str, Any]:
    every = [value for values in record.latencies.values() for value in values]

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "count": len(values),
            "p50_ms": round(percentile(values, 0.50) * 1000, 1),
            "p95_ms": round(percentile(values, 0.95) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1),
        }

    # Readings are medians over a window (RSS swings by ~100 MB with the turns in flight):
    # the first window after warm-up, and the last of the run.
    window = args.rss_window_s
    warm_end = warmup_end(args, record, began, primed)
    rss_end = median_between(samples, ended - window, ended)
    growth = per_100 = slope = rss_warm = None
    sessions_after = 0
    if warm_end is not None:
        rss_warm = median_between(samples, warm_end, warm_end + window)
        growth = rss_end - rss_warm
        sessions_after = len([t for t in record.session_times if t > warm_end])
        per_100 = round(growth / sessions_after * 100, 2) if sessions_after else None
        after = [sample for sample in samples if sample[0] >= warm_end]
        if len({sample[2] for sample in after}) >= 2:  # RSS against sessions done: the trend
            fit = statistics.linear_regression([x[2] for x in after], [x[1] for x in after])
            slope = round(fit.slope * 100, 2)
    errors = len(record.errors)
    ok = bool(every) and errors == 0 and (growth is None or growth <= args.max_growth_mb)
    return {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "minutes": args.minutes,
            "clients": args.clients,
            "warmup_fraction": args.warmup_fraction,
            "warmup_sessions": args.warmup_sessions,
            "sample_s": args.sample_s,
            "rss_window_s": window,
            "max_growth_mb": args.max_growth_mb,
            "cpus": os.cpu_count(),
        },
        "duration_s": round(ended - began, 1),
        "warmup_s": None if warm_end is None else round(warm_end - began, 1),
        "sessions": len(record.session_times),
        "sessions_after_warmup": sessions_after,
        "requests": len(every),
        "requests_per_s": round(len(every) / (ended - began), 2),
        "errors": errors,
        "error_examples": record.errors[:10],
        "latency": {
            "all": stats(every) if every else None,
            **{kind: stats(values) for kind, values in record.latencies.items()},
        },
        "rss_mb": {
            "start": round(samples[0][1], 1),
            "after_warmup": None if rss_warm is None else round(rss_warm, 1),
            "end": round(rss_end, 1),
            "max": round(max(s[1] for s in samples), 1),
        },
        "growth_after_warmup_mb": None if growth is None else round(growth, 1),
        "growth_per_100_sessions_mb": per_100,
        "trend_per_100_sessions_mb": slope,
        "ok": ok,
        "samples": [(round(at - began, 1), round(rss, 1), n) for at, rss, n in samples],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--images", type=int, default=20, help="development images to rotate")
    parser.add_argument(
        "--warmup-fraction",
        type=float,
        default=0.2,
        help="share of the run before the 'after warm-up' RSS reading",
    )
    parser.add_argument(
        "--warmup-sessions",
        type=int,
        default=80,
        help="sessions finished before the 'after warm-up' RSS reading",
    )
    parser.add_argument(
        "--rss-window-s",
        type=float,
        default=30.0,
        help="RSS readings are medians over this many seconds",
    )
    parser.add_argument("--sample-s", type=float, default=2.0, help="RSS sampling interval")
    parser.add_argument(
        "--max-growth-mb",
        type=float,
        default=150.0,
        help="fail when RSS grows more than this after warm-up",
    )
    parser.add_argument("--url", help="use this running server instead of starting one")
    parser.add_argument("--pid", type=int, help="the PID of the --url server (for its RSS)")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args()
    if args.url and not args.pid:
        parser.error("--url needs --pid: the soak measures the server's memory")

    images = dev_images(args.images)
    if not images:
        return 2
    with ExitStack() as stack:
        if args.url:
            url, pid = args.url, args.pid
        else:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
            log = stack.enter_context((scratch / "server.log").open("wb"))
            url, process = start_server(scratch / "state", log)
            stack.callback(stop_server, process)
            pid = process.pid
            print(f"server pid {pid} on {url}, state in {scratch}", flush=True)
        record, stop = Record(), threading.Event()
        samples: list[tuple[float, float, int]] = []
        sampler = threading.Thread(
            target=sample_rss, args=(pid, args.sample_s, stop, record, samples)
        )
        began = time.monotonic()
        sampler.start()
        deadline = began + args.minutes * 60
        prime(url, images[0], record)
        primed = time.monotonic()  # every model is loaded by now
        clients = [
            threading.Thread(target=client_loop, args=(url, images, seed, deadline, record))
            for seed in range(args.clients)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        ended = time.monotonic()
        stop.set()
        sampler.join()
        if not samples or samples[-1][0] < ended - 2 * args.sample_s - 5:
            record.error("RSS sampling stopped before the end of the run")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        disk_mb = None
        if not args.url:
            stored = [p for p in (scratch / "state").rglob("*") if p.is_file()]
            models = scratch / "state" / "models"  # the weights cache: not the soak's doing
            disk_mb = sum(p.stat().st_size for p in stored if models not in p.parents) / 2**20
            shutil.copyfile(scratch / "server.log", args.out.with_suffix(".server.log"))
    result = summarise(args, record, samples, began, primed, ended)
    # Deleting a session removes its conversation, studies and overlays: what stays is the
    # databases, the index and the logs, so this should not grow with the sessions run.
    result["state_dir_mb_without_models"] = None if disk_mb is None else round(disk_mb, 1)
    targets = [
        Target("errors", "==", 0),
        Target("growth_after_warmup_mb", "<=", args.max_growth_mb, "MB"),
    ]
    write_report(args.out, result, targets)  # the JSON, and a Markdown table beside it
    shown = {key: value for key, value in result.items() if key != "samples"}
    print(json.dumps(shown, indent=2))
    verdict = "OK" if result["ok"] else "FAILED"
    growth = result["growth_after_warmup_mb"]
    print(
        f"soak {verdict}: {result['errors']} errors, RSS growth after warm-up "
        f"{'not measured (warm-up not over: run longer)' if growth is None else f'{growth} MB'}"
        f" (bound {args.max_growth_mb:g} MB); written to {args.out}"
    )
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

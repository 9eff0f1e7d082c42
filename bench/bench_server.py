"""The server under load, with and without cross-session batching, side by side in one run.

Two fresh `radpilot serve` on loopback, batching off (RADPILOT_BATCH_WAIT_MS=0) and on (the
default), each timed from cold start to /readyz. Then, in alternating rounds on both: one
sequential client (sessions one after the other), then N concurrent sessions, each uploading a
real image and asking three questions. Prints errors, p50/p95 question latency, throughput,
the ratio of concurrent to sequential throughput, the batch gain (batched ÷ unbatched median
concurrent throughput) and each server's resident memory with the default models loaded
(target ≤ 2.5 GB).

    python bench/bench_server.py [--sessions 50] [--sequential 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from common import Target, dev_images, percentile, write_results

QUESTIONS = ["Is there a pleural effusion?", "Is there cardiomegaly?", "What do you see?"]
MODES = {"unbatched": 0.0, "batched": 5.0}  # RADPILOT_BATCH_WAIT_MS
LOADS = ("sequential", "concurrent")
TARGETS = [
    *(Target(f"{mode}.{load}.errors", "==", 0) for mode in MODES for load in LOADS),
    *(Target(f"{mode}.cold_start_s", "<", 20, "s") for mode in MODES),  # ready < 20 s
    *(Target(f"{mode}.rss_mb_after_load", "<=", 2500, "MB") for mode in MODES),  # ≤ 2.5 GB
    Target("batch_gain", ">", 1.0),
]


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def server(state: Path, batch_wait_ms: float) -> Any:
    from radpilot.app.client import Client
    from tests.server import free_port

    port = free_port()
    env = {**os.environ, "RADPILOT_STATE_DIR": str(state),
           "RADPILOT_BATCH_WAIT_MS": str(batch_wait_ms)}  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "radpilot.app.cli", "serve", "--port", str(port),
         "--rate-limit", "100000"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        with Client(url) as client:
            client.wait_ready(timeout=300)
        yield url, process.pid, time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)


def conversation(url: str, image: Path) -> tuple[list[float], int]:
    """One session: upload, three questions. (question latencies in ms, errors)."""
    from radpilot.app.client import Client

    latencies, errors = [], 0
    try:
        with Client(url, timeout=600) as client:
            session = client.create_session()
            client.upload_study(session, image)
            for question in QUESTIONS:
                started = time.perf_counter()
                client.ask(session, question)
                latencies.append((time.perf_counter() - started) * 1000)
            client.delete_session(session)
    except Exception as error:  # counted, and the benchmark goes on
        print(f"  error: {type(error).__name__}: {error}")
        errors += 1
    return latencies, errors


def load(url: str, images: list[Path], workers: int) -> dict[str, float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda image: conversation(url, image), images))
    elapsed = time.perf_counter() - started
    latencies = [ms for done, _ in results for ms in done]
    return {
        "sessions": len(images), "errors": sum(e for _, e in results),
        "questions_per_s": round(len(latencies) / elapsed, 3),
        "p50_ms": round(percentile(latencies, 0.5), 1) if latencies else 0.0,
        "p95_ms": round(percentile(latencies, 0.95), 1) if latencies else 0.0,
        "seconds": round(elapsed, 1),
    }  # fmt: skip


def merged(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """Several rounds of one load: errors summed, the median round's throughput and latency."""
    median = sorted(rounds, key=lambda r: r["questions_per_s"])[len(rounds) // 2]
    return {**median, "errors": sum(r["errors"] for r in rounds),
            "questions_per_s_by_round": [r["questions_per_s"] for r in rounds]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--sequential", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    images = dev_images(args.sessions)
    if images is None:
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.server
    with ExitStack() as stack:
        servers = {}
        for mode, wait_ms in MODES.items():  # one after the other: cold starts do not overlap
            state = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            url, pid, cold_s = stack.enter_context(server(state, wait_ms))
            conversation(url, images[0])  # warm-up: every default model loads once
            servers[mode] = (url, pid, {"batch_wait_ms": wait_ms, "cold_start_s": round(cold_s, 1),
                                        "rss_mb_warm": round(resident_mb(pid))})  # fmt: skip
        loads: dict[str, dict[str, list[dict[str, float]]]] = {
            mode: {name: [] for name in LOADS} for mode in MODES
        }
        # Both servers stay up and the modes alternate round by round (the order flipping each
        # round), so that the machine's drift and noise hit both alike.
        for round_ in range(args.rounds):
            for mode in list(MODES) if round_ % 2 == 0 else list(MODES)[::-1]:
                url = servers[mode][0]
                loads[mode]["sequential"].append(load(url, images[: args.sequential], workers=1))
                loads[mode]["concurrent"].append(load(url, images, workers=len(images)))
                print(f"round {round_ + 1}, {mode}: {loads[mode]['concurrent'][-1]}")
        results: dict[str, Any] = {}
        for mode, (_, pid, facts) in servers.items():
            alone, together = (merged(loads[mode][name]) for name in LOADS)
            results[mode] = {**facts, "rss_mb_after_load": round(resident_mb(pid)),
                             "sequential": alone, "concurrent": together,
                             "concurrency_ratio": round(together["questions_per_s"]
                                                        / alone["questions_per_s"], 3)}  # fmt: skip
    for mode, r in results.items():
        c = r["concurrent"]
        print(f"{mode}: cold start {r['cold_start_s']} s, RSS {r['rss_mb_warm']} MB warm / "
              f"{r['rss_mb_after_load']} MB after load; sequential "
              f"{r['sequential']['questions_per_s']} q/s; {c['sessions']} concurrent sessions "
              f"x {args.rounds} rounds: {c['errors']} errors, median round p50 {c['p50_ms']} ms, "
              f"p95 {c['p95_ms']} ms, {c['questions_per_s']} q/s "
              f"({r['concurrency_ratio']}x sequential)")  # fmt: skip
    gain = round(results["batched"]["concurrent"]["questions_per_s"]
                 / results["unbatched"]["concurrent"]["questions_per_s"], 3)  # fmt: skip
    print(f"batch gain (median concurrent throughput, on ÷ off, alternating rounds): {gain}")
    write_results("server", {**results, "rounds": args.rounds, "batch_gain": gain}, TARGETS)
    failed = sum(r["concurrent"]["errors"] + r["sequential"]["errors"] for r in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

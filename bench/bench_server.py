"""The server under load, with and without cross-session batching, side by side in one run.

For each mode (batching off: RADPILOT_BATCH_WAIT_MS=0; on: the default), a fresh
`radpilot serve` on loopback: cold start to /readyz, one sequential client (sessions one after
the other), then N concurrent sessions, each uploading a real image and asking three
questions. Prints errors, p50/p95 question latency, throughput, the ratio of concurrent to
sequential throughput, the batch gain (batched ÷ unbatched concurrent throughput) and the
server's resident memory with the default models loaded (target ≤ 2.5 GB).

    python bench/bench_server.py [--sessions 50] [--sequential 4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import Target, dev_images, percentile, write_results

QUESTIONS = ["Is there a pleural effusion?", "Is there cardiomegaly?", "What do you see?"]
MODES = ("unbatched", "batched")
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


def run_mode(
    name: str, batch_wait_ms: float, images: list[Path], sequential: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as state, server(Path(state), batch_wait_ms) as (
        url, pid, cold_s,
    ):  # fmt: skip
        conversation(url, images[0])  # warm-up: every default model loads once
        warm_mb = resident_mb(pid)
        alone = load(url, images[:sequential], workers=1)
        together = load(url, images, workers=len(images))
        result = {"mode": name, "cold_start_s": round(cold_s, 1), "rss_mb_warm": round(warm_mb),
                  "rss_mb_after_load": round(resident_mb(pid)), "sequential": alone,
                  "concurrent": together,
                  "concurrency_ratio": round(together["questions_per_s"]
                                             / alone["questions_per_s"], 3)}  # fmt: skip
    print(
        f"{name}: cold start {result['cold_start_s']} s, RSS {result['rss_mb_warm']} MB warm "
        f"/ {result['rss_mb_after_load']} MB after load; sequential {alone['questions_per_s']} "
        f"q/s; {together['sessions']} concurrent sessions: {together['errors']} errors, "
        f"p50 {together['p50_ms']} ms, p95 {together['p95_ms']} ms, "
        f"{together['questions_per_s']} q/s ({result['concurrency_ratio']}x sequential)"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--sequential", type=int, default=4)
    args = parser.parse_args()
    images = dev_images(args.sessions)
    if images is None:
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.server
    unbatched = run_mode("batching off", 0.0, images, args.sequential)
    batched = run_mode("batching on (5 ms)", 5.0, images, args.sequential)
    gain = round(batched["concurrent"]["questions_per_s"]
                 / unbatched["concurrent"]["questions_per_s"], 3)  # fmt: skip
    print(f"batch gain (concurrent throughput, on ÷ off, same run): {gain}")
    write_results(
        "server", {"unbatched": unbatched, "batched": batched, "batch_gain": gain}, TARGETS
    )
    failed = unbatched["concurrent"]["errors"] + batched["concurrent"]["errors"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

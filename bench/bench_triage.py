"""Triage throughput against a bare classifier loop over the same files, in one run.

`radpilot triage` decodes, de-identifies and checks every study in memory and classifies them
in batches; the bare loop decodes each file the same way and calls the model on it alone.
Rounds alternate (bare, triage, bare, triage, ...) so that a busy moment of the machine hits
both. Prints studies per minute of each and their ratio (target: triage >= 0.8 of the bare
loop, 2 CPU cores).

    python bench/bench_triage.py [--images 48] [--rounds 2] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Target, dev_images, write_results

TARGETS = [Target("throughput_ratio_triage_vs_bare", ">=", 0.8)]


def bare_loop(paths: list[Path], tools: Any) -> None:
    model = tools.models.findings_model()
    for path in paths:
        model.predict([tools.studies.decode(path.read_bytes(), path.name).pixels])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    from radpilot.app.triage import TriageSource, triage
    from radpilot.settings import Settings
    from radpilot.tools.base import ToolContext

    paths = dev_images(args.images)
    if paths is None:
        return 2
    sources = [TriageSource(source=p.name, read=p.read_bytes) for p in paths]
    with tempfile.TemporaryDirectory() as scratch:
        tools = ToolContext.create(Settings(), root=Path(scratch))
        bare_loop(paths[:4], tools)  # load the model, warm the caches
        seconds = {"bare": 0.0, "triage": 0.0}
        for _ in range(args.rounds):
            started = time.perf_counter()
            bare_loop(paths, tools)
            seconds["bare"] += time.perf_counter() - started
            started = time.perf_counter()
            worklist = triage(sources, tools, batch_size=args.batch_size)
            seconds["triage"] += time.perf_counter() - started
    studies = len(paths) * args.rounds
    per_minute = {name: round(60 * studies / spent, 1) for name, spent in seconds.items()}
    result = {
        "images": len(paths), "rounds": args.rounds, "batch_size": args.batch_size,
        "bare_studies_per_minute": per_minute["bare"],
        "triage_studies_per_minute": per_minute["triage"],
        "throughput_ratio_triage_vs_bare": round(per_minute["triage"] / per_minute["bare"], 3),
        "ranked": len(worklist.items),
    }  # fmt: skip
    write_results("triage", result, TARGETS)
    return 0


if __name__ == "__main__":
    sys.exit(main())

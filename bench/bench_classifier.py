"""Classifier latency and tool-layer overhead, measured side by side in one run.

Prints warm single-image latency (p50/p95) of the starter classifier through the
`classify_findings` tool and as a bare `model(batch)` call on the same images, and the ratio of
their throughputs (target >= 0.9; warm tool latency target < 150 ms on 2 CPU cores).

    python bench/bench_classifier.py [--images 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import Target, dev_images, percentile, write_results

TARGETS = [
    Target("tool_p50_ms", "<", 150, "ms"),
    Target("throughput_ratio_tool_vs_bare", ">=", 0.9),
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=30)
    args = parser.parse_args()

    import torch

    from radpilot.settings import Settings
    from radpilot.tools.base import ToolContext
    from radpilot.tools.registry import default_registry

    paths = dev_images(args.images)
    if paths is None:
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        ctx = ToolContext.create(Settings(), root=Path(scratch))
        registry = default_registry()
        studies = [ctx.studies.ingest_file(path).id for path in paths]
        model = ctx.models.findings_model()
        inputs = [model.inputs([ctx.studies.pixels(s)]) for s in studies]
        registry.run("classify_findings", {"study_id": studies[0]}, ctx)  # warm-up
        with torch.no_grad():
            model.model(inputs[0])
        tool_ms, bare_ms = [], []
        for study_id, batch in zip(studies, inputs, strict=True):
            started = time.perf_counter()
            registry.run("classify_findings", {"study_id": study_id}, ctx)
            tool_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            with torch.no_grad():
                model.model(batch)
            bare_ms.append((time.perf_counter() - started) * 1000)
    result = {
        "model": model.identity.name,
        "images": len(studies),
        "threads": torch.get_num_threads(),
        "tool_p50_ms": round(statistics.median(tool_ms), 1),
        "tool_p95_ms": round(percentile(tool_ms, 0.95), 1),
        "bare_p50_ms": round(statistics.median(bare_ms), 1),
        "bare_p95_ms": round(percentile(bare_ms, 0.95), 1),
        "throughput_ratio_tool_vs_bare": round(sum(bare_ms) / sum(tool_ms), 3),
    }
    write_results("classifier", result, TARGETS)
    print("| metric | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

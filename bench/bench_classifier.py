"""Classifier latency, tool-layer overhead and cross-request batching, side by side in one run.

Prints warm single-image latency (p50/p95) of the starter classifier through the
`classify_findings` tool and as a bare `model(batch)` call on the same images, and the ratio of
their throughputs (target >= 0.9; warm tool latency target < 150 ms on 2 CPU cores). Then the
micro-batcher on its own: `--clients` threads each sending single-image requests
(`predict_one`, as concurrent sessions do) to a model with batching off and to one with the
default wait, alternating rounds, and the ratio of their throughputs (the batch gain).
With `--baseline-rev REV`, also the shipped starter's warm single-image latency against the
starter bundle of that git revision, alternating image by image (target: within 1.5x).

    python bench/bench_classifier.py [--images 30] [--clients 16] [--rounds 3]
                                     [--baseline-rev REV]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Target, dev_images, percentile, write_results

TARGETS = [
    Target("tool_p50_ms", "<", 150, "ms"),
    Target("throughput_ratio_tool_vs_bare", ">=", 0.9),
    Target("concurrent.batch_gain", ">", 1.0),
    Target("against_baseline.latency_ratio", "<=", 1.5),
]
BUNDLE = "radpilot/tools/models/starter/starter-classifier"


def bundle_at_revision(revision: str, folder: Path) -> Path:
    """The starter classifier bundle as committed at `revision`, unpacked into `folder`."""
    import io
    import subprocess
    import tarfile

    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "archive", revision, BUNDLE], cwd=root, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / BUNDLE


def against_baseline(
    shipped: Any, pixels: list[Any], revision: str, scratch: Path
) -> dict[str, Any]:
    """Warm single-image `predict` of the shipped starter (already loaded) and of `revision`'s,
    alternating."""
    from radpilot.tools.models.findings import StarterFindingsModel

    models = {
        "shipped": shipped,
        # An earlier revision's bundle may predate operating points; only timing is measured.
        "baseline": StarterFindingsModel(
            bundle_at_revision(revision, scratch), batch_wait_s=0, require_operating_points=False
        ),
    }
    timings: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.predict(pixels[:1])  # warm-up
    for image in pixels:
        for name, model in models.items():
            started = time.perf_counter()
            model.predict([image])
            timings[name].append((time.perf_counter() - started) * 1000)
    shipped_ms, baseline_ms = (statistics.median(timings[n]) for n in ("shipped", "baseline"))
    return {
        "baseline_revision": revision,
        "shipped_backbone": shipped.card.architecture,
        "shipped_input_px": shipped.weights.input.size,
        "shipped_p50_ms": round(shipped_ms, 1),
        "baseline_p50_ms": round(baseline_ms, 1),
        "latency_ratio": round(shipped_ms / baseline_ms, 3),
    }


def concurrent_throughput(model: Any, prepared: list[Any], clients: int) -> float:
    """Images per second when `clients` threads each classify every image one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def client(_: int) -> None:
        for pixels in prepared:
            model.predict_one(pixels)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(client, range(clients)))
    return clients * len(prepared) / (time.perf_counter() - started)


def batching_gain(pixels: list[Any], clients: int, rounds: int) -> dict[str, Any]:
    """Batching off and on, alternating rounds so that machine noise hits both alike."""
    from radpilot.tools.models.batching import BATCH_WAIT_S
    from radpilot.tools.models.findings import StarterFindingsModel

    models = {"off": StarterFindingsModel(batch_wait_s=0), "on": StarterFindingsModel()}
    for model in models.values():
        model.predict_one(pixels[0])  # warm-up
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(rounds):
        for mode, model in models.items():
            rates[mode].append(concurrent_throughput(model, pixels, clients))
    sizes = models["on"].batcher.batches
    return {
        "clients": clients,
        "requests_per_mode": clients * len(pixels) * rounds,
        "batch_wait_ms": BATCH_WAIT_S * 1000,
        "off_images_per_s": round(statistics.median(rates["off"]), 2),
        "on_images_per_s": round(statistics.median(rates["on"]), 2),
        "mean_batch_size_on": round(sum(sizes) / len(sizes), 2) if sizes else None,
        "batch_gain": round(statistics.median(rates["on"]) / statistics.median(rates["off"]), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-rev", help="git revision whose starter bundle to compare")
    args = parser.parse_args()

    import torch

    from radpilot.assembly import build_registry
    from radpilot.settings import Settings
    from radpilot.tools.base import ToolContext

    paths = dev_images(args.images + 1)
    if paths is None:
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        ctx = ToolContext.create(Settings(), root=Path(scratch))
        registry = build_registry(Settings())
        warm_up, *studies = [ctx.studies.ingest_file(path).id for path in paths]
        model = ctx.models.findings_model()
        inputs = [model.inputs([ctx.studies.pixels(s)]) for s in studies]
        # On a study of its own: the tool keeps each study's probabilities, so a measured
        # study that had been warmed up on would cost nothing.
        registry.run("classify_findings", {"study_id": warm_up}, ctx)
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
        print(f"batching: {args.clients} concurrent clients, off and on, {args.rounds} rounds")
        pixels = [ctx.studies.pixels(s) for s in studies]
        concurrent = batching_gain(pixels[:8], args.clients, args.rounds)
        baseline = (
            against_baseline(model, pixels, args.baseline_rev, Path(scratch))
            if args.baseline_rev
            else None
        )
    result = {
        "model": model.identity.name,
        "images": len(studies),
        "threads": torch.get_num_threads(),
        "tool_p50_ms": round(statistics.median(tool_ms), 1),
        "tool_p95_ms": round(percentile(tool_ms, 0.95), 1),
        "bare_p50_ms": round(statistics.median(bare_ms), 1),
        "bare_p95_ms": round(percentile(bare_ms, 0.95), 1),
        "throughput_ratio_tool_vs_bare": round(sum(bare_ms) / sum(tool_ms), 3),
        "concurrent": concurrent,
        "against_baseline": baseline,
    }
    write_results("classifier", result, TARGETS)
    print("| metric | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

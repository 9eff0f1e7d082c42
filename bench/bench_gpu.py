"""Classifier and anatomy-segmentation throughput on a GPU: fp32 against fp16 autocast, and the
CPU, side by side in one run (`bench/gpu.sh` runs it under a time limit); and whether the
product's CUDA outputs (fp16 where it is used) agree with the CPU's.

    RADPILOT_DEVICE=cuda python bench/bench_gpu.py [--images 64] [--batch 32]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from common import write_results


def images(count: int) -> list[np.ndarray]:
    from common import dev_images
    from PIL import Image

    paths = dev_images(count) or []
    if paths:
        return [np.asarray(Image.open(p).convert("L"), dtype=np.float32) / 255 for p in paths]
    rng = np.random.default_rng(0)  # no data here: synthetic frames time the same kernels
    return [rng.random((512, 512), dtype=np.float32) for _ in range(count)]


def per_second(run: Callable[[], Any], count: int, repeats: int = 3) -> float:
    import torch

    run()  # warm-up (cuDNN autotuning, allocations)
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return round(count / best, 1)


def classifier(device: str, half: bool, frames: list[np.ndarray], batch: int) -> float:
    import torch

    from radpilot.tools.models.findings import StarterFindingsModel

    model = StarterFindingsModel(device=device)
    tensors = model.inputs(frames)
    autocast = torch.autocast("cuda", dtype=torch.float16) if half else contextlib.nullcontext()

    def run() -> None:
        with torch.no_grad(), autocast:
            for start in range(0, len(frames), batch):
                model.model(tensors[start : start + batch])

    return per_second(run, len(frames))


def lungs(device: str, half: bool, frames: list[np.ndarray]) -> float:
    import torch

    from radpilot.tools.models.anatomy_model import AnatomySegmenter
    from radpilot.tools.models.unet import model_input

    segmenter = AnatomySegmenter(device=device)
    # The bare forward pass, as for the classifier: `probabilities` would apply the product's
    # own fp16 autocast on CUDA and make the fp32 figure an fp16 one.
    inputs = [torch.from_numpy(model_input(frame, segmenter.size)[0][None]).to(device)
              for frame in frames]  # fmt: skip
    autocast = torch.autocast("cuda", dtype=torch.float16) if half else contextlib.nullcontext()

    def run() -> None:
        with torch.no_grad(), autocast:
            for batch in inputs:
                segmenter.model(batch)

    return per_second(run, len(frames))


def agreement(frames: list[np.ndarray], device: str = "cuda") -> dict[str, float]:
    """The product's path on `device` (fp16 autocast where `precision` allows it) against the
    CPU's fp32 on the same images: is fp16 safe here?"""
    from radpilot.tools.models.anatomy_model import AnatomySegmenter
    from radpilot.tools.models.findings import StarterFindingsModel
    from radpilot.training.evaluate_anatomy import dice

    on_device, on_cpu = (StarterFindingsModel(device=d).predict(frames) for d in (device, "cpu"))
    device_anatomy, cpu_anatomy = AnatomySegmenter(device=device), AnatomySegmenter(device="cpu")

    def lungs_of(segmenter: AnatomySegmenter, frame: np.ndarray) -> np.ndarray:
        masks = segmenter.predict(frame)
        return masks.right_lung | masks.left_lung

    lowest = min(dice(lungs_of(device_anatomy, f), lungs_of(cpu_anatomy, f)) for f in frames)
    largest = float(np.abs(on_device - on_cpu).max())
    return {"classifier_max_abs_probability_difference": round(largest, 4),
            "lungs_min_dice": round(lowest, 4)}  # fmt: skip


def main() -> int:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    frames = images(args.images)
    results: dict[str, Any] = {"cpu": {"classifier": classifier("cpu", False, frames, args.batch),
                                       "lungs": lungs("cpu", False, frames[:8])}}  # fmt: skip
    if torch.cuda.is_available():
        results["gpu"] = torch.cuda.get_device_name(0)
        for label, half in (("cuda_fp32", False), ("cuda_fp16", True)):
            results[label] = {"classifier": classifier("cuda", half, frames, args.batch),
                              "lungs": lungs("cuda", half, frames)}  # fmt: skip
        base = results["cuda_fp32"]
        results["fp16_speed_up"] = {k: round(results["cuda_fp16"][k] / base[k], 2) for k in base}
        results["gpu_vs_cpu"] = {k: round(results["cuda_fp16"][k] / results["cpu"][k], 1)
                                 for k in base}  # fmt: skip
        results["cuda_vs_cpu_outputs"] = agreement(frames[:8])
    else:
        print("no CUDA device: only the CPU figures are measured")
    for key, value in results.items():
        print(f"{key}: {value}")
    write_results("gpu", results)  # no stated targets: the table lists the figures
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

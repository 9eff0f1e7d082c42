"""The cost of a cardiothoracic-ratio measurement: the heart-and-lung anatomy model against the
previous pipeline's compute, side by side in one run.

- `mask`: what `measure` does now: the anatomy U-Net (4 softmax classes), the class
  probabilities resized back to the image, the most probable class per pixel, each structure's
  largest component, the CTR lines from the masks and the overlay PNG.
- `previous`: the compute of the pipeline it replaced: the same U-Net shape with one ("lung")
  output channel, one probability map resized back, the lungs' components, the brightness-
  profile heart between them, the CTR lines and the overlay PNG. Its weights are untrained
  (the lung-only model is no longer shipped); the cost of a forward pass does not depend on
  the weights' values.

Prints the median seconds per image of each, on the same real images in alternating rounds,
and their ratio (target ≤ 1.5).

    python bench/bench_measure.py [--images 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
from common import Target, dev_images, write_results

TARGETS = [Target("mask_over_previous", "<=", 1.5)]


def previous_pipeline(threads: int) -> Any:
    """A measurement the previous way (see the module docstring)."""
    import torch

    from radpilot.tools.anatomy import cardiothoracic
    from radpilot.tools.measure import draw_lines
    from radpilot.tools.models.anatomy_model import largest_component
    from radpilot.tools.models.unet import UNetConfig, build_unet, model_input, unletterbox
    from radpilot.training.evaluate_ctr import heart_from_profiles

    torch.set_num_threads(threads)
    model = build_unet(UNetConfig(out_channels=1)).eval()

    def measure(pixels: np.ndarray) -> float:
        inputs, placement = model_input(pixels, 256)
        with torch.no_grad():
            logits = model(torch.from_numpy(inputs[None]))[0, 0].numpy()
        lungs = unletterbox(1 / (1 + np.exp(-logits)), placement, pixels.shape) >= 0.5
        middle = pixels.shape[1] // 2
        right, left = lungs.copy(), lungs.copy()
        right[:, middle:], left[:, :middle] = False, False
        right, left = largest_component(right), largest_component(left)
        heart = heart_from_profiles(pixels, right, left)
        masks = {"right lung": right, "left lung": left, "heart": heart}
        heart_line, thorax_line = cardiothoracic(right, left, heart)
        draw_lines(pixels, masks, heart_line, thorax_line)
        return heart_line.width / thorax_line.width

    return measure


def mask_pipeline() -> Any:
    from radpilot.tools.anatomy import cardiothoracic
    from radpilot.tools.measure import draw_lines
    from radpilot.tools.models.anatomy_model import AnatomySegmenter

    segmenter = AnatomySegmenter()

    def measure(pixels: np.ndarray) -> float:
        masks = segmenter.predict(pixels)
        named = {"right lung": masks.right_lung, "left lung": masks.left_lung,
                 "heart": masks.heart}  # fmt: skip
        heart_line, thorax_line = cardiothoracic(masks.right_lung, masks.left_lung, masks.heart)
        draw_lines(pixels, named, heart_line, thorax_line)
        return heart_line.width / thorax_line.width

    return measure


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    paths = dev_images(args.images)
    if paths is None:
        return 0
    import torch

    from radpilot.tools.imaging import read_pixels

    images = [read_pixels(path) for path in paths]
    pipelines = {"mask": mask_pipeline(), "previous": previous_pipeline(torch.get_num_threads())}
    for measure in pipelines.values():
        measure(images[0])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in pipelines}
    for round_ in range(args.rounds):  # alternating, so drift and noise hit both alike
        for name in list(pipelines) if round_ % 2 == 0 else list(pipelines)[::-1]:
            for pixels in images:
                started = time.perf_counter()
                pipelines[name](pixels)
                seconds[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    results = {
        "images": len(images),
        "rounds": args.rounds,
        "image_sizes": sorted({f"{p.shape[1]}x{p.shape[0]}" for p in images}),
        "mask_median_ms": round(medians["mask"] * 1000, 1),
        "previous_median_ms": round(medians["previous"] * 1000, 1),
        "mask_over_previous": round(medians["mask"] / medians["previous"], 3),
    }
    for key, value in results.items():
        print(f"{key}: {value}")
    write_results("measure", results, TARGETS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

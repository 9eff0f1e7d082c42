"""Which lung is whiter: the starter lung masks' mean intensities against the NIH boxes.

`radpilot models evaluate opacity-side --data DIR --split train|test` reads images whose boxes
of opacifying findings (effusion, atelectasis, pneumonia, consolidation, mass, infiltrate) all
lie on one side of the patient, and "No Finding" images. For each margin of a grid it reports
how often the whiter lung (right minus left mean intensity beyond the margin) is the boxed
side, how many images it calls at all, and how often it calls a side on a normal film. The
answer's margin (`radpilot/agent/direct.py`, OPACITY_MARGIN) was chosen on the training
patients as the smallest with false calls on normal films at most 10 %.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from radpilot.data.devdata import read_nih, split_of
from radpilot.tools.imaging import read_pixels
from radpilot.tools.segment import mean_intensity

OPACIFYING = {"Effusion", "Atelectasis", "Pneumonia", "Consolidation", "Mass", "Infiltrate"}
MARGINS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10)
MIDLINE_BAND = 0.1  # a box whose centre lies this close to the midline has no side


class MarginResult(BaseModel):
    margin: float
    accuracy: float | None
    coverage: float
    false_calls_on_normal: float


class OpacityEvaluation(BaseModel):
    split: str
    one_sided_images: int
    normal_images: int
    margins: list[MarginResult]


def boxed_side(record: Any, width: int) -> str | None:
    """The patient's side of every opacifying box, when they agree (image left = right)."""
    sides = set()
    for box in record.boxes:
        if box.label not in OPACIFYING:
            continue
        x, _, w, _ = box.xywh
        offset = (x + w / 2) / width - 0.5
        if abs(offset) < MIDLINE_BAND:
            return None
        sides.add("right" if offset < 0 else "left")
    return sides.pop() if len(sides) == 1 else None


def evaluate_opacity(
    segmenter: Any, data: Path, split: str, limit: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> OpacityEvaluation:  # fmt: skip
    records = [r for r in read_nih(data) if split == "all" or split_of(r.patient_id) == split]
    sided: list[tuple[float, str]] = []
    normal: list[float] = []
    for number, record in enumerate(records[:limit] if limit else records, start=1):
        if record.labels and not any(b.label in OPACIFYING for b in record.boxes):
            continue
        pixels = read_pixels(data / record.image)
        masks = segmenter.predict(pixels)
        difference = mean_intensity(pixels, masks.right_lung) - mean_intensity(
            pixels, masks.left_lung
        )
        if not record.labels:
            normal.append(difference)
        elif (side := boxed_side(record, pixels.shape[1])) is not None:
            sided.append((difference, side))
        if progress and number % 50 == 0:
            progress(f"{number}/{len(records)} images")
    results = []
    for margin in MARGINS:
        called = [(d, s) for d, s in sided if abs(d) > margin]
        right = sum(("right" if d > 0 else "left") == s for d, s in called)
        results.append(MarginResult(
            margin=margin,
            accuracy=round(right / len(called), 3) if called else None,
            coverage=round(len(called) / len(sided), 3) if sided else 0.0,
            false_calls_on_normal=round(float(np.mean([abs(d) > margin for d in normal])), 3)
            if normal else 0.0,
        ))  # fmt: skip
    return OpacityEvaluation(split=split, one_sided_images=len(sided), normal_images=len(normal),
                             margins=results)  # fmt: skip

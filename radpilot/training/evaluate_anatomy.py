"""Held-out figures of the anatomy segmenter (`radpilot models evaluate anatomy`).

Heart, right-lung, left-lung and both-lung Dice and HD95 on the `cardiac/` patients of a split,
at the masks' own 512-px resolution; and, as a check on another annotation convention, the
both-lung Dice on the COVID images' V7 lung masks of the same split.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from radpilot.data.devdata import read_cardiac, read_lung_masks, split_of
from radpilot.tools.imaging import read_pixels

STRUCTURES = ("heart", "right_lung", "left_lung", "lungs")


class StructureScore(BaseModel):
    structure: str
    images: int
    dice_mean: float
    dice_median: float
    dice_min: float
    hd95_mean: float = Field(description="pixels at the masks' resolution")
    hd95_median: float
    hd95_max: float


class ImageScore(BaseModel):
    image: str
    dice: dict[str, float]


class AnatomyEvaluation(BaseModel):
    model: str
    split: str
    images: int
    patients: int
    structures: list[StructureScore]
    covid_lungs: StructureScore | None = Field(
        description="both lungs against the COVID images' V7 masks (another convention)"
    )
    empty_predictions: int = Field(description="structures not found (HD95 = diagonal)")
    per_image: list[ImageScore]


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    total = int(prediction.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((prediction & truth).sum()) / total


def hd95(prediction: np.ndarray, truth: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance in pixels (MONAI); the image diagonal
    when either mask is empty (the worst possible, rather than NaN that would vanish from a
    mean)."""
    import torch
    from monai.metrics import compute_hausdorff_distance

    if not prediction.any() or not truth.any():
        return float(np.hypot(*prediction.shape))
    with warnings.catch_warnings():
        # MONAI 1.6 passes its own deprecated argument internally; nothing to fix here.
        warnings.simplefilter("ignore", FutureWarning)
        value = compute_hausdorff_distance(
            torch.from_numpy(prediction[None, None].astype(np.float32)),
            torch.from_numpy(truth[None, None].astype(np.float32)),
            include_background=True,
            percentile=95,
        )
    return float(value.item())


def load_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 127


def summarise(structure: str, pairs: list[tuple[float, float]]) -> StructureScore:
    dices, distances = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    return StructureScore(
        structure=structure, images=len(pairs),
        dice_mean=round(float(dices.mean()), 4), dice_median=round(float(np.median(dices)), 4),
        dice_min=round(float(dices.min()), 4), hd95_mean=round(float(distances.mean()), 2),
        hd95_median=round(float(np.median(distances)), 2),
        hd95_max=round(float(distances.max()), 2),
    )  # fmt: skip


def evaluate_anatomy(
    segmenter: Any,
    data_dir: Path,
    *,
    split: str = "test",
    limit: int | None = None,
    progress: Callable[[str], None] = print,
) -> AnatomyEvaluation:
    """`segmenter.predict` (AnatomyMasks) against the masks of one split's patients."""
    records = [r for r in read_cardiac(data_dir) if split in ("all", split_of(r.patient_id))]
    records = records[:limit] if limit else records
    if not records:
        raise ValueError(f"no cardiac images in the {split} split")
    progress(f"segmenting {len(records)} cardiac images ({split})")
    scores: dict[str, list[tuple[float, float]]] = {s: [] for s in STRUCTURES}
    per_image, empty = [], 0
    for record in records:
        masks = segmenter.predict(read_pixels(data_dir / record.image))
        truth = {
            "heart": load_mask(data_dir / record.heart_mask),
            "right_lung": load_mask(data_dir / record.right_lung_mask),
            "left_lung": load_mask(data_dir / record.left_lung_mask),
        }
        truth["lungs"] = truth["right_lung"] | truth["left_lung"]
        both = masks.right_lung | masks.left_lung
        predicted = {"heart": masks.heart, "right_lung": masks.right_lung,
                     "left_lung": masks.left_lung, "lungs": both}  # fmt: skip
        for structure in STRUCTURES:
            empty += int(not predicted[structure].any())
            scores[structure].append((dice(predicted[structure], truth[structure]),
                                      hd95(predicted[structure], truth[structure])))  # fmt: skip
        latest = {s: round(scores[s][-1][0], 4) for s in STRUCTURES}
        per_image.append(ImageScore(image=record.image, dice=latest))
    covid = [r for r in read_lung_masks(data_dir) if split in ("all", split_of(r.patient_id))]
    covid = covid[:limit] if limit else covid
    covid_pairs = []
    if covid:
        progress(f"segmenting {len(covid)} COVID images with V7 lung masks ({split})")
    for lung_record in covid:
        masks = segmenter.predict(read_pixels(data_dir / lung_record.image))
        both, truth_lungs = masks.right_lung | masks.left_lung, load_mask(
            data_dir / lung_record.lung_mask
        )
        covid_pairs.append((dice(both, truth_lungs), hd95(both, truth_lungs)))
    identity = getattr(segmenter, "identity", None)
    return AnatomyEvaluation(
        model=identity.name if identity is not None else type(segmenter).__name__,
        split=split,
        images=len(records),
        patients=len({r.patient_id for r in records}),
        structures=[summarise(s, scores[s]) for s in STRUCTURES],
        covid_lungs=summarise("lungs (V7 masks)", covid_pairs) if covid_pairs else None,
        empty_predictions=empty,
        per_image=per_image,
    )

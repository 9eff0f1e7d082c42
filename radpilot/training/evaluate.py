"""Held-out evaluation of a findings model (`radpilot models evaluate`, model cards).

Classification: per-finding AUROC with a 95% bootstrap CI, mean AUROC over findings with at
least 10 positives, ECE, and the CheXNet reference AUROC on the images that have reference
scores, side by side. Localization (Wang et al. 2017): pointing game and T(IoBB>0.1) per class.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from radpilot.core.contracts import ModelIdentity
from radpilot.core.findings import NIH_FINDINGS, finding_from_box_label
from radpilot.core.metrics import (
    auroc,
    bootstrap_auroc_ci,
    expected_calibration_error,
    intersection_over_box,
)
from radpilot.data.devdata import NihRecord
from radpilot.tools.imaging import read_pixels, square_crop_box
from radpilot.tools.localize import heatmap_on_original, heatmap_regions, to_original
from radpilot.tools.models.findings import FindingsModel

MIN_POSITIVES = 10
IOBB_THRESHOLD = 0.1


class FindingMetrics(BaseModel):
    finding: str
    positives: int
    auroc: float | None
    ci95: tuple[float, float] | None
    reference_images: int
    reference_positives: int
    auroc_on_reference_images: float | None
    chexnet_reference_auroc: float | None


class LocalizationMetrics(BaseModel):
    finding: str
    boxes: int
    pointing_game: float
    t_iobb_0_1: float


class Evaluation(BaseModel):
    model: ModelIdentity
    images: int
    patients: int
    findings: list[FindingMetrics]
    mean_auroc: float | None
    mean_auroc_findings: list[str]
    reference_comparison_findings: list[str]
    mean_auroc_on_reference_images: float | None
    chexnet_mean_auroc_on_reference_images: float | None
    ratio_to_chexnet: float | None
    ece: float
    localization: list[LocalizationMetrics] = []


def _clean(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def evaluate_findings_model(
    model: FindingsModel,
    records: list[NihRecord],
    data_dir: Path,
    *,
    localization: bool = True,
    progress: Callable[[str], None] = lambda _: None,
) -> Evaluation:
    pixels = [read_pixels(data_dir / r.image) for r in records]
    progress(f"classifying {len(records)} images")
    scores = np.concatenate(
        [model.predict(pixels[start : start + 32]) for start in range(0, len(pixels), 32)]
    )
    evaluation = classification_metrics(model.identity, model.covered, records, scores)
    if localization:
        progress("localizing the annotated boxes")
        evaluation.localization = evaluate_localization(
            grad_cam_localizer(model), model.covered, records, pixels
        )
    return evaluation


def classification_metrics(
    identity: ModelIdentity, covered: list[str], records: list[NihRecord], scores: np.ndarray
) -> Evaluation:
    """Per-finding AUROC with CIs, the mean over findings with enough positives, the CheXNet
    comparison on the images that have reference scores, and ECE, of `scores` (probabilities,
    one row per record)."""
    labels = np.array([[f in r.labels for f in NIH_FINDINGS] for r in records])
    has_reference = np.array([r.reference_scores_chexnet is not None for r in records])
    reference = np.array(
        [[(r.reference_scores_chexnet or {}).get(f, np.nan) for f in NIH_FINDINGS] for r in records]
    )
    metrics = []
    for k, finding in enumerate(NIH_FINDINGS):
        if finding not in covered:
            continue
        y, s = labels[:, k], scores[:, k]
        ry, rs, rr = y[has_reference], s[has_reference], reference[has_reference, k]
        value = auroc(y, s)
        metrics.append(
            FindingMetrics(
                finding=finding,
                positives=int(y.sum()),
                auroc=_clean(value),
                ci95=None
                if np.isnan(value)
                else tuple(round(v, 4) for v in bootstrap_auroc_ci(y, s)),  # type: ignore[arg-type]
                reference_images=int(has_reference.sum()),
                reference_positives=int(ry.sum()),
                auroc_on_reference_images=_clean(auroc(ry, rs)),
                chexnet_reference_auroc=_clean(auroc(ry, rr)),
            )
        )
    counted = [m for m in metrics if m.positives >= MIN_POSITIVES and m.auroc is not None]
    compared = [
        m
        for m in metrics
        if m.reference_positives >= MIN_POSITIVES
        and m.auroc_on_reference_images is not None
        and m.chexnet_reference_auroc is not None
    ]
    ours_on_reference = _mean([m.auroc_on_reference_images for m in compared])
    chexnet = _mean([m.chexnet_reference_auroc for m in compared])
    columns = [NIH_FINDINGS.index(f) for f in covered]
    return Evaluation(
        model=identity,
        images=len(records),
        patients=len({r.patient_id for r in records}),
        findings=metrics,
        mean_auroc=_mean([m.auroc for m in counted]),
        mean_auroc_findings=[m.finding for m in counted],
        reference_comparison_findings=[m.finding for m in compared],
        mean_auroc_on_reference_images=ours_on_reference,
        chexnet_mean_auroc_on_reference_images=chexnet,
        ratio_to_chexnet=round(ours_on_reference / chexnet, 4)
        if ours_on_reference is not None and chexnet
        else None,
        ece=round(expected_calibration_error(labels[:, columns], scores[:, columns]), 4),
    )


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(float(np.mean(present)), 4) if present else None


# A localizer maps (image, finding) to its candidate boxes (x, y, w, h in original pixels,
# strongest first) and the single point it would point at.
Localization = tuple[list[tuple[float, float, float, float]], tuple[float, float]]
Localizer = Callable[[np.ndarray, str], Localization]


def grad_cam_localizer(model: FindingsModel) -> Localizer:
    """The `localize_finding` path without a detector: Grad-CAM regions, and its hottest pixel."""

    def localize(image: np.ndarray, finding: str) -> Localization:
        heatmap = model.attribution(image, finding)
        full = heatmap_on_original(heatmap, image.shape)
        row, col = np.unravel_index(int(full.argmax()), full.shape)
        top, left, side = square_crop_box(*image.shape)
        scale = side / heatmap.shape[0]
        boxes = [
            to_original(box, scale=scale, left=left, top=top)
            for box, _, _ in heatmap_regions(heatmap)
        ]
        return boxes, (float(col), float(row))  # type: ignore[return-value]

    return localize


def evaluate_localization(
    localizer: Localizer, covered: list[str], records: list[NihRecord], pixels: list[np.ndarray]
) -> list[LocalizationMetrics]:
    """Wang et al. 2017's protocol on every radiologist box of a covered finding: pointing game
    (the point lies in the box) and T(IoBB>0.1) (some candidate box overlaps it by more than
    10% of the candidate's area)."""
    hits: dict[str, list[tuple[bool, bool]]] = {}
    for record, image in zip(records, pixels, strict=True):
        for truth in record.boxes:
            finding = finding_from_box_label(truth.label)
            if finding not in covered:
                continue
            boxes, (col, row) = localizer(image, finding)
            tx, ty, tw, th = truth.xywh
            pointed = bool(tx <= col <= tx + tw and ty <= row <= ty + th)
            overlap = any(intersection_over_box(b, truth.xywh) > IOBB_THRESHOLD for b in boxes)
            hits.setdefault(finding, []).append((pointed, overlap))
    return [
        LocalizationMetrics(
            finding=finding,
            boxes=len(results),
            pointing_game=round(float(np.mean([p for p, _ in results])), 4),
            t_iobb_0_1=round(float(np.mean([o for _, o in results])), 4),
        )
        for finding, results in sorted(hits.items())
    ]

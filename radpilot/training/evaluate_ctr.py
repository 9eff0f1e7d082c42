"""The measured cardiothoracic ratio, checked two ways (`radpilot models evaluate ctr`):

1. against the **reference CTR** of the `cardiac/` Wingspan images (from the dataset's
   annotated key points) of one split's patients: mean absolute error and Pearson r;
2. as a score for the NIH **Cardiomegaly** label on one split's patients (AUROC; the labels
   are NLP-mined from reports, a noisy reference), for two ways of finding the heart in the
   same run, on the same lungs:
   - `heart mask`: the anatomy model's heart (what `measure` uses);
   - `brightness profiles`: the earlier method, which estimated the heart's width from
     brightness profiles between the lungs, kept here as the baseline.

Neither the ratio nor the anatomy model is trained on NIH labels or on test patients.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from radpilot.core.errors import RadpilotError
from radpilot.core.metrics import auroc
from radpilot.data.devdata import read_cardiac, read_nih, split_of
from radpilot.tools.anatomy import both_lung_rows, cardiothoracic, thoracic_span
from radpilot.tools.imaging import read_pixels

# Rows of the both-lungs extent (0 = apex, 1 = lowest row with both lungs) searched for the
# heart's borders by the profile baseline, and only rows where each lung is at least WIDE_ROW
# of its widest; chosen on 250 training-split NIH images, never on the test split.
CARDIAC_ROWS = (0.5, 0.8)
WIDE_ROW = 0.5
METHODS = ("heart mask", "brightness profiles")


class ReferenceAgreement(BaseModel):
    images: int
    failed: int = Field(description="images where the lungs or heart were not found")
    mean_absolute_error: float | None
    max_absolute_error: float | None
    pearson_r: float | None
    mean_reference: float | None
    mean_measured: float | None


class CardiomegalyScore(BaseModel):
    method: str
    images: int
    positives: int
    failed: int
    auroc: float | None
    median_ctr_cardiomegaly: float | None
    median_ctr_other: float | None
    by_view: dict[str, float | None] = Field(description="AUROC on PA and AP films separately")


class CtrEvaluation(BaseModel):
    split: str
    reference: ReferenceAgreement
    cardiomegaly: list[CardiomegalyScore]


def heart_from_profiles(pixels: np.ndarray, right: np.ndarray, left: np.ndarray) -> np.ndarray:
    """The baseline's cardiac silhouette, row by row (Nakamori et al.'s profile idea).

    On each cardiac row (both lungs wide there, between the upper and lower cardiac fractions
    of the lung height), walk out from the thoracic midline while the smoothed image stays
    brighter than halfway between aerated lung (the upper lung fields) and the mediastinum.
    """
    from scipy import ndimage

    heart = np.zeros(right.shape, dtype=bool)
    rows = both_lung_rows(right, left)
    if rows.size == 0:
        return heart
    thorax = thoracic_span(right, left)
    midline = (thorax.x_start + thorax.x_end) // 2
    image = ndimage.gaussian_filter(np.asarray(pixels, dtype=np.float32), 2)
    top, bottom = int(rows[0]), int(rows[-1])
    upper_lungs = right | left
    upper_lungs[top + (bottom - top) // 2 :] = False
    right_widths, left_widths = right.sum(axis=1), left.sum(axis=1)
    lo, hi = (top + f * (bottom - top) for f in CARDIAC_ROWS)
    cardiac = [
        int(y) for y in rows
        if lo <= y <= hi and right_widths[y] >= WIDE_ROW * right_widths.max()
        and left_widths[y] >= WIDE_ROW * left_widths.max()
    ]  # fmt: skip
    if not cardiac or not upper_lungs.any():
        return heart
    band = image[cardiac, max(midline - 10, 0) : midline + 10]
    threshold = (float(np.median(image[upper_lungs])) + float(np.median(band))) / 2
    for y in cardiac:
        bright = image[y] > threshold
        x_right, x_left = midline, midline
        while x_right > thorax.x_start and bright[x_right - 1]:
            x_right -= 1
        while x_left < thorax.x_end and bright[x_left + 1]:
            x_left += 1
        heart[y, x_right : x_left + 1] = True
    return heart


def ratios(segmenter: Any, pixels: np.ndarray) -> dict[str, float | None]:
    """The CTR by each method on one image (None where it could not be measured)."""
    masks = segmenter.predict(pixels)
    hearts = {
        "heart mask": masks.heart,
        "brightness profiles": heart_from_profiles(pixels, masks.right_lung, masks.left_lung),
    }
    measured: dict[str, float | None] = {}
    for method, heart in hearts.items():
        try:
            heart_line, thorax_line = cardiothoracic(masks.right_lung, masks.left_lung, heart)
        except RadpilotError:
            measured[method] = None
            continue
        measured[method] = heart_line.width / thorax_line.width
    return measured


def _rounded(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def _median(values: np.ndarray) -> float | None:
    return round(float(np.median(values)), 3) if values.size else None


def agreement(segmenter: Any, data: Path, split: str, limit: int | None) -> ReferenceAgreement:
    records = [r for r in read_cardiac(data) if r.ctr_reference is not None
               and split in ("all", split_of(r.patient_id))]  # fmt: skip
    records = records[:limit] if limit else records
    pairs: list[tuple[float, float]] = []
    failed = 0
    for record in records:
        ratio = ratios(segmenter, read_pixels(data / record.image))["heart mask"]
        if ratio is None or record.ctr_reference is None:
            failed += 1
            continue
        pairs.append((record.ctr_reference, ratio))
    if not pairs:
        return ReferenceAgreement(images=0, failed=failed, mean_absolute_error=None,
                                  max_absolute_error=None, pearson_r=None, mean_reference=None,
                                  mean_measured=None)  # fmt: skip
    reference = np.array([p[0] for p in pairs])
    measured = np.array([p[1] for p in pairs])
    errors = np.abs(measured - reference)
    return ReferenceAgreement(
        images=len(pairs), failed=failed,
        mean_absolute_error=round(float(errors.mean()), 4),
        max_absolute_error=round(float(errors.max()), 4),
        pearson_r=_rounded(np.corrcoef(reference, measured)[0, 1]) if len(pairs) > 2 else None,
        mean_reference=round(float(reference.mean()), 4),
        mean_measured=round(float(measured.mean()), 4),
    )  # fmt: skip


def cardiomegaly(
    segmenter: Any, data: Path, split: str, limit: int | None,
    progress: Callable[[str], None] | None,
) -> list[CardiomegalyScore]:  # fmt: skip
    records = [r for r in read_nih(data) if split in ("all", split_of(r.patient_id))]
    records = records[:limit] if limit else records
    rows: list[tuple[bool, str, dict[str, float | None]]] = []
    for n, record in enumerate(records, start=1):
        measured = ratios(segmenter, read_pixels(data / record.image))
        rows.append(("Cardiomegaly" in record.labels, record.view or "unknown", measured))
        if progress and n % 50 == 0:
            progress(f"measured {n}/{len(records)} NIH images")
    scores = []
    for method in METHODS:
        kept = [(label, view, m[method]) for label, view, m in rows if m[method] is not None]
        y = np.array([k[0] for k in kept], dtype=bool)
        views = np.array([k[1] for k in kept])
        x = np.array([k[2] for k in kept], dtype=float)
        scores.append(CardiomegalyScore(
            method=method, images=len(kept), positives=int(y.sum()),
            failed=len(rows) - len(kept), auroc=_rounded(auroc(y, x)),
            median_ctr_cardiomegaly=_median(x[y]), median_ctr_other=_median(x[~y]),
            by_view={v: _rounded(auroc(y[views == v], x[views == v])) for v in ("PA", "AP")},
        ))  # fmt: skip
    return scores


def evaluate_ctr(
    segmenter: Any, data: Path, split: str = "test", limit: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> CtrEvaluation:  # fmt: skip
    if progress:
        progress(f"CTR against the reference on the {split} cardiac images")
    reference = agreement(segmenter, data, split, limit)
    return CtrEvaluation(
        split=split,
        reference=reference,
        cardiomegaly=cardiomegaly(segmenter, data, split, limit, progress),
    )

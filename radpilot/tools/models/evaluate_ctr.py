"""How well the measured cardiothoracic ratio separates NIH images labelled Cardiomegaly.

The ratio is not trained on NIH labels (the lung model saw only COVID-collection images; the
heart-profile constants were chosen on training-split NIH images), so the held-out test split
is a fair check. The labels are NLP-mined from reports: a noisy reference.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from radpilot.errors import RadpilotError
from radpilot.tools.models.devdata import read_nih, records_in
from radpilot.tools.models.evaluate import load_pixels
from radpilot.tools.models.metrics import auroc


class CtrEvaluation(BaseModel):
    split: str
    images: int
    positives: int
    failed: int = Field(description="images where the lungs or heart were not found")
    auroc: float | None
    median_ctr_cardiomegaly: float | None
    median_ctr_other: float | None
    by_view: dict[str, float | None] = Field(description="AUROC on PA and AP films separately")


def _median(values: np.ndarray) -> float | None:
    return round(float(np.median(values)), 3) if values.size else None


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    value = auroc(labels, scores)
    return None if np.isnan(value) else round(float(value), 4)


def evaluate_ctr(
    data: Path, split: str = "test", limit: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> CtrEvaluation:  # fmt: skip
    from radpilot.tools.anatomy import cardiothoracic, heart_from_profiles
    from radpilot.tools.models.lungs import split_left_right, starter_lung_segmenter

    records = read_nih(data)
    if split != "all":
        records = records_in(records, split)  # type: ignore[arg-type]
    records = records[:limit] if limit else records
    segmenter = starter_lung_segmenter()
    labels, ratios, views, failed = [], [], [], 0
    for n, record in enumerate(records, start=1):
        pixels = load_pixels([record], data)[0]
        right, left = split_left_right(segmenter.predict(pixels))
        try:
            heart, thorax = cardiothoracic(right, left, heart_from_profiles(pixels, right, left))
        except RadpilotError:
            failed += 1
            continue
        labels.append("Cardiomegaly" in record.labels)
        ratios.append(heart.width / thorax.width)
        views.append(record.view or "unknown")
        if progress and n % 50 == 0:
            progress(f"measured {n}/{len(records)} images")
    y, x, v = np.array(labels, dtype=bool), np.array(ratios), np.array(views)
    return CtrEvaluation(
        split=split,
        images=len(y),
        positives=int(y.sum()),
        failed=failed,
        auroc=_auroc(y, x),
        median_ctr_cardiomegaly=_median(x[y]),
        median_ctr_other=_median(x[~y]),
        by_view={view: _auroc(y[v == view], x[v == view]) for view in ("PA", "AP")},
    )

"""The findings classifier on shifted images (`radpilot models evaluate robustness --data DIR
[--limit N]`): the baseline that robustness training (issue #33) must improve.

Each shift of `radpilot.training.shifts` is applied, with a fixed seed per image, to the NIH
test-split images; for the clean and each shifted set the command reports the mean AUROC over
the findings with at least MIN_POSITIVES positives (against the NIH labels), its drop from the
clean set, the expected calibration error over all (image, finding) pairs, the mean change of
each finding's probability from the same clean image (a watermark must not raise
Pneumothorax), and the share of images the domain-shift guard flags.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from radpilot.core.findings import NIH_FINDINGS
from radpilot.core.metrics import auroc, expected_calibration_error
from radpilot.data.devdata import read_nih, split_of
from radpilot.tools.imaging import read_pixels
from radpilot.training.shifts import SHIFTS, apply_shift

MIN_POSITIVES = 5  # fewer positives give an AUROC too noisy to compare
CLEAN = "clean"


class ShiftResult(BaseModel):
    shift: str
    mean_auroc: float
    auroc_drop: float = Field(description="clean mean AUROC minus this one")
    ece: float
    flagged: float | None = Field(description="share the domain-shift guard flags")
    mean_change: dict[str, float] = Field(description="mean probability change per finding")


class RobustnessEvaluation(BaseModel):
    split: str
    images: int
    findings: list[str] = Field(description="the findings in the mean AUROC")
    results: list[ShiftResult]


def _read(model: Any, images: list[np.ndarray]) -> tuple[np.ndarray, list[bool]]:
    """Probabilities (images x findings) and the guard's flag for each image."""
    readings = model.read(images)
    checks = [model.domain_check(p, r) for p, r in zip(images, readings, strict=True)]
    flags = [check is not None and check.out_of_distribution for check in checks]
    return np.array([r.probabilities for r in readings]), flags


def evaluate_robustness(model: Any, data: Path, split: str = "test", limit: int | None = 200,
                        progress: Callable[[str], None] | None = None
                        ) -> RobustnessEvaluation:  # fmt: skip
    records = [r for r in read_nih(data) if split in ("all", split_of(r.patient_id))]
    records = records[:limit] if limit else records
    labels = np.array([[f in r.labels for f in NIH_FINDINGS] for r in records])
    scored = [k for k, _ in enumerate(NIH_FINDINGS) if labels[:, k].sum() >= MIN_POSITIVES]
    if not scored:
        raise ValueError(f"no finding has {MIN_POSITIVES} positives among {len(records)} "
                         "images: raise --limit")  # fmt: skip
    clean_images = [read_pixels(data / r.image) for r in records]
    results: list[ShiftResult] = []
    clean: np.ndarray | None = None
    for name in (CLEAN, *SHIFTS):
        if progress:
            progress(f"reading the {name} set ({len(records)} images)")
        images = clean_images if name == CLEAN else [
            apply_shift(name, pixels, seed) for seed, pixels in enumerate(clean_images)]
        probabilities, flags = _read(model, images)
        clean = probabilities if clean is None else clean
        mean = float(np.mean([auroc(labels[:, k], probabilities[:, k]) for k in scored]))
        first = results[0].mean_auroc if results else mean
        results.append(ShiftResult(
            shift=name, mean_auroc=round(mean, 4), auroc_drop=round(first - mean, 4),
            ece=round(expected_calibration_error(labels, probabilities), 4),
            flagged=round(float(np.mean(flags)), 3) if model.domain_reference else None,
            mean_change={f: round(float((probabilities[:, k] - clean[:, k]).mean()), 4)
                         for k, f in enumerate(NIH_FINDINGS)},
        ))  # fmt: skip
    return RobustnessEvaluation(split=split, images=len(records),
                                findings=[NIH_FINDINGS[k] for k in scored],
                                results=results)  # fmt: skip


def robustness_table(evaluation: RobustnessEvaluation) -> str:
    """Markdown: one row per set, with the Pneumothorax change that matters most clinically."""
    lines = ["| set | mean AUROC | drop | ECE | flagged by the guard | Δ Pneumothorax |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in evaluation.results:
        flagged = f"{r.flagged:.0%}" if r.flagged is not None else "n/a"
        lines.append(f"| {r.shift} | {r.mean_auroc:.3f} | {r.auroc_drop:+.3f} | {r.ece:.3f} | "
                     f"{flagged} | {r.mean_change['Pneumothorax']:+.3f} |")  # fmt: skip
    return "\n".join(lines)

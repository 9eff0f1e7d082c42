"""The starter classifier's levers side by side (`radpilot models compare-classifiers`).

Each trained bundle is read once per test-time view on the validation and the test patients;
from those logits come, for every bundle, its figures alone and with test-time augmentation
(TTA, views that keep laterality: a zoom, never a flip), and the figures of every pair of
bundles as an ensemble (the mean of their probabilities), and of all of them. A recipe is
chosen by validation mean AUROC only; the test columns are reported, never used to choose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from radpilot.core.contracts import ModelIdentity
from radpilot.data.devdata import NihRecord, read_nih, records_in
from radpilot.tools.imaging import read_pixels
from radpilot.tools.models.findings import (
    IDENTITY_VIEW,
    Platt,
    StarterFindingsModel,
    TtaView,
    calibrated,
)
from radpilot.training.evaluate import classification_metrics

# Within the training augmentation's range (crops of 80-100% of the area). Two views at most:
# each view costs a forward pass, and the shipped call must stay within 1.5x of a single one.
TTA_VIEWS: dict[str, list[TtaView]] = {
    "none": [IDENTITY_VIEW],
    "2 views": [IDENTITY_VIEW, TtaView(zoom=1.1)],
}
_ALL_VIEWS = TTA_VIEWS["2 views"]


class LeverRow(BaseModel):
    """One line of the comparison table."""

    name: str
    tta: str
    val_mean_auroc: float | None
    test_mean_auroc: float | None
    test_ratio_to_chexnet: float | None
    test_ece: float
    forward_passes: int  # networks x views per image: the cost of one classification
    weights_mb: float  # the fp16 weight files together (the shipped bundle must stay < 15 MB)


@dataclass
class _Read:
    """One bundle's logits per view, and its calibration."""

    name: str
    calibration: dict[str, Platt]
    weights_mb: float
    logits: dict[str, np.ndarray]  # split -> (views, images, findings)


def _view_logits(model: StarterFindingsModel, pixels: list[np.ndarray]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate(
            [
                model.view_logits(model.inputs(pixels[start : start + 32]), _ALL_VIEWS).numpy()
                for start in range(0, len(pixels), 32)
            ],
            axis=1,
        )


def _probabilities(read: _Read, split: str, views: Sequence[TtaView]) -> np.ndarray:
    chosen = [_ALL_VIEWS.index(v) for v in views]
    logits = read.logits[split][chosen].mean(axis=0)
    return calibrated(logits, read.calibration)


def compare_classifiers(
    bundles: list[Path],
    data_dir: Path,
    *,
    limit: int | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[LeverRow]:
    """`limit`: the first N images of each split only (a quick check, not a figure to report)."""
    records = read_nih(data_dir)
    splits: dict[str, list[NihRecord]] = {
        s: records_in(records, s)[:limit] for s in ("val", "test")
    }
    pixels = {s: [read_pixels(data_dir / r.image) for r in rs] for s, rs in splits.items()}
    reads, covered = [], []
    for folder in bundles:
        model = StarterFindingsModel(folder, batch_wait_s=0, require_operating_points=False)
        covered = model.covered
        progress(f"reading {folder.name}: {len(_ALL_VIEWS)} views of the validation and test")
        reads.append(
            _Read(
                name=folder.name,
                calibration=model.calibration,
                weights_mb=(folder / model.weights.filename).stat().st_size / 1e6,
                logits={s: _view_logits(model, p) for s, p in pixels.items()},
            )
        )
    identity = ModelIdentity(name="comparison", version="-", sha256="-")

    def row(name: str, tta: str, members: list[_Read]) -> LeverRow:
        views = TTA_VIEWS[tta]
        figures = {
            split: classification_metrics(
                identity,
                covered,
                splits[split],
                np.mean([_probabilities(m, split, views) for m in members], axis=0),
            )
            for split in splits
        }
        return LeverRow(
            name=name,
            tta=tta,
            val_mean_auroc=figures["val"].mean_auroc,
            test_mean_auroc=figures["test"].mean_auroc,
            test_ratio_to_chexnet=figures["test"].ratio_to_chexnet,
            test_ece=figures["test"].ece,
            forward_passes=len(members) * len(views),
            weights_mb=round(sum(m.weights_mb for m in members), 1),
        )

    def ensemble(members: Sequence[_Read]) -> LeverRow:
        return row("ensemble: " + " + ".join(m.name for m in members), "none", list(members))

    rows = [row(read.name, tta, [read]) for read in reads for tta in TTA_VIEWS]
    rows += [ensemble(pair) for pair in combinations(reads, 2)]
    if len(reads) > 2:
        rows.append(ensemble(reads))
    return rows


def lever_table(rows: list[LeverRow]) -> list[str]:
    """The comparison as a Markdown table."""

    def fmt(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    lines = [
        "| run | TTA | forward passes | weights MB | validation mean AUROC | test mean AUROC | "
        "ratio to CheXNet (test) | ECE (test) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.tta} | {r.forward_passes} | {r.weights_mb:.1f} | "
            f"{fmt(r.val_mean_auroc)} | "
            f"{fmt(r.test_mean_auroc)} | {fmt(r.test_ratio_to_chexnet)} | {r.test_ece:.3f} |"
        )
    return lines

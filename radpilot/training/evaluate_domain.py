"""How well the domain-shift guard separates shifted films from NIH test films
(`radpilot models evaluate domain-shift --data DIR [--limit N]`).

The in-distribution side is the first `limit` NIH images of the test patients (never in the
reference, never used to choose its threshold). Against them:

- every synthetic shift of `radpilot.training.shifts` applied to those same images (seeded
  by the image's position, so a run is reproducible): burned-in text, black borders, an
  off-centre crop, JPEG quality 20, gamma 0.5 and 2.0, 15° rotation, downscaling to 256 px and
  back, inverted polarity, a photograph of a screen;
- the other archives in the data: the COVID-19 collection (many hospitals), JSRT (digitised
  film) and Wingspan (one hospital), the first `limit` images of each.

For each: the AUROC of the score (and of its two parts alone) at separating it from the NIH
test images, and the share flagged at the stored threshold; and once, the false-alarm rate on
the NIH test images at that threshold. Targets: AUROC >= 0.90 for a synthetic shift, >= 0.80
for another archive, false alarms <= 5 %.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from radpilot.core.contracts import ModelIdentity
from radpilot.core.errors import RadpilotError
from radpilot.core.metrics import auroc
from radpilot.data.devdata import read_cardiac, read_nih, read_rows, records_in
from radpilot.tools.imaging import read_pixels
from radpilot.tools.models.domain_guard import GUARD_COMMAND, DomainReference
from radpilot.tools.models.findings import FindingsModel
from radpilot.training.domain_guard import Observations, observe
from radpilot.training.shifts import SHIFTS, apply_shift

DEFAULT_LIMIT = 300
SHIFT_TARGET, SOURCE_TARGET, FALSE_ALARM_TARGET = 0.90, 0.80, 0.05

Kind = Literal["synthetic shift", "other archive"]


class ShiftSeparation(BaseModel):
    name: str
    kind: Kind
    images: int
    auroc: float
    auroc_image_statistics: float  # the image part of the score alone
    auroc_features: float  # the model's-features part alone
    flagged: float  # share above the threshold
    target: float

    @property
    def met(self) -> bool:
        return self.auroc >= self.target


class DomainShiftEvaluation(BaseModel):
    model: ModelIdentity
    guard_version: str
    threshold: float
    nih_test_images: int
    false_alarms: float  # share of the NIH test images above the threshold
    false_alarm_target: float
    rows: list[ShiftSeparation]


def _scores(reference: DomainReference, seen: Observations) -> np.ndarray:
    """(N, 3): score, image part, feature part."""
    return np.stack(reference.scores(seen.statistics, seen.embeddings), axis=1)


def other_archives(data_dir: Path) -> dict[str, list[Path]]:
    """The other archives' image paths, by name (an archive absent from `data_dir` is left
    out)."""
    found: dict[str, list[Path]] = {}
    if (data_dir / "covid" / "labels.jsonl").exists():
        rows = read_rows(data_dir / "covid" / "labels.jsonl", "covid/labels.jsonl")
        found["COVID-19 collection"] = [data_dir / row["image"] for row in rows]
    if (data_dir / "cardiac" / "labels.jsonl").exists():
        cardiac = read_cardiac(data_dir)
        for name, prefix in (("JSRT", "JSRT"), ("Wingspan", "Wingspan")):
            found[name] = [data_dir / r.image for r in cardiac if r.dataset.startswith(prefix)]
    return found


def evaluate_domain_shift(
    model: FindingsModel,
    data_dir: Path,
    *,
    limit: int = DEFAULT_LIMIT,
    shifts: list[str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> DomainShiftEvaluation:
    reference = model.domain_reference
    if reference is None:
        raise RadpilotError(
            f"{model.identity.name} has no domain-shift reference for these weights: derive it "
            f"with `{GUARD_COMMAND}`",
            code="missing_domain_reference",
        )
    test = records_in(read_nih(data_dir), "test")[:limit]
    paths = [data_dir / r.image for r in test]
    progress(f"NIH test: {len(paths)} images")
    baseline = _scores(reference, observe(model, (read_pixels(p) for p in paths)))
    threshold = reference.threshold
    rows = []

    def separation(name: str, kind: Kind, images: Iterator[np.ndarray]) -> ShiftSeparation:
        scores = _scores(reference, observe(model, images))
        labels = np.r_[np.zeros(len(baseline)), np.ones(len(scores))]
        both = np.concatenate([baseline, scores])
        parts = [round(auroc(labels, both[:, k]), 3) for k in range(3)]
        row = ShiftSeparation(
            name=name, kind=kind, images=len(scores), auroc=parts[0],
            auroc_image_statistics=parts[1], auroc_features=parts[2],
            flagged=round(float((scores[:, 0] > threshold).mean()), 4),
            target=SHIFT_TARGET if kind == "synthetic shift" else SOURCE_TARGET,
        )  # fmt: skip
        progress(f"{name}: AUROC {row.auroc:.3f}, flagged {row.flagged:.1%}")
        return row

    for name in shifts if shifts is not None else list(SHIFTS):
        shifted = (apply_shift(name, read_pixels(p), seed) for seed, p in enumerate(paths))
        rows.append(separation(name, "synthetic shift", shifted))
    for name, archive in other_archives(data_dir).items():
        rows.append(separation(name, "other archive", (read_pixels(p) for p in archive[:limit])))
    return DomainShiftEvaluation(
        model=model.identity,
        guard_version=reference.version,
        threshold=round(threshold, 4),
        nih_test_images=len(baseline),
        false_alarms=round(float((baseline[:, 0] > threshold).mean()), 4),
        false_alarm_target=FALSE_ALARM_TARGET,
        rows=rows,
    )


def text_table(evaluation: DomainShiftEvaluation) -> list[str]:
    """The command's plain-text output: one row per shift and archive, then the false
    alarms."""
    met = evaluation.false_alarms <= evaluation.false_alarm_target
    lines = [
        f"domain-shift guard v{evaluation.guard_version} of {evaluation.model.name} "
        f"{evaluation.model.version}: threshold {evaluation.threshold:.3f}; against the first "
        f"{evaluation.nih_test_images} NIH test images",
        f"{'shift / archive':24} {'kind':16} {'images':>6} {'AUROC':>6} {'image':>6} "
        f"{'feat.':>6} {'flagged':>8} {'target':>7}  met",
    ]
    for r in evaluation.rows:
        lines.append(
            f"{r.name:24} {r.kind:16} {r.images:6d} {r.auroc:6.3f} "
            f"{r.auroc_image_statistics:6.3f} {r.auroc_features:6.3f} {r.flagged:8.1%} "
            f"{r.target:7.2f}  {'yes' if r.met else 'NO'}"
        )
    lines.append(
        f"false alarms on the NIH test images at the threshold: {evaluation.false_alarms:.1%} "
        f"(target <= {evaluation.false_alarm_target:.0%}: {'met' if met else 'NOT met'})"
    )
    return lines


def markdown_table(evaluation: DomainShiftEvaluation) -> list[str]:
    """The same table in Markdown (for the README)."""
    lines = [
        "| shift / archive | kind | images | AUROC | image statistics alone | features alone "
        "| flagged at the threshold | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in evaluation.rows:
        mark = "" if r.met else " (not met)"
        lines.append(
            f"| {r.name} | {r.kind} | {r.images} | **{r.auroc:.3f}** | "
            f"{r.auroc_image_statistics:.3f} | {r.auroc_features:.3f} | {r.flagged:.1%} | "
            f"≥ {r.target:.2f}{mark} |"
        )
    lines.append(
        f"| NIH test (in distribution) | false alarms | {evaluation.nih_test_images} | | | | "
        f"**{evaluation.false_alarms:.1%}** | ≤ {evaluation.false_alarm_target:.0%} |"
    )
    return lines

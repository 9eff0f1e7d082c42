"""Two operating points per finding, chosen on the validation patients and stored with the
model (`radpilot models operating-points`).

The classifier's calibrated probabilities (its own `predict` path, so they are the ones users
see) on the validation patients' NIH images give, per finding (a probability at or above a
threshold counts as positive):

- **rule-out**: the highest threshold at which sensitivity >= 0.90 (below it: "No / unlikely");
- **rule-in**: the lowest threshold at which specificity >= 0.90 (at or above it: "Yes /
  likely");
- between the two: "Possibly / indeterminate".

Each point is decided by one validation image: rule-out by the lowest-scoring positive that
the 90% must keep, rule-in by the highest-scoring negative that the 90% must leave below it.
Every threshold in the gap between that image's score and the neighbouring validation score
(the next lower one for rule-out, the next higher one for rule-in; 0 or 1 when there is none)
gives the same validation counts, so the same sensitivity and specificity; the stored point
sits midway in that gap. Exactly on the deciding image's score, the point would hinge on
float rounding: an image's probability differs by about 1e-7 between thread counts and batch
sizes, enough to flip it and miss the target that the point was chosen for.

Degenerate cases, in this order:

- **no validation positives**: sensitivity cannot be measured, so nothing is ruled out
  (rule-out 0.0); rule-in as above.
- **fewer than 5 validation positives** ("few positives"): 90% of them is not an estimate;
  rule-out falls back to just below the lowest positive's score (no validation positive is
  ruled out) and rule-in to the 0.90-specificity point of the negatives (the same formulas,
  flagged as a fallback and named in the model card).
- **rule-in below rule-out** (a strong finding: both targets met with room to spare): the
  band would be empty and contradictory (a probability both ruled in and out), so both points
  become one cut, the model's Youden threshold clipped into [rule-in, rule-out]. Any cut in
  that interval keeps both guarantees on validation (sensitivity >= 0.90 and specificity >=
  0.90), and the answer is Yes or No, never indeterminate.

The points are then evaluated on the test patients (never used to choose them): sensitivity
and specificity at each point and the share of images between them (indeterminate). `--write`
stores the points in the bundle's `metadata.json` (`operating_points`, read by
`StarterFindingsModel`), the test figures in its model card's metrics and the card's table, so
the points are re-derived by this one command whenever the model changes (training runs it
too).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from radpilot.core.contracts import ModelIdentity
from radpilot.core.findings import NIH_FINDINGS, OperatingPoint
from radpilot.data.devdata import NihRecord, read_nih, records_in
from radpilot.tools.imaging import read_pixels
from radpilot.tools.models.findings import FindingsModel

TARGET_SENSITIVITY = 0.90
TARGET_SPECIFICITY = 0.90
MIN_POSITIVES = 5  # fewer validation positives than this: the documented fallback
BATCH = 32

Rule = Literal["targets", "single cut", "few positives", "no positives"]

# Card metrics written by this command start with this prefix (replaced on every --write).
METRICS_PREFIX = "operating_points."
# Card limitations written by this command start with this text (replaced on every --write).
LIMITATION_PREFIX = "Operating points"


class BandMetrics(BaseModel):
    """How one finding's two points do on one split's images."""

    images: int
    positives: int
    sensitivity_at_rule_out: float | None  # None without positives
    specificity_at_rule_out: float | None  # None without negatives
    sensitivity_at_rule_in: float | None
    specificity_at_rule_in: float | None
    indeterminate: float  # share of images with rule_out <= p < rule_in


class FindingOperatingPoints(BaseModel):
    finding: str
    rule_out: float
    rule_in: float
    youden: float  # the model's single threshold, used for a single cut
    rule: Rule
    validation: BandMetrics
    test: BandMetrics


class OperatingPointsReport(BaseModel):
    model: ModelIdentity
    target_sensitivity: float
    target_specificity: float
    min_positives: int
    validation_images: int
    validation_patients: int
    test_images: int
    test_patients: int
    findings: list[FindingOperatingPoints]
    validation_mean_indeterminate: float  # mean over findings
    test_mean_indeterminate: float

    @property
    def points(self) -> dict[str, OperatingPoint]:
        return {
            f.finding: OperatingPoint(rule_out=f.rule_out, rule_in=f.rule_in) for f in self.findings
        }


def _needed(share: float, total: int) -> int:
    """The fewest of `total` that make at least `share` of them (robust to 0.9 * 10 = 9.0000…2)."""
    return max(1, math.ceil(round(share * total, 9)))


def _as_float32(value: float) -> float:
    """A threshold the float32 probabilities compare against exactly (no rounding surprises
    when a caller compares in float32 or in float64)."""
    return float(np.float32(value))


def _midway(low: float, high: float) -> float:
    """A float32 threshold t with low < t <= high, halfway between where float32 allows."""
    middle = _as_float32((low + high) / 2)
    return middle if low < middle <= high else _as_float32(high)


def choose_operating_point(
    labels: np.ndarray,
    scores: np.ndarray,
    youden: float,
    *,
    sensitivity: float = TARGET_SENSITIVITY,
    specificity: float = TARGET_SPECIFICITY,
    min_positives: int = MIN_POSITIVES,
) -> tuple[OperatingPoint, Rule]:
    """One finding's rule-out and rule-in thresholds from its validation labels and
    probabilities (the rule is in the module's docstring), and which rule gave them."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float32)
    positives = np.sort(scores[labels])[::-1]  # highest first
    negatives = np.sort(scores[~labels])  # lowest first

    rule: Rule
    if positives.size == 0:
        rule_out, rule = 0.0, "no positives"
    else:
        # At or below the k-th highest positive (higher thresholds keep fewer than k), above
        # the next lower validation score.
        kept = positives[_needed(sensitivity, positives.size) - 1]
        below = scores[scores < kept]
        rule_out = _midway(float(below.max()) if below.size else 0.0, float(kept))
        rule = "few positives" if positives.size < min_positives else "targets"

    if negatives.size == 0:
        rule_in = 1.0  # specificity cannot be measured: nothing is ruled in below 1.0
    else:
        # Above the m-th lowest negative (so m negatives stay below), at or below the next
        # higher validation score.
        left_below = negatives[_needed(specificity, negatives.size) - 1]
        above = scores[scores > left_below]
        rule_in = _midway(float(left_below), float(above.min()) if above.size else 1.0)

    if rule_in < rule_out:  # a strong finding: one cut inside [rule_in, rule_out]
        cut = _as_float32(min(max(youden, rule_in), rule_out))
        rule_out = rule_in = cut
        if rule == "targets":
            rule = "single cut"
    return OperatingPoint(rule_out=rule_out, rule_in=rule_in), rule


def band_metrics(labels: np.ndarray, scores: np.ndarray, point: OperatingPoint) -> BandMetrics:
    """Sensitivity and specificity at each point (positive = probability at or above it) and
    the share of images between the two."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float32).astype(np.float64)  # exact
    positive, negative = scores[labels], scores[~labels]

    def share(values: np.ndarray) -> float | None:
        return round(float(values.mean()), 4) if values.size else None

    return BandMetrics(
        images=int(scores.size),
        positives=int(labels.sum()),
        sensitivity_at_rule_out=share(positive >= point.rule_out),
        specificity_at_rule_out=share(negative < point.rule_out),
        sensitivity_at_rule_in=share(positive >= point.rule_in),
        specificity_at_rule_in=share(negative < point.rule_in),
        indeterminate=round(
            float(((scores >= point.rule_out) & (scores < point.rule_in)).mean())
            if scores.size
            else 0.0,
            4,
        ),
    )


def probabilities_of(model: FindingsModel, records: list[NihRecord], data_dir: Path) -> np.ndarray:
    """The model's calibrated probabilities (its own `predict`, as users get them), one row per
    record, in the order of `NIH_FINDINGS`."""
    rows = []
    for start in range(0, len(records), BATCH):
        pixels = [read_pixels(data_dir / r.image) for r in records[start : start + BATCH]]
        rows.append(model.predict(pixels))
    return np.concatenate(rows) if rows else np.zeros((0, len(NIH_FINDINGS)), np.float32)


def labels_of(records: list[NihRecord]) -> np.ndarray:
    return np.array([[f in r.labels for f in NIH_FINDINGS] for r in records], dtype=bool)


def derive_operating_points(
    model: FindingsModel,
    data_dir: Path,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> OperatingPointsReport:
    """Choose every covered finding's points on the validation patients, and measure them on
    the test patients."""
    records = read_nih(data_dir)
    validation, test = records_in(records, "val"), records_in(records, "test")
    progress(f"classifying {len(validation)} validation images")
    val_scores = probabilities_of(model, validation, data_dir)
    progress(f"classifying {len(test)} test images")
    test_scores = probabilities_of(model, test, data_dir)
    val_labels, test_labels = labels_of(validation), labels_of(test)
    findings = []
    for finding in model.covered:
        k = NIH_FINDINGS.index(finding)
        youden = float(model.thresholds[finding])
        point, rule = choose_operating_point(val_labels[:, k], val_scores[:, k], youden)
        findings.append(
            FindingOperatingPoints(
                finding=finding,
                rule_out=point.rule_out,
                rule_in=point.rule_in,
                youden=youden,
                rule=rule,
                validation=band_metrics(val_labels[:, k], val_scores[:, k], point),
                test=band_metrics(test_labels[:, k], test_scores[:, k], point),
            )
        )
    return OperatingPointsReport(
        model=model.identity,
        target_sensitivity=TARGET_SENSITIVITY,
        target_specificity=TARGET_SPECIFICITY,
        min_positives=MIN_POSITIVES,
        validation_images=len(validation),
        validation_patients=len({r.patient_id for r in validation}),
        test_images=len(test),
        test_patients=len({r.patient_id for r in test}),
        findings=findings,
        validation_mean_indeterminate=_mean([f.validation.indeterminate for f in findings]),
        test_mean_indeterminate=_mean([f.test.indeterminate for f in findings]),
    )


def _mean(values: list[float]) -> float:
    return round(float(np.mean(values)), 4) if values else 0.0


# --- stored with the model -------------------------------------------------------------------


def card_metrics(report: OperatingPointsReport) -> dict[str, float]:
    """The test table as model-card metrics (flat name → number; a figure that cannot be
    measured, e.g. sensitivity without test positives, is left out)."""
    metrics = {f"{METRICS_PREFIX}test_mean_indeterminate": report.test_mean_indeterminate}
    for f in report.findings:
        figures = {
            "rule_out": f.rule_out,
            "rule_in": f.rule_in,
            "test_sensitivity_at_rule_out": f.test.sensitivity_at_rule_out,
            "test_specificity_at_rule_out": f.test.specificity_at_rule_out,
            "test_sensitivity_at_rule_in": f.test.sensitivity_at_rule_in,
            "test_specificity_at_rule_in": f.test.specificity_at_rule_in,
            "test_indeterminate": f.test.indeterminate,
        }
        metrics.update(
            {
                f"{METRICS_PREFIX}{f.finding}.{name}": round(value, 4)
                for name, value in figures.items()
                if value is not None
            }
        )
    return metrics


def card_limitations(report: OperatingPointsReport) -> list[str]:
    """What a user must know about the points (replacing this command's earlier ones)."""
    lines = [
        f"{LIMITATION_PREFIX} (rule-out: sensitivity >= {report.target_sensitivity:.2f}, "
        f"rule-in: specificity >= {report.target_specificity:.2f}) were chosen on "
        f"{report.validation_images} validation images; on the test patients the achieved "
        "sensitivity and specificity vary around the targets (the card's table)."
    ]
    fallback = [f for f in report.findings if f.rule in ("few positives", "no positives")]
    if fallback:
        named = ", ".join(f"{f.finding}: {f.validation.positives}" for f in fallback)
        lines.append(
            f"{LIMITATION_PREFIX} of findings with fewer than {report.min_positives} validation "
            f"positives ({named}) are a fallback: rule-out just below the lowest validation "
            "positive's probability (0.0 without any), rule-in at the 0.90-specificity point "
            "of the negatives; their sensitivity cannot be estimated."
        )
    return lines


def set_after(metadata: dict[str, Any], anchor: str, key: str, value: Any) -> dict[str, Any]:
    """`metadata` with `key` set: in its place if present, else right after `anchor` (at the
    end without it), so that a bundle's `metadata.json` keeps a readable order."""
    if key in metadata or anchor not in metadata:
        return {**metadata, key: value}
    ordered: dict[str, Any] = {}
    for name, item in metadata.items():
        ordered[name] = item
        if name == anchor:
            ordered[key] = value
    return ordered


def store_operating_points(folder: Path, report: OperatingPointsReport) -> None:
    """Write the points into the bundle's `metadata.json` (indent 2, existing keys in their
    order, `sha256` untouched; `operating_points` after `thresholds`), the test figures into
    its card's metrics and limitations (`starter_bundle.refresh_operating_points` also
    re-renders the `README.md` card)."""
    path = folder / "metadata.json"
    metadata: dict[str, Any] = json.loads(path.read_text())
    sha256 = metadata.get("sha256")
    points = {f.finding: {"rule_out": f.rule_out, "rule_in": f.rule_in} for f in report.findings}
    metadata = set_after(metadata, "thresholds", "operating_points", points)
    card = metadata["card"]
    card["limitations"] = [
        *[item for item in card["limitations"] if not item.startswith(LIMITATION_PREFIX)],
        *card_limitations(report),
    ]
    card["metrics"] = {
        **{k: v for k, v in card.get("metrics", {}).items() if not k.startswith(METRICS_PREFIX)},
        **card_metrics(report),
    }
    metadata["operating_points_evaluation"] = report.model_dump(mode="json")
    assert metadata.get("sha256") == sha256  # the weights' hash: never changed here
    path.write_text(json.dumps(metadata, indent=2) + "\n")


# --- tables ----------------------------------------------------------------------------------


def _pair(validation: float | None, test: float | None) -> str:
    def one(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    return f"{one(validation)} / {one(test)}"


RULE_NOTES: dict[str, str] = {
    "targets": "",
    "single cut": " (single cut)",
    "few positives": " (few positives: fallback)",
    "no positives": " (no positives: fallback)",
}


def markdown_table(report: OperatingPointsReport) -> list[str]:
    """The per-finding table (validation / test in each cell), for the card and README."""
    lines = [
        "| finding | positives (val / test) | rule-out | rule-in | sensitivity at rule-out | "
        "specificity at rule-out | sensitivity at rule-in | specificity at rule-in | "
        "indeterminate (val / test) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in report.findings:
        v, t = f.validation, f.test
        lines.append(
            f"| {f.finding}{RULE_NOTES[f.rule]} | {v.positives} / {t.positives} | "
            f"{f.rule_out:.3f} | {f.rule_in:.3f} | "
            f"{_pair(v.sensitivity_at_rule_out, t.sensitivity_at_rule_out)} | "
            f"{_pair(v.specificity_at_rule_out, t.specificity_at_rule_out)} | "
            f"{_pair(v.sensitivity_at_rule_in, t.sensitivity_at_rule_in)} | "
            f"{_pair(v.specificity_at_rule_in, t.specificity_at_rule_in)} | "
            f"{_pair(v.indeterminate, t.indeterminate)} |"
        )
    lines.append(
        f"| **mean over findings** | | | | | | | | "
        f"**{_pair(report.validation_mean_indeterminate, report.test_mean_indeterminate)}** |"
    )
    return lines


def text_table(report: OperatingPointsReport) -> list[str]:
    """The command's plain-text output: validation / test per figure."""
    header = (
        f"{'finding':20} {'pos val/test':>12} {'rule-out':>8} {'rule-in':>8}  "
        f"{'sens@out':>11} {'spec@out':>11} {'sens@in':>11} {'spec@in':>11} {'indet.':>11}"
    )
    lines = [
        f"{report.model.name} {report.model.version}: points chosen on {report.validation_images} "
        f"validation images ({report.validation_patients} patients), measured on "
        f"{report.test_images} test images ({report.test_patients} patients); "
        "each figure validation / test",
        header,
    ]
    for f in report.findings:
        v, t = f.validation, f.test
        lines.append(
            f"{f.finding:20} {f'{v.positives}/{t.positives}':>12} {f.rule_out:8.3f} "
            f"{f.rule_in:8.3f}  "
            f"{_pair(v.sensitivity_at_rule_out, t.sensitivity_at_rule_out):>11} "
            f"{_pair(v.specificity_at_rule_out, t.specificity_at_rule_out):>11} "
            f"{_pair(v.sensitivity_at_rule_in, t.sensitivity_at_rule_in):>11} "
            f"{_pair(v.specificity_at_rule_in, t.specificity_at_rule_in):>11} "
            f"{_pair(v.indeterminate, t.indeterminate):>11}"
            f"{RULE_NOTES[f.rule]}"
        )
    lines.append(
        f"mean indeterminate share over findings: validation "
        f"{report.validation_mean_indeterminate:.3f}, test {report.test_mean_indeterminate:.3f}"
    )
    return lines

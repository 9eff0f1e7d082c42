"""Change verdicts against the label-derived change of same-patient pairs (`pairs.jsonl`).

Each NIH pair's labels give, per finding, new / resolved / unchanged (present on neither film
counts as unchanged). These come from NLP-mined labels of two separate reports: a noisy proxy
of a radiologist's comparison, not one. Only pairs of test-split patients are scored. The
baseline reads the two images independently and calls a change whenever the thresholded
labels differ: no registration, no noise margin.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from radpilot.data.devdata import read_rows, split_of

Change = Literal["new", "resolved", "unchanged"]
CLASSES: tuple[Change, ...] = ("new", "resolved", "unchanged")


class PairRecord(BaseModel):
    patient_id: str
    prior: str
    current: str
    new_labels: list[str] = Field(default_factory=list)
    resolved_labels: list[str] = Field(default_factory=list)


class VerdictScores(BaseModel):
    accuracy: float
    macro_f1: float
    f1: dict[str, float]


class RuleScore(BaseModel):
    margin_sigmas: float
    min_logit_change: float
    macro_f1: float


class TemporalEvaluation(BaseModel):
    split: str
    pairs: int
    registered: int
    registration_success_rate: float
    items: int = Field(description="(pair, finding) verdicts scored, on registered pairs")
    radpilot: VerdictScores
    baseline: VerdictScores = Field(description="independent labels, same registered pairs")
    baseline_all_pairs: VerdictScores
    rule_grid: list[RuleScore] = Field(
        default_factory=list,
        description="macro-F1 of each (margin, log-odds floor) rule on these pairs, best first: "
        "the selection table (run on the validation split)",
    )
    proxy_note: str = (
        "gold change is derived from NLP-mined labels of two separate reports: a noisy proxy"
    )


class PairReading(BaseModel):
    """One pair read once: the classifier's probabilities and retest spreads on both films."""

    pair: PairRecord
    registered: bool
    prior: list[float]
    prior_spread: list[float]
    current: list[float]
    current_spread: list[float]


# The rules tried on the validation pairs (the shipped one is in `radpilot.tools.compare`).
GRID_SIGMAS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
GRID_LOGITS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


def gold_change(pair: PairRecord, finding: str) -> Change:
    if finding in pair.new_labels:
        return "new"
    if finding in pair.resolved_labels:
        return "resolved"
    return "unchanged"


def collapse(verdict: str) -> Change:
    """worsened / improved / uncertain are not a new or resolved finding."""
    return verdict if verdict in ("new", "resolved") else "unchanged"  # type: ignore[return-value]


def scores(gold: list[Change], predicted: list[Change]) -> VerdictScores:
    g, p = np.array(gold), np.array(predicted)
    f1: dict[str, float] = {}
    for label in CLASSES:
        tp = float(np.sum((g == label) & (p == label)))
        fp, fn = (
            float(np.sum((g != label) & (p == label))),
            float(np.sum((g == label) & (p != label))),
        )
        f1[label] = round(2 * tp / (2 * tp + fp + fn), 4) if tp + fp + fn else 0.0
    return VerdictScores(accuracy=round(float(np.mean(g == p)), 4),
                         macro_f1=round(float(np.mean(list(f1.values()))), 4), f1=f1)  # fmt: skip


Progress = Callable[[str], None]
Verdicts = tuple[list[Change], list[Change]]


def read_pairs(data: Path, split: str, limit: int | None = None,
               progress: Progress | None = None) -> tuple[list[PairReading], Any]:  # fmt: skip
    """The NIH pairs of `split` patients, each registered and read once; and the model."""
    from radpilot.tools.compare import MIN_REGISTRATION_SCORE, read_with_noise
    from radpilot.tools.imaging import read_pixels
    from radpilot.tools.models.findings import StarterFindingsModel
    from radpilot.tools.registration import register

    rows = read_rows(data / "pairs.jsonl", "pairs.jsonl and nih/images/")
    pairs = [PairRecord.model_validate(r) for r in rows if r["patient_id"].startswith("nih-")]
    pairs = [p for p in pairs if split_of(p.patient_id) == split][:limit]
    model = StarterFindingsModel()
    readings = []
    for n, pair in enumerate(pairs, start=1):
        prior, current = (read_pixels(data / path) for path in (pair.prior, pair.current))
        (before, before_spread), (now, now_spread) = (read_with_noise(model, pixels)
                                                      for pixels in (prior, current))  # fmt: skip
        readings.append(PairReading(
            pair=pair, registered=register(prior, current).score >= MIN_REGISTRATION_SCORE,
            prior=before.tolist(), prior_spread=before_spread.tolist(), current=now.tolist(),
            current_spread=now_spread.tolist()))  # fmt: skip
        if progress and n % 10 == 0:
            progress(f"compared {n}/{len(pairs)} pairs")
    return readings, model


def rule_verdicts(readings: list[PairReading], model: Any, sigmas: float | None,
                  min_logit: float, registered_only: bool = True) -> Verdicts:  # fmt: skip
    """Gold and predicted changes of every (pair, finding) under one rule; `sigmas=None`: no
    margin at all (the baseline)."""
    from radpilot.core.findings import NIH_FINDINGS
    from radpilot.tools.compare import retest_margin, verdict_of

    gold: list[Change] = []
    predicted: list[Change] = []
    for reading in readings:
        if registered_only and not reading.registered:
            continue
        for column, name in enumerate(NIH_FINDINGS):
            if name not in model.covered:
                continue
            margin = 0.0 if sigmas is None else retest_margin(
                reading.prior_spread[column], reading.current_spread[column], sigmas)
            gold.append(gold_change(reading.pair, name))
            predicted.append(collapse(verdict_of(reading.prior[column], reading.current[column],
                                                 model.thresholds[name], margin, min_logit)))
    return gold, predicted


def evaluate_temporal(data: Path, split: str = "test", limit: int | None = None,
                      progress: Progress | None = None) -> TemporalEvaluation:  # fmt: skip
    """The shipped rule against the baseline (the two readings thresholded independently, no
    margin) on the same registered pairs, and the whole rule grid on these pairs."""
    from radpilot.tools.compare import MARGIN_SIGMAS, MIN_LOGIT_CHANGE

    readings, model = read_pairs(data, split, limit, progress)
    registered = sum(r.registered for r in readings)
    grid = [RuleScore(margin_sigmas=k, min_logit_change=floor,
                      macro_f1=scores(*rule_verdicts(readings, model, k, floor)).macro_f1)
            for k in GRID_SIGMAS for floor in GRID_LOGITS]  # fmt: skip
    ours = rule_verdicts(readings, model, MARGIN_SIGMAS, MIN_LOGIT_CHANGE)
    return TemporalEvaluation(
        split=split,
        pairs=len(readings),
        registered=registered,
        registration_success_rate=round(registered / max(len(readings), 1), 4),
        items=len(ours[0]),
        radpilot=scores(*ours),
        baseline=scores(*rule_verdicts(readings, model, None, 0.0)),
        baseline_all_pairs=scores(*rule_verdicts(readings, model, None, 0.0, False)),
        rule_grid=sorted(grid, key=lambda r: -r.macro_f1),
    )

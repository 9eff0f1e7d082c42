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
from typing import Literal

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


class TemporalEvaluation(BaseModel):
    pairs: int
    registered: int
    registration_success_rate: float
    items: int = Field(description="(pair, finding) verdicts scored, on registered pairs")
    radpilot: VerdictScores
    baseline: VerdictScores = Field(description="independent labels, same registered pairs")
    baseline_all_pairs: VerdictScores
    proxy_note: str = (
        "gold change is derived from NLP-mined labels of two separate reports: a noisy proxy"
    )


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


def evaluate_temporal(
    data: Path, limit: int | None = None, progress: Callable[[str], None] | None = None
) -> TemporalEvaluation:
    from radpilot.tools.compare import (
        MIN_REGISTRATION_SCORE,
        finding_changes,
        read_with_noise,
        verdict_of,
    )
    from radpilot.tools.imaging import read_pixels
    from radpilot.tools.models.findings import StarterFindingsModel
    from radpilot.tools.registration import register

    rows = read_rows(data / "pairs.jsonl", "pairs.jsonl and nih/images/")
    pairs = [PairRecord.model_validate(r) for r in rows if r["patient_id"].startswith("nih-")]
    pairs = [p for p in pairs if split_of(p.patient_id) == "test"][:limit]
    model = StarterFindingsModel()
    gold, ours, base, base_all = [], [], [], []
    registered = 0
    for n, pair in enumerate(pairs, start=1):
        prior, current = (read_pixels(data / path) for path in (pair.prior, pair.current))
        ok = register(prior, current).score >= MIN_REGISTRATION_SCORE
        registered += ok
        for change in finding_changes(model, read_with_noise(model, prior),
                                      read_with_noise(model, current)):  # fmt: skip
            label = gold_change(pair, change.name)
            # The baseline: the two readings thresholded independently, no margin.
            naive = collapse(verdict_of(change.prior_probability, change.probability,
                                        change.threshold, 0.0))  # fmt: skip
            base_all.append((label, naive))
            if not ok:
                continue
            gold.append(label)
            ours.append(collapse(change.verdict))
            base.append(naive)
        if progress and n % 10 == 0:
            progress(f"compared {n}/{len(pairs)} pairs")
    return TemporalEvaluation(
        pairs=len(pairs),
        registered=registered,
        registration_success_rate=round(registered / max(len(pairs), 1), 4),
        items=len(gold),
        radpilot=scores(gold, ours),
        baseline=scores(gold, base),
        baseline_all_pairs=scores([g for g, _ in base_all], [b for _, b in base_all]),
    )

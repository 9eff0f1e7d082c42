"""Baselines the report sets beside the agent's figures.

- **No tools**: answers from priors alone: every expected finding gets its prevalence among the
  training-split NIH labels as its probability, and "present" only if that prevalence is at
  least 0.5. It calls no tool, so its tool recall is 0.
- **CheXNet reference**: on turns whose image has the data's reference CheXNet scores, the
  AUROC of radpilot's probabilities and of CheXNet's, on the same (image, finding) pairs.
- **LLM planner**: the same scenarios with the LLM planner, when an endpoint is configured
  (`radpilot eval` runs it and passes its summary here).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from radpilot.data.devdata import read_nih, records_in
from radpilot.evals.runner import Summary, TurnRecord, finding_auroc


class NoToolsBaseline(BaseModel):
    finding_turns: int
    finding_accuracy: float = Field(description="turns whose expected findings all match")
    finding_auroc: float | None
    tool_recall: float = 0.0


class ReferenceComparison(BaseModel):
    pairs: int = Field(description="(image, finding) pairs with a CheXNet reference score")
    images: int
    radpilot_auroc: float | None
    chexnet_auroc: float | None


class Baselines(BaseModel):
    agent_finding_accuracy: float | None
    agent_finding_auroc: float | None
    no_tools: NoToolsBaseline
    chexnet: ReferenceComparison
    llm_planner: Summary | None = None


def training_prevalence(data: Path) -> dict[str, float]:
    """Label prevalence among the training-split patients' images (never the graded ones)."""
    training = records_in(read_nih(data), "train")
    counts = Counter(label for record in training for label in record.labels)
    return {name: count / len(training) for name, count in counts.items()} if training else {}


def no_tools(records: list[TurnRecord], prevalence: dict[str, float]) -> NoToolsBaseline:
    turns = [r for r in records if r.expected_findings]
    correct = 0
    scored: list[tuple[float, bool]] = []
    for record in turns:
        answers = {name: prevalence.get(name, 0.0) for name in record.expected_findings}
        statuses = {n: "present" if p >= 0.5 else "absent" for n, p in answers.items()}
        correct += statuses == record.expected_findings
        scored += [(answers[n], s == "present") for n, s in record.expected_findings.items()]
    return NoToolsBaseline(
        finding_turns=len(turns),
        finding_accuracy=round(correct / len(turns), 4) if turns else 0.0,
        finding_auroc=finding_auroc(scored),
    )


def chexnet(records: list[TurnRecord], data: Path) -> ReferenceComparison:
    references = {r.image: r for r in read_nih(data) if r.reference_scores_chexnet}
    ours: list[tuple[float, bool]] = []
    theirs: list[tuple[float, bool]] = []
    images: set[str] = set()
    for record in records:
        reference = references.get(record.study or "")
        if reference is None or reference.reference_scores_chexnet is None:
            continue
        for name, probability in record.probabilities.items():
            score = reference.reference_scores_chexnet.get(name)
            if score is None:
                continue
            present = record.expected_findings[name] == "present"
            ours.append((probability, present))
            theirs.append((score, present))
            images.add(reference.image)
    return ReferenceComparison(pairs=len(ours), images=len(images),
                               radpilot_auroc=finding_auroc(ours),
                               chexnet_auroc=finding_auroc(theirs))  # fmt: skip


def baselines(
    summary: Summary, records: list[TurnRecord], data: Path, llm: Summary | None = None
) -> Baselines:
    finding_turns = [r for r in records if "findings" in r.checks]
    accuracy = (
        round(float(np.mean([r.checks["findings"] for r in finding_turns])), 4)
        if finding_turns else None
    )  # fmt: skip
    return Baselines(
        agent_finding_accuracy=accuracy,
        agent_finding_auroc=summary.finding_auroc,
        no_tools=no_tools(records, training_prevalence(data)),
        chexnet=chexnet(records, data),
        llm_planner=llm,
    )

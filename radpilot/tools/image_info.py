"""`image_info`: what radpilot knows about a study before any model looks at it."""

from __future__ import annotations

from pydantic import Field

from radpilot.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from radpilot.tools.imaging import StudyFacts
from radpilot.tools.qc import QCIssue


class ImageInfoInput(ToolInput):
    study_id: str = Field(description="Id of an ingested study.")


class ImageInfoOutput(ToolOutput, StudyFacts):
    study_id: str
    qc_ok: bool = Field(description="False when interpreting tools will refuse this image.")
    qc_issues: list[QCIssue]


class ImageInfoTool(Tool[ImageInfoInput, ImageInfoOutput]):
    on_tool_service = True
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
            **study.model_dump(include=set(StudyFacts.model_fields)),
            study_id=study.id,
            qc_ok=study.qc.ok,
            qc_issues=study.qc.issues,
            limitations=study.qc.limitations,
        )

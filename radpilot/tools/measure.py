"""`measure`: cardiothoracic ratio and lung areas from the anatomy masks.

CTR = widest horizontal heart width / widest inner thoracic width (between the lungs' outer
borders), both lines drawn on an overlay. Lengths are in pixels, and in mm when the DICOM gave
the pixel spacing. Each value comes with how it was measured and what limits it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from radpilot.core.errors import RadpilotError
from radpilot.core.notice import DECISION_SUPPORT
from radpilot.tools.anatomy import Span, cardiothoracic
from radpilot.tools.artefacts import png_bytes
from radpilot.tools.base import ToolContext, ToolInput, ToolOutput
from radpilot.tools.classify import domain_limitations, read_study
from radpilot.tools.image_info import estimate_view
from radpilot.tools.imaging import Study
from radpilot.tools.models.domain_guard import DomainCheck
from radpilot.tools.segment import AnatomyTool, Area, area_of, named_masks, tinted

CTR_THRESHOLD_PA = 0.5  # the usual upper limit of normal on a PA film
# A ratio outside this range is a failed outline, not a heart: the 152 reference CTRs of the
# cardiac set span 0.35-0.74; the bounds allow the ratio's mean error (0.02) below and AP
# magnification above. On the NIH validation and test images about one in five measured
# ratios fell below (hearts outlined too narrow), the reason for the check.
CTR_PLAUSIBLE = (0.33, 0.85)


class Length(BaseModel):
    pixels: int
    mm: float | None = Field(description="when the pixel spacing is known (DICOM)")


class Line(BaseModel):
    y: int
    x_start: int
    x_end: int
    length: Length


class MeasureInput(ToolInput):
    study_id: str


class MeasureOutput(ToolOutput):
    study_id: str
    view: str = Field(description="PA, AP, LATERAL or UNKNOWN: from the header, else estimated")
    domain: DomainCheck | None = Field(default=None, description="the domain-shift guard's "
                                       "verdict on the study (as on classify_findings)")
    view_source: Literal["dicom", "model", "none"] = Field(
        default="dicom", description="where `view` comes from: the file's header, the "
        "projection model (the header records none), or neither"
    )  # fmt: skip
    cardiothoracic_ratio: float
    heart_line: Line
    thorax_line: Line
    right_lung_area: Area
    left_lung_area: Area
    lung_area_ratio_right_to_left: float | None
    pa_threshold: float = Field(default=CTR_THRESHOLD_PA, description="usual PA upper limit")
    ctr_reading: Literal["above", "at or below"] = Field(
        description="the ratio against the PA threshold; not valid as such on AP films"
    )
    notes: list[str] = Field(description="how each value was measured, in plain language")


def line_of(span: Span, study: Study) -> Line:
    millimetres = None if study.spacing_mm is None else round(span.width * study.spacing_mm[1], 1)
    return Line(y=span.y, x_start=span.x_start, x_end=span.x_end,
                length=Length(pixels=span.width, mm=millimetres))  # fmt: skip


def draw_lines(
    pixels: np.ndarray, masks: dict[str, np.ndarray], heart: Span, thorax: Span
) -> bytes:
    from PIL import ImageDraw

    image = tinted(pixels, masks)
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 256))
    for span, colour in ((thorax, (255, 255, 0)), (heart, (255, 0, 255))):
        draw.line([(span.x_start, span.y), (span.x_end, span.y)], fill=colour, width=width)
    return png_bytes(image)


def projection(study: Study, ctx: ToolContext) -> tuple[str, Literal["dicom", "model", "none"]]:
    """The film's projection: the header's, else the projection model's estimate (an AP film
    magnifies the heart, so the ratio is read differently), else UNKNOWN."""
    if study.view != "UNKNOWN":
        return study.view, "dicom"
    try:
        estimate = estimate_view(study, ctx)
    except RadpilotError:  # a measurement must not fail for want of an estimate
        estimate = None
    return (estimate.view, "model") if estimate is not None else ("UNKNOWN", "none")


def method_notes(view: str, heart_method: str, has_spacing: bool) -> list[str]:
    notes = [
        "Cardiothoracic ratio: the widest horizontal width of the heart divided by the widest "
        "inner width of the chest, measured between the outer borders of the two lungs "
        f"(magenta and yellow lines on the overlay); {heart_method}.",
        "On a PA film a ratio above 0.5 is the usual threshold for an enlarged cardiac "
        "silhouette; AP and supine films magnify the heart, so the ratio over-estimates there.",
        "Lung areas are the areas of the segmented lung fields as projected on the film, not "
        "lung volumes.",
    ]
    if view != "PA":
        notes.append(f"This study's view is {view}, not PA: read the ratio with caution.")
    if not has_spacing:
        notes.append("No pixel spacing is known (not a DICOM with spacing): lengths in pixels.")
    return notes


class MeasureTool(AnatomyTool[MeasureInput, MeasureOutput]):
    name = "measure"
    description = (
        "Measure on a frontal chest radiograph: the cardiothoracic ratio (heart width / inner "
        "thoracic width, lines drawn on an overlay), the right and left lung areas and their "
        "ratio, with units (pixels, or mm when the pixel spacing is known) and a note of how "
        "each was measured. Use it for questions about heart size, CTR or lung size."
    )
    Input = MeasureInput
    Output = MeasureOutput
    evidence_kind = "measurement"

    def run(self, inp: MeasureInput, ctx: ToolContext) -> MeasureOutput:
        study, pixels, anatomy = self.analysed(ctx, inp.study_id)
        heart, thorax = cardiothoracic(anatomy.right_lung, anatomy.left_lung, anatomy.heart)
        ratio = round(heart.width / thorax.width, 3)
        if not CTR_PLAUSIBLE[0] <= ratio <= CTR_PLAUSIBLE[1]:
            raise RadpilotError(
                f"the heart or lung outlines were not found reliably on this image (a "
                f"cardiothoracic ratio of {ratio:.2f} is outside the {CTR_PLAUSIBLE[0]:.2f}-"
                f"{CTR_PLAUSIBLE[1]:.2f} a chest can have), so no ratio is reported",
                code="implausible_measurement",
            )
        right, left = area_of(anatomy.right_lung, study), area_of(anatomy.left_lung, study)
        picture = draw_lines(pixels, named_masks(anatomy), heart, thorax)
        view, source = projection(study, ctx)
        # The guard's verdict (cached with the study's classification): a ratio measured on an
        # image unlike the training data says so.
        domain = read_study(study, ctx.models.findings_model(), pixels).domain
        return MeasureOutput(
            study_id=study.id,
            view=view,
            view_source=source,
            domain=domain,
            cardiothoracic_ratio=ratio,
            heart_line=line_of(heart, study),
            thorax_line=line_of(thorax, study),
            right_lung_area=right,
            left_lung_area=left,
            lung_area_ratio_right_to_left=(
                round(right.pixels / left.pixels, 3) if left.pixels else None
            ),
            ctr_reading="above" if ratio > CTR_THRESHOLD_PA else "at or below",
            notes=method_notes(view, anatomy.heart_method, study.spacing_mm is not None),
            artefacts=[ctx.artefacts.save_png(picture, "overlay")],
            models=anatomy.models,
            limitations=[
                *study.qc.limitations,
                *domain_limitations(domain),
                "Measurements rest on a starter lung model's masks: check the lines on the "
                "overlay before quoting the ratio.",
                DECISION_SUPPORT,
            ],
        )

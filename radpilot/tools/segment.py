"""Segmentation tools.

`segment_anatomy`: lungs (right and left) and heart, as mask artefacts with their areas.
`segment_region`: segment-anything on a box or point prompt (a box from `localize_finding`,
or a click in the UI).

Overlay PNGs show the structures on the image. Areas are in pixels, and in mm² when the DICOM
gave the pixel spacing.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from radpilot.core.contracts import ModelCard
from radpilot.core.errors import RadpilotError
from radpilot.core.notice import DECISION_SUPPORT
from radpilot.tools.anatomy import PSPNET_METHOD, Anatomy, anatomy_of, mask_png
from radpilot.tools.artefacts import png_bytes
from radpilot.tools.base import InputT, OutputT, Tool, ToolContext, ToolInput, ToolOutput
from radpilot.tools.classify import require_analysable
from radpilot.tools.imaging import Study
from radpilot.tools.models.store import bundled_card

COLOURS = {"right lung": (0, 160, 255), "left lung": (0, 220, 120), "heart": (255, 80, 80)}


class Area(BaseModel):
    pixels: int
    mm2: float | None = Field(description="when the pixel spacing is known (DICOM)")


class Structure(BaseModel):
    name: str
    area: Area
    box: tuple[int, int, int, int] = Field(description="x, y, w, h in image pixels")
    mask_artefact: str = Field(description="id of the mask PNG artefact (255 = structure)")
    method: str
    mean_intensity: float = Field(
        description="Mean pixel value inside the mask, 0 (black) to 1 (white): an opaque lung "
        "is whiter. Compare the two lungs of one image, never across images."
    )


class SegmentAnatomyInput(ToolInput):
    study_id: str


class SegmentAnatomyOutput(ToolOutput):
    study_id: str
    image_size: tuple[int, int] = Field(description="width, height in pixels")
    structures: list[Structure]


def mean_intensity(pixels: np.ndarray, mask: np.ndarray) -> float:
    """The mean of the image's pixels inside the mask, scaled to 0..1 by the image's range."""
    low, high = float(pixels.min()), float(pixels.max())
    inside = pixels[mask.astype(bool)]
    if inside.size == 0 or high <= low:
        return 0.0
    return round((float(inside.mean()) - low) / (high - low), 3)


def area_of(mask: np.ndarray, study: Study) -> Area:
    pixels = int(mask.sum())
    if study.spacing_mm is None:
        return Area(pixels=pixels, mm2=None)
    row_mm, column_mm = study.spacing_mm
    return Area(pixels=pixels, mm2=round(pixels * row_mm * column_mm, 1))


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    y, x = int(rows[0]), int(columns[0])
    return (x, y, int(columns[-1]) - x + 1, int(rows[-1]) - y + 1)


def tinted(pixels: np.ndarray, masks: dict[str, np.ndarray]) -> Any:
    """The structures tinted over the greyscale image (a PIL RGB image)."""
    from PIL import Image

    grey = (np.clip(pixels, 0, 1) * 255).astype(np.float32)
    rgb = np.stack([grey] * 3, axis=-1)
    for name, mask in masks.items():
        colour = np.array(COLOURS.get(name, (255, 200, 0)), dtype=np.float32)
        rgb[mask] = 0.6 * rgb[mask] + 0.4 * colour
    return Image.fromarray(rgb.astype(np.uint8), mode="RGB")


def overlay(pixels: np.ndarray, masks: dict[str, np.ndarray]) -> bytes:
    """The structures tinted over the greyscale image, as PNG."""
    return png_bytes(tinted(pixels, masks))


def named_masks(anatomy: Anatomy) -> dict[str, np.ndarray]:
    return {"right lung": anatomy.right_lung, "left lung": anatomy.left_lung,
            "heart": anatomy.heart, **anatomy.extra}  # fmt: skip


class AnatomyTool(Tool[InputT, OutputT]):
    """A tool that reads the anatomy (lungs, heart) of one study."""

    on_tool_service = True

    def cards(self) -> list[ModelCard]:
        return [bundled_card("starter-anatomy")]

    @staticmethod
    def analysed(ctx: ToolContext, study_id: str) -> tuple[Study, np.ndarray, Anatomy]:
        """The study (refused if QC refused it), its pixels and its anatomy."""
        study = ctx.studies.get(study_id)
        require_analysable(study)
        pixels = ctx.studies.pixels(study.id)
        return study, pixels, anatomy_of(study.id, pixels, ctx.models)


class SegmentAnatomyTool(AnatomyTool[SegmentAnatomyInput, SegmentAnatomyOutput]):
    name = "segment_anatomy"
    description = (
        "Segment the lungs (patient's right and left separately) and the heart on a frontal "
        "chest radiograph (with the torchxrayvision PSPNet installed: its 14 structures, e.g. "
        "clavicles, hila, aorta, mediastinum, spine): one mask PNG per structure, its area "
        "(pixels; mm² when the pixel spacing is known) and box, and a coloured overlay. Use it "
        "when the user asks to see "
        "or outline the anatomy; use `measure` for the cardiothoracic ratio."
    )
    Input = SegmentAnatomyInput
    Output = SegmentAnatomyOutput

    def run(self, inp: SegmentAnatomyInput, ctx: ToolContext) -> SegmentAnatomyOutput:
        study, pixels, anatomy = self.analysed(ctx, inp.study_id)
        masks = named_masks(anatomy)
        structures, artefacts = [], [ctx.artefacts.save_png(overlay(pixels, masks), "overlay")]
        for name, mask in masks.items():
            artefact = ctx.artefacts.save_png(mask_png(mask), "mask")
            artefacts.append(artefact)
            method = {"heart": anatomy.heart_method, "right lung": anatomy.lung_method,
                      "left lung": anatomy.lung_method}.get(name, PSPNET_METHOD)  # fmt: skip
            structures.append(
                Structure(
                    name=name,
                    area=area_of(mask, study),
                    box=bounding_box(mask),
                    mask_artefact=artefact.id,
                    method=method,
                    mean_intensity=mean_intensity(pixels, mask),
                )  # fmt: skip
            )
        return SegmentAnatomyOutput(
            study_id=study.id,
            image_size=(pixels.shape[1], pixels.shape[0]),
            structures=structures,
            artefacts=artefacts,
            models=anatomy.models,
            limitations=[
                *study.qc.limitations,
                "Lung masks come from a small starter model trained on about a hundred images: "
                "check them on the overlay.",
                DECISION_SUPPORT,
            ],
        )


SamWeights = Literal["medsam-vit-b", "sam-vit-b", "sam-vit-l", "sam-vit-h"]


class SegmentRegionInput(ToolInput):
    study_id: str
    box: tuple[float, float, float, float] | None = Field(
        default=None, description="x, y, w, h in image pixels (e.g. a localize_finding box)"
    )
    point: tuple[float, float] | None = Field(default=None, description="x, y in image pixels")
    point_is_foreground: bool = Field(default=True, description="false: exclude this point")
    weights: SamWeights | None = Field(default=None, description="default: first installed")

    @model_validator(mode="after")
    def _has_a_prompt(self) -> SegmentRegionInput:
        if self.box is None and self.point is None:
            raise ValueError("give a box (x, y, w, h) or a point (x, y) to segment")
        if self.box is not None and (self.box[2] < 2 or self.box[3] < 2):
            raise ValueError("the box is empty: width and height must be at least 2 pixels")
        return self


class SegmentRegionOutput(ToolOutput):
    study_id: str
    area: Area
    box: tuple[int, int, int, int] = Field(description="the mask's own box, x, y, w, h")
    score: float = Field(description="SAM's predicted IoU of its mask (0-1), not a probability")
    encoder_cached: bool = Field(description="the image embedding was reused from a prompt before")
    mask_artefact: str


def check_prompt(inp: SegmentRegionInput, width: int, height: int) -> None:
    def inside(x: float, y: float) -> bool:
        return 0 <= x <= width and 0 <= y <= height

    if inp.box is not None:
        x, y, w, h = inp.box
        if not (inside(x, y) and inside(x + w, y + h)):
            raise RadpilotError(
                f"the box {inp.box} lies outside the {width}x{height} image", code="bad_prompt"
            )
    if inp.point is not None and not inside(*inp.point):
        raise RadpilotError(
            f"the point {inp.point} lies outside the {width}x{height} image", code="bad_prompt"
        )


class SegmentRegionTool(Tool[SegmentRegionInput, SegmentRegionOutput]):
    on_tool_service = True
    name = "segment_region"
    description = (
        "Segment one region of a radiograph from a prompt with segment-anything (SAM or MedSAM "
        "weights, when installed): a box (x, y, w, h), e.g. from localize_finding, or a point "
        "(x, y). Returns the mask PNG, its area and box, and an overlay. Several prompts on one "
        "image reuse its embedding."
    )
    Input = SegmentRegionInput
    Output = SegmentRegionOutput

    def run(self, inp: SegmentRegionInput, ctx: ToolContext) -> SegmentRegionOutput:
        study = ctx.studies.get(inp.study_id)
        require_analysable(study)
        check_prompt(inp, study.width, study.height)
        segmenter = ctx.models.sam(inp.weights)
        pixels = ctx.studies.pixels(study.id)
        prediction = segmenter.segment(
            study.id, pixels, inp.box, inp.point, inp.point_is_foreground
        )
        mask = ctx.artefacts.save_png(mask_png(prediction.mask), "mask")
        picture = ctx.artefacts.save_png(overlay(pixels, {"region": prediction.mask}), "overlay")
        return SegmentRegionOutput(
            study_id=study.id,
            area=area_of(prediction.mask, study),
            box=bounding_box(prediction.mask),
            score=round(prediction.score, 4),
            encoder_cached=prediction.encoder_cached,
            mask_artefact=mask.id,
            artefacts=[picture, mask],
            models=[segmenter.identity],
            limitations=[
                *study.qc.limitations,
                "Segment-anything outlines what the prompt points at; it does not know what the "
                "region is, and its score is the model's own estimate of its mask quality.",
                DECISION_SUPPORT,
            ],
        )

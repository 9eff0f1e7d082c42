"""`localize_finding`: where in the image the evidence for a finding lies.

For the findings where the shipped box detector beat Grad-CAM on the validation patients (its
`localizes` list), the detector's boxes; otherwise, or when it boxes nothing, the Grad-CAM
heatmap of the findings model, thresholded at half its peak, each connected region a box.
Boxes are x, y, w, h in original image pixels, strongest first. An overlay PNG (boxes, and the
heatmap where there is one) is stored as an artefact.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field, field_validator

from radpilot.core.contracts import ModelCard, ModelIdentity
from radpilot.core.errors import RadpilotError
from radpilot.core.findings import NIH_FINDINGS
from radpilot.core.notice import DECISION_SUPPORT
from radpilot.tools.artefacts import png_bytes
from radpilot.tools.base import ToolContext, ToolInput, ToolOutput
from radpilot.tools.classify import (
    FindingsModelTool,
    domain_limitations,
    known_findings,
    read_study,
    shifted,
)
from radpilot.tools.imaging import square_crop_box
from radpilot.tools.models.detector import Detector, StarterDetector, detector_is_shipped
from radpilot.tools.models.findings import FindingsModel
from radpilot.tools.models.store import bundled_card

HEAT_FRACTION = 0.5  # region = heat above this fraction of the peak
MIN_REGION_FRACTION = 0.005  # regions smaller than this share of the image are noise
MAX_BOXES = 3


class Region(BaseModel):
    box: tuple[float, float, float, float] = Field(description="x, y, w, h in original pixels")
    peak: tuple[float, float] = Field(description="x, y of the hottest point, original pixels")
    heat: float = Field(
        description="Strength in [0, 1]: the detector's score for a detected box, or a Grad-CAM "
        "region's peak heat relative to the image's peak"
    )
    side: str = Field(description="Patient's side: the image's left is the patient's right")


class LocalizeInput(ToolInput):
    study_id: str
    finding: str = Field(description=f"One of {', '.join(NIH_FINDINGS)}")

    @field_validator("finding")
    @classmethod
    def _known_finding(cls, value: str) -> str:
        return known_findings([value])[0]


class LocalizeOutput(ToolOutput):
    study_id: str
    finding: str
    model: ModelIdentity
    probability: float
    status: str
    method: str
    image_size: tuple[int, int] = Field(description="width, height of the image in pixels")
    regions: list[Region]


def heatmap_regions(
    heatmap: np.ndarray,
) -> list[tuple[tuple[int, int, int, int], tuple[int, int], float]]:
    """Connected regions above half the peak: ((x, y, w, h), (peak x, peak y), peak heat)."""
    from scipy import ndimage

    mask = heatmap >= HEAT_FRACTION * float(heatmap.max()) if heatmap.max() > 0 else heatmap > 1
    labelled, count = ndimage.label(mask)
    regions = []
    for index, found in enumerate(ndimage.find_objects(labelled), start=1):
        if found is None:
            continue
        rows, cols = found
        member = labelled[found] == index
        if member.sum() < MIN_REGION_FRACTION * heatmap.size:
            continue
        local = np.where(member, heatmap[found], -1)
        peak_row, peak_col = np.unravel_index(int(local.argmax()), local.shape)
        box = (cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        peak = (cols.start + int(peak_col), rows.start + int(peak_row))
        regions.append((box, peak, float(local.max())))
    regions.sort(key=lambda region: -region[2])
    return regions[:MAX_BOXES]


def to_original(
    value: tuple[float, ...], *, scale: float, left: int, top: int
) -> tuple[float, ...]:
    """Model-input coordinates (x, y[, w, h]) to original pixels."""
    x, y, *size = value
    return (
        round(left + x * scale, 1),
        round(top + y * scale, 1),
        *(round(s * scale, 1) for s in size),
    )


# A box whose centre lies within this fraction of the width from the midline is central (about
# the mediastinum's half-width on an adult PA film); elsewhere it lies over one lung.
CENTRAL_BAND = 0.08


def patient_side(x_centre: float, width: int) -> str:
    """Radiographs are viewed as if facing the patient: image left = patient's right."""
    offset = x_centre / width - 0.5
    if abs(offset) < CENTRAL_BAND:
        return "central"
    return "right" if offset < 0 else "left"


def render_overlay(
    pixels: np.ndarray, heatmap: np.ndarray, boxes: list[tuple[float, ...]]
) -> bytes:
    """Heatmap (red-yellow, alpha by heat) and boxes drawn over the greyscale image, as PNG."""
    from PIL import Image, ImageDraw

    grey = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    rgb = np.stack([grey] * 3, axis=-1).astype(np.float32)
    heat = np.clip(heatmap, 0, 1)[..., None]
    colour = np.concatenate([np.ones_like(heat), heat, np.zeros_like(heat)], axis=-1) * 255
    alpha = 0.45 * heat
    blended = (rgb * (1 - alpha) + colour * alpha).astype(np.uint8)
    image = Image.fromarray(blended, mode="RGB")
    draw = ImageDraw.Draw(image)
    line = max(2, round(max(image.size) / 256))
    for x, y, w, h in boxes:
        draw.rectangle([x, y, x + w, y + h], outline=(0, 255, 255), width=line)
    return png_bytes(image)


def heatmap_on_original(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Place the square model-input heatmap back onto the full image (zeros outside)."""
    from PIL import Image

    top, left, side = square_crop_box(*shape)
    resized = Image.fromarray(heatmap.astype(np.float32), mode="F").resize((side, side))
    full = np.zeros(shape, dtype=np.float32)
    full[top : top + side, left : left + side] = np.asarray(resized)
    return full


class LocalizeFindingTool(FindingsModelTool[LocalizeInput, LocalizeOutput]):
    name = "localize_finding"
    description = (
        "Show where the evidence for one finding lies on a frontal chest radiograph: boxes "
        "(x, y, w, h in image pixels) around the regions that drive the classifier's score, "
        "the patient's side, and an overlay image. Use it after classify_findings when a "
        "finding is present or indeterminate, or when the user asks 'where?'."
    )
    Input = LocalizeInput
    Output = LocalizeOutput

    def cards(self) -> list[ModelCard]:
        detector = [bundled_card("starter-detector")] if detector_is_shipped() else []
        return [*super().cards(), *detector]

    def run(self, inp: LocalizeInput, ctx: ToolContext) -> LocalizeOutput:
        study, model, pixels = self.analysable(ctx, inp.study_id)
        if inp.finding not in model.covered:
            raise RadpilotError(f"{model.identity.name} does not assess {inp.finding}")
        probabilities, domain = read_study(study, model, pixels)
        probability = float(probabilities[NIH_FINDINGS.index(inp.finding)])
        detector = ctx.models.detector()
        regions, heatmap = find_regions(model, detector, pixels, inp.finding)
        if detector is not None and heatmap is None:
            heat_on_image = np.zeros(pixels.shape, dtype=np.float32)  # boxes only
            method = "FCOS box detector (starter-detector); peak = the box's centre"
            models = [model.identity, detector.identity]
            caveat = "Boxes are approximate; a finding the detector did not box may be present."
        else:
            heat_on_image = heatmap if heatmap is not None else np.zeros(pixels.shape, np.float32)
            method = "Grad-CAM on the classifier's last convolutional layer"
            models = [model.identity]
            caveat = "Heatmaps show what drives the model's score, not the finding's exact extent."
        overlay = render_overlay(pixels, heat_on_image, [r.box for r in regions])
        artefact = ctx.artefacts.save_png(overlay, "overlay")
        return LocalizeOutput(
            study_id=study.id,
            finding=inp.finding,
            model=model.identity,
            probability=round(probability, 4),
            status=model.operating_points[inp.finding].band(probability, shifted=shifted(domain)),
            method=method,
            image_size=(pixels.shape[1], pixels.shape[0]),
            regions=regions,
            artefacts=[artefact],
            models=models,
            limitations=[*study.qc.limitations, *domain_limitations(domain), caveat,
                         DECISION_SUPPORT],  # fmt: skip
        )


def find_regions(model: FindingsModel, detector: StarterDetector | None, pixels: np.ndarray,
                 finding: str) -> tuple[list[Region], np.ndarray | None]:  # fmt: skip
    """Where the evidence for a finding lies: the detector's boxes when it localizes the
    finding and finds one (heatmap None), else Grad-CAM's regions and heatmap (Grad-CAM always
    has a hottest region, so "where?" always gets an answer)."""
    if detector is not None and finding in detector.localizes:
        boxes = detector_regions(detector, pixels, finding)
        if boxes:
            return boxes, None
    return grad_cam_regions(model, pixels, finding)


def detector_regions(detector: Detector, pixels: np.ndarray, finding: str) -> list[Region]:
    """The detector's boxes for the finding; strength is its score, the peak the box centre."""
    regions = []
    for found in detector.detect(pixels, finding):
        x, y, w, h = found.box
        centre = (round(x + w / 2, 1), round(y + h / 2, 1))
        regions.append(
            Region(
                box=found.box,
                peak=centre,
                heat=found.score,
                side=patient_side(centre[0], pixels.shape[1]),
            )
        )
    return regions


def grad_cam_regions(
    model: FindingsModel, pixels: np.ndarray, finding: str
) -> tuple[list[Region], np.ndarray]:
    """Grad-CAM's regions in original pixels, and its heatmap placed on the whole image."""
    heatmap = model.attribution(pixels, finding)
    top, left, side = square_crop_box(*pixels.shape)
    scale = side / heatmap.shape[0]
    regions = []
    for box, peak, heat in heatmap_regions(heatmap):
        original = to_original(box, scale=scale, left=left, top=top)
        x, _, w, _ = original
        regions.append(
            Region(
                box=original,  # type: ignore[arg-type]
                peak=to_original(peak, scale=scale, left=left, top=top),  # type: ignore[arg-type]
                heat=round(heat, 3),
                side=patient_side(x + w / 2, pixels.shape[1]),
            )
        )
    return regions, heatmap_on_original(heatmap, pixels.shape)

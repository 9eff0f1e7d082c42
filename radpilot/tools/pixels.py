"""Decoded pixels, shared by every decoder (PNG/JPEG in `imaging`, DICOM in `dicom`) and the
quality checks (`qc`): the decoded image, its format and view, and the pixel helpers they all
use. Imports no other tool module, so the decoders and the checks never import each other in a
circle."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

import numpy as np

from radpilot.core.errors import IngestError

SourceFormat = Literal["png", "jpeg", "dicom"]
View = Literal["PA", "AP", "LATERAL", "UNKNOWN"]


@dataclass
class DecodedImage:
    """Pixels plus what the file said about them (already de-identified)."""

    pixels: np.ndarray
    source_format: SourceFormat
    modality: str = "OT"
    view: View = "UNKNOWN"
    bits_stored: int = 8
    spacing_mm: tuple[float, float] | None = None
    acquired: date | None = None
    patient_key: str | None = None
    burned_in_annotation: bool = False
    colourfulness: float = 0.0
    notes: list[str] = field(default_factory=list)


def check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    """Refuse huge images from their header, before any pixel is decoded."""
    if width <= 0 or height <= 0:
        raise IngestError(f"image has no pixels ({width}x{height})", code="corrupt_image")
    if width * height > max_pixels:
        raise IngestError(
            f"image is {width}x{height} = {width * height / 1e6:.0f} megapixels, over the "
            f"{max_pixels / 1e6:.0f}-megapixel limit (set RADPILOT_MAX_IMAGE_MEGAPIXELS to "
            "change it); refused before decoding",
            code="image_too_large",
        )


def grey_from_rgb(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """Greyscale and how colourful the image is (0 = perfectly grey)."""
    colourfulness = float(np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).mean())
    return rgb.mean(axis=-1).astype(np.float32), colourfulness


def rescale_to_unit(values: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1]; a constant image becomes all zeros."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)

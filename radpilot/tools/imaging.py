"""Reading PNG, JPEG and DICOM files into greyscale pixels, and the `Study` they become.

Pixels are held as float32 in [0, 1] with bright = dense (the MONOCHROME2 convention), whatever
the source. Conversion to a model's input range happens in exactly one place:
`to_model_input`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from radpilot.core.errors import IngestError
from radpilot.tools.pixels import (
    DecodedImage,
    SourceFormat,
    View,
    check_pixel_count,
    grey_from_rgb,
    rescale_to_unit,
)
from radpilot.tools.qc import QCResult

if TYPE_CHECKING:
    from radpilot.tools.dicom import Deidentifier

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


class StudyFacts(BaseModel):
    """What is known about an image before any model looks at it."""

    source_format: SourceFormat
    modality: str
    view: View
    width: int
    height: int
    bits_stored: int
    spacing_mm: tuple[float, float] | None = None
    acquired: date | None = Field(
        default=None, description="Acquisition date, shifted by de-identification."
    )


class Study(StudyFacts):
    """One ingested, de-identified radiograph."""

    id: str
    pixel_ref: str
    patient_key: str | None = None
    qc: QCResult


def sniff_format(data: bytes, filename: str = "") -> SourceFormat:
    """Decide the format from the bytes, not the file name (a `.png` may be anything)."""
    if not data:
        raise IngestError("the file is empty (0 bytes)", code="empty_file")
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if data[128:132] == b"DICM" or filename.lower().endswith((".dcm", ".dicom")):
        return "dicom"
    raise IngestError(
        "not a PNG, JPEG or DICOM file (the content does not match any of these formats, "
        "whatever its name says)",
        code="unsupported_format",
    )


def decode_image(
    data: bytes,
    *,
    filename: str = "",
    max_megapixels: float,
    deidentifier: Deidentifier,
) -> DecodedImage:
    """Decode a file's bytes; raises `IngestError` with a clear reason when it cannot."""
    source_format = sniff_format(data, filename)
    max_pixels = int(max_megapixels * 1_000_000)
    if source_format == "dicom":
        from radpilot.tools.dicom import decode_dicom

        return decode_dicom(data, max_pixels=max_pixels, deidentifier=deidentifier)
    return _decode_raster(data, source_format, max_pixels)


def _open_raster(data: bytes, source_format: SourceFormat, max_pixels: int) -> Any:
    """Open a PNG/JPEG and check its size from the header alone, before decoding pixels."""
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        # Pillow's own guard fired on the header alone (far over any sane size).
        raise IngestError(
            f"image is {_pillow_reported_pixels(error) / 1e6:.0f} megapixels, over the "
            f"{max_pixels / 1e6:.0f}-megapixel limit; refused before decoding",
            code="image_too_large",
        ) from error
    except Exception as error:  # Pillow raises many types for unreadable headers
        raise IngestError(
            f"cannot read this {source_format.upper()} file: the header is corrupt",
            code="corrupt_image",
        ) from error
    check_pixel_count(*image.size, max_pixels)
    return image


@contextmanager
def _decoding(source_format: SourceFormat) -> Iterator[None]:
    """Turn Pillow's decoding failures into one clear error."""
    from PIL import Image

    try:
        yield
    except Image.DecompressionBombError as error:
        raise IngestError(str(error), code="image_too_large") from error
    except (OSError, ValueError, SyntaxError) as error:
        raise IngestError(
            f"cannot decode this {source_format.upper()} file: the image data is truncated "
            "or corrupt",
            code="corrupt_image",
        ) from error


def _decode_raster(data: bytes, source_format: SourceFormat, max_pixels: int) -> DecodedImage:
    from PIL import ImageOps

    image = _open_raster(data, source_format, max_pixels)
    notes = []
    if getattr(image, "n_frames", 1) > 1:
        notes.append("animated image: only the first frame was analysed")
    with _decoding(source_format):
        image.seek(0)
        pixels, colourfulness, bits = _raster_to_grey(ImageOps.exif_transpose(image))
    return DecodedImage(
        pixels=pixels,
        source_format=source_format,
        bits_stored=bits,
        colourfulness=colourfulness,
        notes=notes,
    )


def _pillow_reported_pixels(error: Exception) -> int:
    match = re.search(r"\((\d+) pixels\)", str(error))
    return int(match.group(1)) if match else 0


def _raster_to_grey(image: object) -> tuple[np.ndarray, float, int]:
    from PIL import Image

    assert isinstance(image, Image.Image)
    if image.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(image, dtype=np.float32) / 65535.0, 0.0, 16
    if image.mode in ("I", "F"):
        return rescale_to_unit(np.asarray(image, dtype=np.float32)), 0.0, 32
    if image.mode in ("L", "1"):
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0, 0.0, 8
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return grey_from_rgb(rgb) + (8,)


def read_pixels(path: Path) -> np.ndarray:
    """An image read through the same decoder as user uploads (float32 in [0, 1]), for
    evaluation, training, the similar-case index and the UI's preview: what is measured is what
    users run. Nothing read here is stored, so the de-identification key is fixed."""
    from radpilot.tools.dicom import Deidentifier

    fixed_key = Deidentifier(b"development-data-has-no-identities")
    image = decode_image(path.read_bytes(), filename=path.name, max_megapixels=50,
                         deidentifier=fixed_key)  # fmt: skip
    return image.pixels


def to_model_input(pixels: np.ndarray, size: int = 224, scale: float = 1024.0) -> np.ndarray:
    """The one place that turns study pixels into a model's input.

    Centre-crops to a square, resizes to `size` and maps [0, 1] to [-scale, scale]:
    torchxrayvision's convention is scale 1024; the starter models use 1 (EfficientNet-Lite's
    [-1, 1]). Returns an array of shape (1, size, size), float32.
    """
    from PIL import Image

    top, left, side = square_crop_box(*pixels.shape)
    square = pixels[top : top + side, left : left + side]
    resized = Image.fromarray(square.astype(np.float32), mode="F").resize(
        (size, size), Image.Resampling.BILINEAR
    )
    scaled = (np.asarray(resized, dtype=np.float32) * 2.0 - 1.0) * scale
    return scaled[None, :, :]


def square_crop_box(height: int, width: int) -> tuple[int, int, int]:
    """(top, left, side) of the centre square `to_model_input` keeps: maps model coordinates
    back to the original image."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def strip_raster_metadata(data: bytes, *, max_megapixels: float) -> bytes:
    """Re-encode a PNG/JPEG's pixels as a PNG with no metadata (EXIF, text chunks, ICC)."""
    from PIL import Image

    source_format = sniff_format(data)
    if source_format == "dicom":
        raise IngestError("this is a DICOM file, not a PNG or JPEG", code="unsupported_format")
    image = _open_raster(data, source_format, int(max_megapixels * 1_000_000))
    with _decoding(source_format):
        clean = Image.fromarray(np.asarray(image))
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG")
    return buffer.getvalue()

"""DICOM decoding in every photometric interpretation and bit depth, and its refusals."""

import numpy as np
import pytest

from radpilot.core.errors import IngestError
from radpilot.tools.dicom import Deidentifier
from radpilot.tools.imaging import decode_image
from tests.factories import chest_like, make_dicom

DEID = Deidentifier(b"s" * 32)


def decode(data: bytes, max_megapixels: float = 50.0):  # type: ignore[no-untyped-def]
    return decode_image(data, filename="x.dcm", max_megapixels=max_megapixels, deidentifier=DEID)


@pytest.mark.parametrize(
    ("photometric", "bits"),
    [(mono, bits) for mono in ("MONOCHROME1", "MONOCHROME2") for bits in (8, 12, 16)]
    + [("RGB", 8)],
)
def test_every_interpretation_and_depth_decodes_to_the_same_picture(
    photometric: str, bits: int
) -> None:
    truth = chest_like()
    image = decode(make_dicom(pixels=truth, bits=bits, photometric=photometric))
    assert image.pixels.shape == truth.shape
    assert image.pixels.dtype == np.float32
    assert image.pixels.min() >= 0.0 and image.pixels.max() <= 1.0
    expected = (truth - truth.min()) / (truth.max() - truth.min())
    # MONOCHROME1 is inverted back: bright = dense, as in MONOCHROME2.
    assert np.abs(image.pixels - expected).mean() < 0.01
    assert image.bits_stored == bits
    assert image.view == "PA"
    assert image.spacing_mm == (0.2, 0.2)


def test_voi_window_is_applied() -> None:
    truth = chest_like()
    plain = decode(make_dicom(pixels=truth, bits=12))
    windowed = decode(make_dicom(pixels=truth, bits=12, window=(2048, 1024)))
    # A narrow window saturates both ends: more pixels at exactly 0 and 1.
    saturated = lambda img: np.mean((img.pixels == 0) | (img.pixels == 1))  # noqa: E731
    assert saturated(windowed) > saturated(plain) + 0.05


def test_modality_lut_with_negative_slope_inverts() -> None:
    truth = chest_like()
    image = decode(make_dicom(pixels=truth, bits=12, rescale=(-1.0, 4095.0)))
    expected = (truth - truth.min()) / (truth.max() - truth.min())
    assert np.abs(image.pixels - (1 - expected)).mean() < 0.01


def test_lateral_view_is_read_from_the_header() -> None:
    assert decode(make_dicom(view="LL")).view == "LATERAL"


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (make_dicom(modality="CT"), "wrong_modality", "modality CT is not a radiograph"),
        (make_dicom(modality="MR"), "wrong_modality", "CR or DX"),
        (make_dicom(with_pixels=False), "no_pixel_data", "no pixel data"),
        (make_dicom(frames=3), "multi_frame", "multi-frame DICOM (3 frames)"),
        (b"\x00" * 128 + b"DICM" + b"\xff" * 64, "malformed_dicom", "malformed DICOM"),
    ],
)
def test_refusals_are_clear(data: bytes, code: str, words: str) -> None:
    with pytest.raises(IngestError) as error:
        decode(data)
    assert error.value.code == code
    assert words in error.value.message


def test_huge_dimensions_are_refused_before_decoding() -> None:
    data = make_dicom(pixels=chest_like(200, 200))
    with pytest.raises(IngestError) as error:
        decode(data, max_megapixels=0.01)
    assert error.value.code == "image_too_large"


def test_an_undecodable_transfer_syntax_is_named() -> None:
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(make_dicom(bits=16)))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.80"  # JPEG-LS Lossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8 not jpeg-ls"])
    buffer = io.BytesIO()
    ds.save_as(buffer)
    with pytest.raises(IngestError) as error:
        decode(buffer.getvalue())
    assert error.value.code == "undecodable_pixels"
    assert "JPEG-LS Lossless" in error.value.message
    assert "1.2.840.10008.1.2.4.80" in error.value.message

import numpy as np
import pytest

from radpilot.tools.pixels import DecodedImage
from radpilot.tools.qc import check_quality
from tests.factories import chest_like


def codes(image: DecodedImage) -> dict[str, str]:
    return {issue.code: issue.severity for issue in check_quality(image).issues}


def frontal(pixels: np.ndarray, **fields: object) -> DecodedImage:
    return DecodedImage(pixels=pixels, source_format="dicom", view="PA", **fields)  # type: ignore[arg-type]


def test_a_radiograph_like_image_passes() -> None:
    result = check_quality(frontal(chest_like(512, 512)))
    assert result.ok and result.issues == []


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_constant_images_are_refused(value: float) -> None:
    assert codes(frontal(np.full((300, 300), value, dtype=np.float32))) == {"blank": "refuse"}


def test_tiny_images_are_refused_and_small_ones_warned() -> None:
    assert codes(frontal(np.zeros((1, 1), dtype=np.float32))) == {"too_small": "refuse"}
    assert codes(frontal(chest_like(200, 300)))["low_resolution"] == "warn"


def test_colour_photographs_are_not_radiographs() -> None:
    image = frontal(chest_like(), colourfulness=0.2)
    result = check_quality(image)
    assert not result.ok
    assert "not_radiograph_colour" in codes(image)
    assert "photograph" in result.limitations[0]


def test_a_text_screenshot_is_not_a_radiograph() -> None:
    page = np.ones((600, 800), dtype=np.float32)
    for row in range(40, 560, 24):  # lines of 'text'
        page[row : row + 10, 60:740:3] = 0.0
    assert codes(frontal(page)) == {"not_radiograph_flat": "refuse"}


def test_header_facts_become_warnings() -> None:
    image = DecodedImage(
        pixels=chest_like(), source_format="dicom", view="LATERAL", burned_in_annotation=True
    )
    assert codes(image) == {"lateral_view": "warn", "burned_in_annotation": "warn"}
    assert check_quality(image).ok
    unknown = DecodedImage(pixels=chest_like(), source_format="png")
    assert codes(unknown) == {"view_unknown": "warn"}

import io

import numpy as np
from PIL import Image

from radpilot.tools.localize import (
    heatmap_on_original,
    heatmap_regions,
    patient_side,
    render_overlay,
    to_original,
)


def blob(size: int, centre: tuple[int, int], radius: float, height: float = 1.0) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return height * np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * radius**2))


def test_regions_are_found_strongest_first_with_their_peaks() -> None:
    heat = blob(224, (50, 100), 12) + blob(224, (170, 60), 10, height=0.8)
    regions = heatmap_regions((heat / heat.max()).astype(np.float32))
    assert len(regions) == 2
    (box, peak, strength), (_, second_peak, weaker) = regions
    assert peak == (50, 100) and second_peak == (170, 60)
    assert strength > weaker
    x, y, w, h = box
    assert x < 50 < x + w and y < 100 < y + h


def test_specks_are_not_regions() -> None:
    heat = np.zeros((224, 224), dtype=np.float32)
    heat[10, 10] = 1.0
    assert heatmap_regions(heat) == []


def test_model_coordinates_map_back_to_the_original_image() -> None:
    # A 600x400 (w x h) image: the centre square is 400 px, starting at x=100.
    assert to_original((112, 56, 10, 20), scale=400 / 224, left=100, top=0) == (
        300.0, 100.0, 17.9, 35.7,
    )  # fmt: skip
    full = heatmap_on_original(np.ones((224, 224), dtype=np.float32), (400, 600))
    assert full.shape == (400, 600)
    assert full[:, :100].max() == 0 and full[:, 100:500].min() > 0.99


def test_image_left_is_the_patients_right() -> None:
    assert patient_side(50, 600) == "right"
    assert patient_side(550, 600) == "left"
    assert patient_side(300, 600) == "central"


def test_overlay_is_a_png_of_the_image_size() -> None:
    pixels = np.random.default_rng(0).random((300, 400)).astype(np.float32)
    data = render_overlay(pixels, np.zeros((300, 400), np.float32), [(10, 10, 50, 60)])
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.size == (400, 300) and image.mode == "RGB"
    assert image.getpixel((10, 30)) == (0, 255, 255)  # the box outline

"""The synthetic domain shifts (radpilot.training.shifts) change images as they say, and only
that: greyscale [0, 1] float32 out, the input untouched, the same seed the same result."""

from __future__ import annotations

import numpy as np
import pytest

from radpilot.tools.models.domain_guard import image_statistics
from radpilot.training.shifts import (
    SHIFTS,
    apply_shift,
    black_borders,
    burned_in_text,
    downscale,
    gamma,
    invert,
    jpeg,
    off_centre_crop,
    rotate,
    screen_photo,
)
from tests.factories import chest_like


@pytest.fixture(scope="module")
def chest() -> np.ndarray:
    return chest_like(512, 512, seed=3)


def statistic(pixels: np.ndarray, name: str) -> float:
    from radpilot.tools.models.domain_guard import STATISTIC_NAMES

    return float(image_statistics(pixels)[STATISTIC_NAMES.index(name)])


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("name", list(SHIFTS))
def test_every_shift_returns_new_grey_pixels_and_is_reproducible(
    name: str, chest: np.ndarray
) -> None:
    before = chest.copy()
    shifted = apply_shift(name, chest, seed=7)
    assert shifted.ndim == 2 and shifted.dtype == np.float32
    assert shifted.min() >= 0.0 and shifted.max() <= 1.0
    assert np.array_equal(chest, before)  # the input is never modified
    assert np.array_equal(shifted, apply_shift(name, chest, seed=7))
    assert shifted.shape != chest.shape or not np.allclose(shifted, chest)


def test_inverted_polarity_swaps_dark_and_bright(chest: np.ndarray) -> None:
    inverted = invert(chest, rng())
    assert np.allclose(inverted, 1 - chest)
    assert statistic(chest, "polarity") > 0 > statistic(inverted, "polarity")


def test_black_borders_frame_the_whole_film(chest: np.ndarray) -> None:
    framed = black_borders(chest, rng())
    height, width = framed.shape
    assert 1.16 * 512 <= height <= 1.4 * 512 and 1.16 * 512 <= width <= 1.4 * 512
    assert framed[0].max() == 0 and framed[-1].max() == 0
    assert framed[:, 0].max() == 0 and framed[:, -1].max() == 0
    rows, cols = np.nonzero(framed.max(axis=1))[0], np.nonzero(framed.max(axis=0))[0]
    inner = framed[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    assert np.array_equal(inner, chest)


def test_an_off_centre_crop_is_a_corner_window_of_the_film(chest: np.ndarray) -> None:
    crop = off_centre_crop(chest, rng(1))
    side = crop.shape[0]
    assert 0.6 * 512 <= side <= 0.75 * 512
    corners = [chest[t : t + side, s : s + crop.shape[1]]
               for t in (0, 512 - side) for s in (0, 512 - crop.shape[1])]  # fmt: skip
    assert any(np.array_equal(crop, corner) for corner in corners)


def test_jpeg_quality_20_leaves_eight_pixel_blocks(chest: np.ndarray) -> None:
    compressed = jpeg(chest, rng(), quality=20)
    assert compressed.shape == chest.shape
    assert statistic(compressed, "blockiness") > statistic(chest, "blockiness") + 0.1


def test_gamma_below_one_brightens_and_above_one_darkens(chest: np.ndarray) -> None:
    assert gamma(chest, rng(), value=0.5).mean() > chest.mean() > gamma(chest, rng(), 2.0).mean()
    assert np.allclose(gamma(chest, rng(), value=2.0), chest**2, atol=1e-6)


def test_rotation_keeps_the_size_and_blackens_the_corners(chest: np.ndarray) -> None:
    turned = rotate(chest, rng(), degrees=15)
    assert turned.shape == chest.shape
    assert turned[0, 0] == 0 and turned[-1, -1] == 0 and turned[0, -1] == 0
    assert abs(turned[256, 256] - chest[256, 256]) < 0.1  # the centre stays put


def test_downscaling_and_back_keeps_the_size_and_loses_fine_detail() -> None:
    textured = np.clip(chest_like(512, 512, seed=1) + np.random.default_rng(0).normal(
        0, 0.05, (512, 512)), 0, 1).astype(np.float32)  # fmt: skip
    small = downscale(textured, rng(), side=256)
    assert small.shape == textured.shape
    assert statistic(small, "log_fine_detail") < statistic(textured, "log_fine_detail") - 0.5


def test_burned_in_text_adds_bright_strokes(chest: np.ndarray) -> None:
    marked = burned_in_text(chest, rng())
    assert marked.shape == chest.shape
    assert (marked > 0.97).mean() > (chest > 0.97).mean() + 0.002
    assert statistic(marked, "log_bright_strokes") > statistic(chest, "log_bright_strokes")


def test_a_photo_of_a_screen_shows_the_dark_bezel_and_loses_contrast(chest: np.ndarray) -> None:
    photo = screen_photo(chest, rng(2))
    assert photo.shape == chest.shape
    assert photo[:4, :4].mean() < 0.1 and photo[-4:, -4:].mean() < 0.1  # outside the screen
    centre = (slice(160, 352), slice(160, 352))
    assert photo[centre].std() < chest[centre].std() + 0.02
    assert not np.allclose(photo[centre], chest[centre], atol=0.05)

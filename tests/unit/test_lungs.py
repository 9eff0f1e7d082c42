"""The starter lung segmenter without data: network, bundle format, pre/post-processing."""

from pathlib import Path

import numpy as np
import pytest

from radpilot.errors import RadpilotError
from radpilot.tools.models.catalog import CATALOG
from radpilot.tools.models.lungs import (
    LungSegmenter,
    UNetConfig,
    build_unet,
    clean_mask,
    letterbox,
    split_left_right,
    unletterbox,
)
from radpilot.tools.models.starter_bundle import save_lung_model
from radpilot.tools.models.store import WeightsMissingError, sha256_of
from radpilot.tools.models.train_lungs import LungRecipe, TrainedLungs, dice, hd95
from tests.bundles import shipped_bundle
from tests.factories import chest_like

TINY = UNetConfig(channels=(4, 8, 16), strides=(2, 2), num_res_units=1)


def _trained(recipe: LungRecipe) -> TrainedLungs:
    return TrainedLungs(
        recipe=recipe, best_epoch=1, best_val_dice=0.5, history=[], train_images=1,
        train_patients=1, val_images=1, val_patients=1, wall_seconds=1.0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of an untrained tiny U-Net, written by the real bundle writer."""
    folder = tmp_path_factory.mktemp("starter-lungs")
    recipe = LungRecipe(input_size=64, network=TINY)
    save_lung_model(build_unet(TINY), _trained(recipe), folder)
    return folder


def test_default_network_is_small_enough_to_ship_in_fp16() -> None:
    import torch

    net = build_unet()
    parameters = sum(p.numel() for p in net.parameters())
    assert parameters * 2 < 10_000_000
    assert net(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)  # one "lung" logit channel


def test_bundle_roundtrip_keeps_the_weights_in_fp16(bundle: Path) -> None:
    import torch
    from safetensors.torch import load_file

    stored = load_file(str(bundle / "model.safetensors"))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    segmenter = LungSegmenter(bundle)
    assert segmenter.size == 64
    assert segmenter.identity.sha256 == sha256_of(bundle / "model.safetensors")
    assert "NON-COMMERCIAL" in segmenter.card.licence
    state = segmenter.model.state_dict()
    reloaded = {k: v.half() for k, v in state.items() if v.is_floating_point()}
    assert all(np.array_equal(reloaded[k].numpy(), stored[k].numpy()) for k in reloaded)


@pytest.mark.parametrize("shape", [(64, 64), (100, 80), (37, 121)])
def test_predict_returns_a_bool_mask_of_the_input_size(
    bundle: Path, shape: tuple[int, int]
) -> None:
    mask = LungSegmenter(bundle).predict(chest_like(*shape))
    assert mask.dtype == bool and mask.shape == shape


def test_predict_refuses_inputs_outside_its_range(bundle: Path) -> None:
    segmenter = LungSegmenter(bundle)
    with pytest.raises(RadpilotError, match=r"\[0, 1\]"):
        segmenter.predict(chest_like(64, 64) * 255)
    with pytest.raises(RadpilotError, match="2-D"):
        segmenter.predict(np.zeros((3, 64, 64), dtype=np.float32))


def test_a_missing_bundle_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError, match="radpilot models train lungs"):
        LungSegmenter(tmp_path)


def test_letterbox_roundtrip_keeps_shape_and_content() -> None:
    values = np.zeros((90, 60), dtype=np.float32)
    values[20:70, 10:30] = 1
    square, placement = letterbox(values, 64)
    assert square.shape == (64, 64) and placement.height == 64 and placement.width == 43
    back = unletterbox(square, placement, values.shape) >= 0.5
    assert back.shape == values.shape and dice(back, values > 0) > 0.95


def _two_lungs(touching: bool = False) -> np.ndarray:
    y, x = np.mgrid[0:200, 0:200]
    right = ((x - 60) / 35) ** 2 + ((y - 100) / 70) ** 2 <= 1  # image left = patient's right
    left = ((x - 140) / 30) ** 2 + ((y - 105) / 65) ** 2 <= 1
    mask = right | left
    if touching:
        mask[95:100, 60:140] = True  # a thin bridge joins them
    return mask


def test_split_left_right_follows_image_convention() -> None:
    mask = _two_lungs()
    mask[5, 5] = True  # a speck on the image's left joins the patient's right side
    right, left = split_left_right(mask)
    assert right[100, 60] and not right[100, 140]
    assert left[100, 140] and not left[100, 60]
    assert not (right & left).any() and np.array_equal(right | left, mask)


def test_split_left_right_cuts_touching_lungs_near_the_midline() -> None:
    right, left = split_left_right(_two_lungs(touching=True))
    assert right[100, 60] and left[100, 140]
    cut = np.flatnonzero(right.any(axis=0))[-1]
    assert 90 <= cut <= 115


def test_split_left_right_keeps_a_single_lung_on_its_side() -> None:
    mask = _two_lungs()
    mask[:, 100:] = False
    right, left = split_left_right(mask)
    assert np.array_equal(right, mask) and not left.any()
    empty_right, empty_left = split_left_right(np.zeros((10, 10), dtype=bool))
    assert not empty_right.any() and not empty_left.any()


def test_clean_mask_drops_specks_and_fills_holes() -> None:
    mask = _two_lungs()
    mask[100:110, 55:65] = False  # an opacity inside the right lung
    mask[5:8, 5:8] = True  # a speck
    cleaned = clean_mask(mask)
    assert cleaned[105, 60] and not cleaned[6, 6]
    assert np.array_equal(cleaned, _two_lungs())


def test_metrics_on_known_masks() -> None:
    truth = _two_lungs()
    assert dice(truth, truth) == 1.0 and hd95(truth, truth) == 0.0
    shifted = np.roll(truth, 3, axis=1)
    assert 0.9 < dice(shifted, truth) < 1.0 and 0 < hd95(shifted, truth) <= 3.0
    assert hd95(np.zeros_like(truth), truth) == pytest.approx(np.hypot(200, 200))


def test_the_catalog_knows_the_bundled_starter() -> None:
    weights = CATALOG["starter-lungs"]
    assert weights.bundled and weights.family == "starter-lungs" and weights.labels == ["lung"]
    assert "NON-COMMERCIAL" in weights.licence


def test_the_shipped_bundle_is_verified_and_has_held_out_metrics() -> None:
    path, card = shipped_bundle("starter-lungs")
    assert "NON-COMMERCIAL" in card.licence
    assert {"test_dice_mean", "test_dice_min", "test_hd95_mean_px"} <= set(card.metrics)
    assert (path.parent / "README.md").read_text().count("Non-commercial") >= 1

"""The starter anatomy segmenter without data: network, bundle format, pre/post-processing, and
the partial-label loss that lets lung-only images train a heart-and-lung model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radpilot.core.errors import RadpilotError
from radpilot.tools.models.anatomy_model import (
    CLASSES,
    HEART,
    LEFT_LUNG,
    RIGHT_LUNG,
    AnatomySegmenter,
    largest_component,
)
from radpilot.tools.models.catalog import CATALOG
from radpilot.tools.models.store import WeightsMissingError, sha256_of
from radpilot.tools.models.unet import UNetConfig, build_unet, letterbox, unletterbox
from radpilot.training.anatomy_bundle import save_anatomy_model
from radpilot.training.evaluate_anatomy import dice, hd95
from radpilot.training.train_anatomy import (
    AnatomyRecipe,
    TrainedAnatomy,
    _augment,
    lungs_only_allowed,
    partial_label_loss,
)
from tests.bundles import shipped_bundle
from tests.factories import chest_like

TINY = UNetConfig(channels=(4, 8, 16), strides=(2, 2), num_res_units=1)


def _trained(recipe: AnatomyRecipe) -> TrainedAnatomy:
    return TrainedAnatomy(
        recipe=recipe, best_epoch=1, best_val_score=0.5, history=[],
        train_images={"cardiac": 1, "covid": 1}, train_patients=2,
        val_images={"cardiac": 1, "covid": 0}, val_patients=1, wall_seconds=1.0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of an untrained tiny U-Net, written by the real bundle writer."""
    folder = tmp_path_factory.mktemp("starter-anatomy")
    recipe = AnatomyRecipe(input_size=64, network=TINY)
    save_anatomy_model(build_unet(TINY), _trained(recipe), folder, licences={"MIT": 1})
    return folder


def test_default_network_has_four_classes_and_ships_in_fp16_under_15_mb() -> None:
    import torch

    net = build_unet()
    parameters = sum(p.numel() for p in net.parameters())
    assert parameters * 2 < 15_000_000
    assert net(torch.zeros(1, 1, 64, 64)).shape == (1, len(CLASSES), 64, 64)


def test_bundle_roundtrip_keeps_the_weights_in_fp16(bundle: Path) -> None:
    import torch
    from safetensors.torch import load_file

    stored = load_file(str(bundle / "model.safetensors"))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    segmenter = AnatomySegmenter(bundle)
    assert segmenter.size == 64
    assert segmenter.identity.sha256 == sha256_of(bundle / "model.safetensors")
    assert "NON-COMMERCIAL" in segmenter.card.licence and "JSRT" in segmenter.card.licence
    state = segmenter.model.state_dict()
    reloaded = {k: v.half() for k, v in state.items() if v.is_floating_point()}
    assert all(np.array_equal(reloaded[k].numpy(), stored[k].numpy()) for k in reloaded)


@pytest.mark.parametrize("shape", [(64, 64), (100, 80), (37, 121)])
def test_predict_returns_three_bool_masks_of_the_input_size(
    bundle: Path, shape: tuple[int, int]
) -> None:
    segmenter = AnatomySegmenter(bundle)
    masks = segmenter.predict(chest_like(*shape))
    for mask in (masks.heart, masks.right_lung, masks.left_lung):
        assert mask.dtype == bool and mask.shape == shape
    probabilities = segmenter.probabilities(chest_like(*shape))
    assert probabilities.shape == (len(CLASSES), *shape)
    assert np.allclose(probabilities.sum(axis=0), 1.0, atol=1e-3)


def test_predict_refuses_inputs_outside_its_range(bundle: Path) -> None:
    segmenter = AnatomySegmenter(bundle)
    with pytest.raises(RadpilotError, match=r"\[0, 1\]"):
        segmenter.predict(chest_like(64, 64) * 255)
    with pytest.raises(RadpilotError, match="2-D"):
        segmenter.predict(np.zeros((3, 64, 64), dtype=np.float32))


def test_a_missing_bundle_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError, match="radpilot models train anatomy"):
        AnatomySegmenter(tmp_path)


def _disc(cx: int, cy: int, r: int, size: int = 100) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return (x - cx) ** 2 + (y - cy) ** 2 <= r**2


def test_letterbox_roundtrip_keeps_shape_and_content() -> None:
    values = np.zeros((90, 60), dtype=np.float32)
    values[20:70, 10:30] = 1
    square, placement = letterbox(values, 64)
    assert square.shape == (64, 64) and placement.height == 64 and placement.width == 43
    back = unletterbox(square, placement, values.shape) >= 0.5
    assert back.shape == values.shape and dice(back, values > 0) > 0.95


def test_largest_component_drops_specks_and_fills_holes() -> None:
    mask = _disc(50, 50, 30)
    mask[48:52, 48:52] = False  # an opacity inside the structure
    mask[2:4, 2:4] = True  # a speck
    cleaned = largest_component(mask)
    assert cleaned[50, 50] and not cleaned[3, 3]
    assert np.array_equal(cleaned, _disc(50, 50, 30))
    assert not largest_component(np.zeros((5, 5), dtype=bool)).any()


def test_metrics_on_known_masks() -> None:
    truth = _disc(50, 50, 30)
    assert dice(truth, truth) == 1.0 and hd95(truth, truth) == 0.0
    shifted = np.roll(truth, 3, axis=1)
    assert 0.9 < dice(shifted, truth) < 1.0 and 0 < hd95(shifted, truth) <= 3.0
    assert hd95(np.zeros_like(truth), truth) == pytest.approx(np.hypot(100, 100))


def _logits(label: np.ndarray) -> object:
    """(1, 4, H, W) logits that put almost all probability on `label` per pixel."""
    import torch

    one_hot = np.eye(len(CLASSES), dtype=np.float32)[label].transpose(2, 0, 1)
    return torch.from_numpy(one_hot[None] * 12.0)


def test_a_lung_only_label_neither_asks_for_a_side_nor_forbids_a_heart() -> None:
    """On a COVID image (both lungs as one label, no heart drawn), calling a lung pixel the
    right or the left lung costs the same, and so does calling a non-lung pixel heart or
    background; calling lung background costs more."""
    import torch

    lungs = _disc(30, 50, 20) | _disc(70, 50, 20)
    allowed = torch.from_numpy(lungs_only_allowed(lungs)[None].astype(np.float32))
    partial = torch.tensor([False])
    labels = np.zeros(lungs.shape, dtype=int)
    as_right, as_left, as_heart = labels.copy(), labels.copy(), labels.copy()
    as_right[lungs], as_left[lungs] = RIGHT_LUNG, LEFT_LUNG
    as_heart[lungs], as_heart[~lungs] = RIGHT_LUNG, HEART
    losses = [float(partial_label_loss(_logits(lab), allowed, partial))
              for lab in (as_right, as_left, as_heart, labels)]  # fmt: skip
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)
    assert losses[0] == pytest.approx(losses[2], abs=0.05)  # only the Dice term may differ
    assert losses[3] > losses[0] + 0.5


def test_augmentation_keeps_every_pixel_a_possible_class() -> None:
    import torch

    lungs = _disc(30, 50, 20) | _disc(70, 50, 20)
    sets = torch.from_numpy(np.stack([lungs_only_allowed(lungs)] * 4).astype(np.float32))
    images = torch.zeros(4, 1, 100, 100)
    _, moved = _augment(images, sets, 1.0, torch.Generator().manual_seed(0))
    assert moved.shape == sets.shape and bool((moved.sum(dim=1) >= 1).all())
    assert set(torch.unique(moved).tolist()) <= {0.0, 1.0}


def test_the_catalog_knows_the_bundled_starter() -> None:
    weights = CATALOG["starter-anatomy"]
    assert weights.bundled and weights.family == "starter-anatomy"
    assert weights.labels == ["heart", "right_lung", "left_lung"]
    assert "NON-COMMERCIAL" in weights.licence


def test_the_shipped_bundle_is_verified_and_has_held_out_metrics() -> None:
    path, card = shipped_bundle("starter-anatomy")
    assert "NON-COMMERCIAL" in card.licence and "JSRT" in card.licence
    assert {"test_heart_dice", "test_lung_dice", "test_ctr_mae"} <= set(card.metrics)
    assert (path.parent / "README.md").read_text().count("Non-commercial") >= 1

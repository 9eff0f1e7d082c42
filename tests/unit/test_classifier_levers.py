"""The starter classifier's levers: backbones, test-time views (never a flip), the table."""

import numpy as np
import pytest
import torch

from radpilot.core.findings import NIH_FINDINGS
from radpilot.tools.models.efficientnet import LITE_VARIANTS, build_lite
from radpilot.tools.models.findings import (
    IDENTITY_VIEW,
    StarterFindingsModel,
    TtaView,
    calibrated,
    views_of,
)
from radpilot.training.compare_classifiers import TTA_VIEWS, LeverRow, lever_table


def left_bright(size: int = 64) -> torch.Tensor:
    image = torch.full((1, 1, size, size), -1.0)
    image[..., : size // 2] = 1.0  # the image's left half (the patient's right)
    return image


def test_the_identity_view_is_the_input() -> None:
    batch = torch.randn(3, 1, 32, 32)
    assert torch.allclose(views_of(batch, [IDENTITY_VIEW]), batch, atol=1e-5)


def test_views_are_stacked_view_major() -> None:
    batch = torch.stack([torch.full((1, 16, 16), float(k)) for k in range(3)])
    out = views_of(batch, [IDENTITY_VIEW, TtaView(zoom=1.1)])
    assert out.shape == (6, 1, 16, 16)
    assert [round(float(x.mean()), 4) for x in out] == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]


def test_a_zoom_magnifies_the_centre() -> None:
    image = torch.zeros(1, 1, 64, 64)
    image[..., 28:36, 28:36] = 1.0
    zoomed = views_of(image, [TtaView(zoom=2.0)])
    assert float(zoomed.sum()) == pytest.approx(4 * float(image.sum()), rel=0.05)


@pytest.mark.parametrize("tta", list(TTA_VIEWS))
def test_no_test_time_view_swaps_left_and_right(tta: str) -> None:
    for view in views_of(left_bright(), TTA_VIEWS[tta]):
        assert float(view[..., :, :24].mean()) > 0.9 and float(view[..., :, 40:].mean()) < -0.9


def test_the_starter_averages_its_views_logits() -> None:
    image = np.clip(np.random.default_rng(0).normal(0.5, 0.2, (300, 260)), 0, 1)
    views = TTA_VIEWS["2 views"]
    model = StarterFindingsModel(batch_wait_s=0, views=views)
    batch = model.inputs([image])
    with torch.no_grad():
        logits = model.model(views_of(batch, views)).mean(dim=0, keepdim=True)
    expected = calibrated(logits.numpy(), model.calibration)
    assert np.allclose(model.predict([image]), expected, atol=1e-5)
    plain = StarterFindingsModel(batch_wait_s=0)
    assert plain.views == [IDENTITY_VIEW]
    assert not np.allclose(plain.predict([image]), model.predict([image]), atol=1e-6)


@pytest.mark.parametrize("variant", LITE_VARIANTS)
def test_every_backbone_takes_one_grey_channel(variant: str) -> None:
    model = build_lite(variant, len(NIH_FINDINGS), imagenet=False).eval()  # type: ignore[arg-type]
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 96, 96)).shape == (1, len(NIH_FINDINGS))


def test_an_unknown_backbone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        build_lite("efficientnet-b7", 14, imagenet=False)  # type: ignore[arg-type]


def test_the_lever_table_prints_every_row() -> None:
    row = LeverRow(
        name="A",
        tta="2 views",
        val_mean_auroc=0.71234,
        test_mean_auroc=None,
        test_ratio_to_chexnet=0.9,
        test_ece=0.0123,
        forward_passes=2,
        weights_mb=6.9,
    )
    lines = lever_table([row])
    assert lines[2] == "| A | 2 views | 2 | 6.9 | 0.712 | — | 0.900 | 0.012 |"

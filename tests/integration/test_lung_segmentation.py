"""The shipped starter lung segmenter on held-out (test-split) development images."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radpilot.tools.models.devdata import LungMaskRecord, read_lung_masks, records_in

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def held_out(data_dir: Path) -> list[LungMaskRecord]:
    if not (data_dir / "covid" / "lung_masks").is_dir():
        pytest.skip(f"no COVID lung masks under {data_dir / 'covid'}")
    records = records_in(read_lung_masks(data_dir), "test")
    assert records, "the test split has no masked images"
    return records


def test_shipped_starter_segments_held_out_lungs(
    data_dir: Path, held_out: list[LungMaskRecord]
) -> None:
    from radpilot.tools.models.lungs import split_left_right, starter_lung_segmenter
    from radpilot.tools.models.train_lungs import dice, load_mask, load_pixels

    segmenter = starter_lung_segmenter()
    assert starter_lung_segmenter() is segmenter  # loaded once per process
    scores = []
    for record in held_out:
        pixels = load_pixels(data_dir / record.image)
        mask = segmenter.predict(pixels)
        assert mask.dtype == bool and mask.shape == pixels.shape
        truth = load_mask(data_dir / record.lung_mask)
        scores.append(dice(mask, truth))
        right, left = split_left_right(mask)
        if right.any() and left.any():  # patient's right lung on the image's left
            assert np.argwhere(right)[:, 1].mean() < np.argwhere(left)[:, 1].mean()
    assert float(np.mean(scores)) > 0.9, scores
    assert min(scores) > 0.8, scores


def test_evaluate_lungs_cli_prints_dice_and_hd95(
    data_dir: Path, held_out: list[LungMaskRecord]
) -> None:
    reply = subprocess.run(
        [sys.executable, "-m", "radpilot.app.cli", "models", "evaluate", "lungs",
         "--data", str(data_dir), "--split", "test", "--limit", "4", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert reply.returncode == 0, reply.stderr
    result = json.loads(reply.stdout)
    assert result["images"] == 4 and len(result["per_image"]) == 4
    assert 0.9 < result["dice_mean"] <= 1 and result["dice_min"] <= result["dice_median"]
    assert result["hd95_mean"] >= 0
    assert result["splits"]["test"]["images"] == len(held_out)
    assert set(result["splits"]) == {"train", "val", "test"}

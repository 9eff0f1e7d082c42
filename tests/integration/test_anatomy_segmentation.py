"""The shipped starter anatomy segmenter on held-out (test-split) patients of `cardiac/`: heart
and lung masks, the CTR measured from them against the reference CTR, and the evaluation
commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radpilot.data.devdata import CardiacRecord, read_cardiac, records_in

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def held_out(data_dir: Path) -> list[CardiacRecord]:
    if not (data_dir / "cardiac" / "labels.jsonl").exists():
        pytest.skip(f"no heart masks under {data_dir / 'cardiac'}")
    records = records_in(read_cardiac(data_dir), "test")
    assert records, "the test split has no cardiac images"
    return records


def test_shipped_starter_segments_held_out_hearts_and_lungs(
    data_dir: Path, held_out: list[CardiacRecord]
) -> None:
    from radpilot.tools.imaging import read_pixels
    from radpilot.tools.models.anatomy_model import shipped_anatomy_segmenter
    from radpilot.training.evaluate_anatomy import dice, load_mask

    segmenter = shipped_anatomy_segmenter()
    assert shipped_anatomy_segmenter() is segmenter  # loaded once per process
    hearts, lungs = [], []
    for record in held_out[::4]:
        pixels = read_pixels(data_dir / record.image)
        masks = segmenter.predict(pixels)
        assert masks.heart.shape == pixels.shape and masks.heart.dtype == bool
        hearts.append(dice(masks.heart, load_mask(data_dir / record.heart_mask)))
        truth = load_mask(data_dir / record.right_lung_mask) | load_mask(
            data_dir / record.left_lung_mask
        )
        lungs.append(dice(masks.right_lung | masks.left_lung, truth))
        # The patient's right lung is on the image's left, the heart between the lungs.
        columns = [np.argwhere(m)[:, 1].mean() for m in (masks.right_lung, masks.heart,
                                                         masks.left_lung)]  # fmt: skip
        assert columns[0] < columns[1] < columns[2]
    assert float(np.mean(hearts)) > 0.88, hearts
    assert float(np.mean(lungs)) > 0.93, lungs


def _cli(*arguments: str) -> dict[str, object]:
    reply = subprocess.run(
        [sys.executable, "-m", "radpilot.app.cli", "models", "evaluate", *arguments, "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert reply.returncode == 0, reply.stderr
    result: dict[str, object] = json.loads(reply.stdout)
    return result


def test_evaluate_anatomy_cli_prints_dice_and_hd95_per_structure(
    data_dir: Path, held_out: list[CardiacRecord]
) -> None:
    result = _cli("anatomy", "--data", str(data_dir), "--split", "test", "--limit", "4")
    assert result["images"] == 4 and len(result["per_image"]) == 4  # type: ignore[arg-type]
    structures = {s["structure"]: s for s in result["structures"]}  # type: ignore[attr-defined]
    assert set(structures) == {"heart", "right_lung", "left_lung", "lungs"}
    for score in structures.values():
        assert 0.8 < score["dice_mean"] <= 1 and score["hd95_mean"] >= 0


def test_evaluate_ctr_cli_compares_with_the_reference_and_both_heart_methods(
    data_dir: Path, held_out: list[CardiacRecord]
) -> None:
    result = _cli("ctr", "--data", str(data_dir), "--split", "test", "--limit", "6")
    reference = result["reference"]
    assert reference["images"] >= 1  # type: ignore[index]
    assert reference["mean_absolute_error"] < 0.08  # type: ignore[index]
    methods = [c["method"] for c in result["cardiomegaly"]]  # type: ignore[attr-defined]
    assert methods == ["heart mask", "brightness profiles"]

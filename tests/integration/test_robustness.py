"""The classifier on synthetic shifts of test images (`radpilot models evaluate robustness`):
one row per shift after the clean set, each from the same images, with the guard's share."""

from __future__ import annotations

from pathlib import Path

import pytest

from radpilot.tools.models.findings import StarterFindingsModel
from radpilot.training.evaluate_robustness import evaluate_robustness, robustness_table
from radpilot.training.shifts import SHIFTS

pytestmark = pytest.mark.integration


def test_every_shift_is_measured_against_the_same_clean_images(data_dir: Path) -> None:
    evaluation = evaluate_robustness(StarterFindingsModel(), data_dir, "test", limit=40)
    names = [r.shift for r in evaluation.results]
    assert names == ["clean", *SHIFTS]
    clean = evaluation.results[0]
    assert clean.auroc_drop == 0.0 and set(clean.mean_change.values()) == {0.0}
    inverted = next(r for r in evaluation.results if r.shift == "inverted polarity")
    assert inverted.flagged is not None and inverted.flagged >= 0.9  # the guard catches it
    assert "| inverted polarity |" in robustness_table(evaluation)

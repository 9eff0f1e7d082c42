"""The side the localization names, against one-sided NIH boxes (`radpilot models evaluate
localization-side`): every one-sided box is counted once, as same side, central or other."""

from __future__ import annotations

from pathlib import Path

import pytest

from radpilot.tools.models.detector import shipped_detector
from radpilot.tools.models.findings import StarterFindingsModel
from radpilot.training.evaluate_side import evaluate_side

pytestmark = pytest.mark.integration


def test_every_one_sided_box_gets_one_outcome(data_dir: Path) -> None:
    evaluation = evaluate_side(StarterFindingsModel(), shipped_detector(), data_dir, "val",
                               limit=8)  # fmt: skip
    overall = evaluation.overall
    assert overall.boxes > 0
    assert overall.same_side + overall.central + overall.other_side == overall.boxes
    assert sum(c.boxes for c in evaluation.by_finding.values()) == overall.boxes
    assert evaluation.agreement == overall.agreement

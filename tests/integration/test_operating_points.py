"""The shipped starter classifier's stored operating points keep their promises on the
validation patients they were chosen on: sensitivity >= 0.90 at rule-out and specificity >=
0.90 at rule-in, for every finding with enough validation positives to measure it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radpilot.core.findings import NIH_FINDINGS
from radpilot.data.devdata import read_nih, records_in
from radpilot.tools.models.findings import StarterFindingsModel
from radpilot.training.operating_points import (
    TARGET_SENSITIVITY,
    TARGET_SPECIFICITY,
    labels_of,
    probabilities_of,
)

pytestmark = pytest.mark.integration

MIN_VALIDATION_POSITIVES = 10


def test_the_shipped_points_meet_their_targets_on_validation(data_dir: Path) -> None:
    model = StarterFindingsModel(batch_wait_s=0)  # refuses a bundle without points
    validation = records_in(read_nih(data_dir), "val")
    scores = probabilities_of(model, validation, data_dir)  # the model's own predict path
    labels = labels_of(validation)
    checked = []
    for finding, point in model.operating_points.items():
        k = NIH_FINDINGS.index(finding)
        positive, negative = scores[labels[:, k], k], scores[~labels[:, k], k]
        assert point.rule_out <= point.rule_in
        if positive.size < MIN_VALIDATION_POSITIVES:
            continue
        sensitivity = float(np.mean(positive >= point.rule_out))
        specificity = float(np.mean(negative < point.rule_in))
        assert sensitivity >= TARGET_SENSITIVITY, (finding, sensitivity, point)
        assert specificity >= TARGET_SPECIFICITY, (finding, specificity, point)
        checked.append(finding)
    assert len(checked) >= 10, checked  # most findings have enough validation positives

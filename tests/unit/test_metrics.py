import math

import numpy as np
import pytest

from radpilot.core.findings import OperatingPoint
from radpilot.core.metrics import (
    auroc,
    bootstrap_auroc_ci,
    expected_calibration_error,
    intersection_over_box,
    youden_threshold,
)
from radpilot.tools.classify import FindingProbability


def test_auroc_known_values() -> None:
    y = np.array([0, 0, 1, 1])
    assert auroc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auroc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auroc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert auroc(y, np.array([0.1, 0.6, 0.4, 0.9])) == 0.75
    assert math.isnan(auroc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_bootstrap_interval_contains_the_estimate() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = y * 0.5 + rng.random(300)
    low, high = bootstrap_auroc_ci(y, s, samples=300)
    assert low < auroc(y, s) < high


def test_calibration_error() -> None:
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0
    assert expected_calibration_error(np.array([0, 0]), np.array([0.9, 0.9])) == pytest.approx(0.9)


def test_youden_threshold_separates_classes() -> None:
    threshold = youden_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.6, 0.8]))
    assert 0.3 < threshold <= 0.6


def test_intersection_over_predicted_box() -> None:
    assert intersection_over_box((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert intersection_over_box((0, 0, 10, 10), (5, 0, 10, 10)) == 0.5
    assert intersection_over_box((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


@pytest.mark.parametrize(
    ("probability", "status"),
    [(0.9, "present"), (0.40, "present"), (0.3999, "indeterminate"), (0.10, "indeterminate"),
     (0.0999, "absent"), (0.01, "absent")],
)  # fmt: skip
def test_a_classifier_row_takes_its_status_from_the_two_operating_points(
    probability: float, status: str
) -> None:
    """Present at or above rule-in, absent below rule-out, indeterminate between; the Youden
    threshold travels with the row (the temporal comparison judges change against it) but no
    longer decides the status."""
    point = OperatingPoint(rule_out=0.10, rule_in=0.40)
    row = FindingProbability.of("Effusion", probability, 0.25, point)
    assert row.status == status
    assert (row.rule_out, row.rule_in, row.threshold) == (0.10, 0.40, 0.25)


def test_a_single_cut_is_never_indeterminate() -> None:
    # Weights without validation-derived points (the xrv DenseNets) use rule-out = rule-in.
    point = OperatingPoint(rule_out=0.5, rule_in=0.5)
    assert [FindingProbability.of("Mass", p, 0.5, point).status for p in (0.49, 0.5, 0.51)] == [
        "absent", "present", "present"]  # fmt: skip


def test_a_row_rounds_what_it_reports() -> None:
    point = OperatingPoint(rule_out=0.123456, rule_in=0.654321)
    row = FindingProbability.of("Nodule", 0.333333, 0.444444, point)
    assert (row.probability, row.threshold, row.rule_out, row.rule_in) == (
        0.3333, 0.4444, 0.1235, 0.6543)  # fmt: skip

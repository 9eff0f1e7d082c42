import math

import numpy as np
import pytest

from radpilot.core.metrics import (
    auroc,
    bootstrap_auroc_ci,
    expected_calibration_error,
    intersection_over_box,
    youden_threshold,
)
from radpilot.tools.classify import status_of


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
    ("probability", "threshold", "status"),
    [(0.9, 0.5, "present"), (0.1, 0.5, "absent"), (0.52, 0.5, "uncertain"),
     (0.2, 0.05, "present"), (0.06, 0.05, "uncertain"), (0.01, 0.05, "absent")],
)  # fmt: skip
def test_status_uses_a_band_around_the_threshold(
    probability: float, threshold: float, status: str
) -> None:
    assert status_of(probability, threshold) == status

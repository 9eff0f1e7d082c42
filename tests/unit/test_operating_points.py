"""Choosing a finding's rule-out and rule-in thresholds (radpilot.training.operating_points)
on synthetic scores, and how a bundle stores and reads them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from radpilot.core.contracts import ModelIdentity
from radpilot.core.errors import RadpilotError
from radpilot.core.findings import NIH_FINDINGS, OperatingPoint
from radpilot.tools.models.findings import StarterFindingsModel, read_operating_points
from radpilot.tools.models.store import bundled_dir
from radpilot.training.operating_points import (
    METRICS_PREFIX,
    BandMetrics,
    FindingOperatingPoints,
    OperatingPointsReport,
    band_metrics,
    choose_operating_point,
)
from radpilot.training.starter_bundle import refresh_operating_points


def _sensitivity(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    return float((scores[labels] >= threshold).mean())


def _specificity(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    return float((scores[~labels] < threshold).mean())


def _overlapping(seed: int, positives: int = 40, negatives: int = 260) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(positives, bool), np.zeros(negatives, bool)]
    scores = np.r_[rng.beta(3, 5, positives), rng.beta(2, 8, negatives)].astype(np.float32)
    return labels, scores


@pytest.mark.parametrize("seed", range(20))
def test_the_points_meet_their_targets_and_are_the_most_decisive_that_do(seed: int) -> None:
    labels, scores = _overlapping(seed)
    point, rule = choose_operating_point(labels, scores, youden=0.2)
    assert rule == "targets" and point.rule_out < point.rule_in
    assert _sensitivity(labels, scores, point.rule_out) >= 0.90
    assert _specificity(labels, scores, point.rule_in) >= 0.90
    # Highest rule-out: up to the deciding positive's score the counts are the same, any
    # threshold past it misses the target.
    deciding = float(scores[scores >= point.rule_out].min())
    assert _sensitivity(labels, scores, deciding) == _sensitivity(labels, scores, point.rule_out)
    assert _sensitivity(labels, scores, float(np.nextafter(np.float32(deciding), 1))) < 0.90
    # Lowest rule-in: at or below the deciding negative's score it misses the target.
    deciding = float(scores[scores < point.rule_in].max())
    assert _specificity(labels, scores, deciding) < 0.90
    past = float(np.nextafter(np.float32(deciding), 1))
    assert _specificity(labels, scores, past) == _specificity(labels, scores, point.rule_in)


@pytest.mark.parametrize("seed", range(20))
def test_the_points_survive_float_noise_in_the_probabilities(seed: int) -> None:
    # The same image's probability differs by ~1e-7 between thread counts and batch sizes; a
    # point exactly on the deciding image's score would flip with it.
    labels, scores = _overlapping(seed)
    point, _ = choose_operating_point(labels, scores, youden=0.2)
    for sign in (-1, 1):
        noisy = scores + np.float32(sign * 1e-6)
        assert _sensitivity(labels, noisy, point.rule_out) >= 0.90
        assert _specificity(labels, noisy, point.rule_in) >= 0.90


def test_exactly_ninety_percent_counts_as_met() -> None:
    # 10 positives: 9 must stay at or above rule-out (0.9 * 10 is 9.000000000000002 in floats).
    labels = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    scores = np.r_[np.linspace(0.5, 0.95, 10), np.linspace(0.0, 0.7, 10)].astype(np.float32)
    point, rule = choose_operating_point(labels, scores, youden=0.6)
    assert rule == "targets"
    # Midway between the 9th highest positive (0.55) and the next lower score (a negative,
    # 0.544), and between the 9th lowest negative (0.622) and the next higher score (0.65).
    assert point.rule_out == pytest.approx((0.7 * 7 / 9 + 0.55) / 2)
    assert point.rule_in == pytest.approx((0.7 * 8 / 9 + 0.65) / 2)
    assert _sensitivity(labels, scores, point.rule_out) == pytest.approx(0.9)


def test_ties_at_the_threshold_are_kept_on_the_right_side() -> None:
    labels = np.r_[np.ones(10, bool), np.zeros(20, bool)]
    scores = np.r_[np.full(10, 0.3), np.full(20, 0.3)].astype(np.float32)
    scores[:5] = 0.8  # half the positives above the tie
    point, _ = choose_operating_point(labels, scores, youden=0.3)
    assert _sensitivity(labels, scores, point.rule_out) >= 0.9
    assert _specificity(labels, scores, point.rule_in) >= 0.9
    # Nothing below the tie: midway to 0; rule-in midway between the tie and 0.8.
    assert point.rule_out == pytest.approx(0.15) and point.rule_in == pytest.approx(0.55)


def test_no_score_above_the_negatives_quantile_puts_rule_in_midway_to_one() -> None:
    labels = np.r_[np.ones(5, bool), np.zeros(10, bool)]
    scores = np.r_[np.full(5, 0.1), np.linspace(0.2, 0.9, 10)].astype(np.float32)
    scores[-1] = scores[-2]  # the top two negatives tie; 9 of 10 must fall below rule-in
    point, _ = choose_operating_point(labels, scores, youden=0.5)
    assert point.rule_in == pytest.approx((float(scores.max()) + 1) / 2)
    assert _specificity(labels, scores, point.rule_in) == 1.0


def test_a_strong_finding_gets_one_cut_inside_the_crossed_interval() -> None:
    labels = np.r_[np.ones(20, bool), np.zeros(80, bool)]
    scores = np.r_[np.linspace(0.6, 0.95, 20), np.linspace(0.01, 0.4, 80)].astype(np.float32)
    # Unconstrained, rule-out would be 0.63 (below the 18th positive) and rule-in 0.36: they
    # cross.
    for youden, expected in ((0.5, 0.5), (0.1, None), (0.9, None)):
        point, rule = choose_operating_point(labels, scores, youden=youden)
        assert rule == "single cut" and point.rule_out == point.rule_in
        if expected is not None:
            assert point.rule_out == pytest.approx(expected)
        assert _sensitivity(labels, scores, point.rule_out) >= 0.9
        assert _specificity(labels, scores, point.rule_in) >= 0.9
        assert band_metrics(labels, scores, point).indeterminate == 0.0
    low, _ = choose_operating_point(labels, scores, youden=0.1)  # clipped up to rule-in
    high, _ = choose_operating_point(labels, scores, youden=0.9)  # clipped down to rule-out
    assert low.rule_out < 0.5 < high.rule_out


def test_few_positives_fall_back_to_the_lowest_positive_and_the_negatives_quantile() -> None:
    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(3, bool), np.zeros(200, bool)]
    scores = np.r_[[0.05, 0.3, 0.7], rng.beta(2, 8, 200)].astype(np.float32)
    point, rule = choose_operating_point(labels, scores, youden=0.3)
    assert rule == "few positives"
    assert point.rule_out < 0.05  # just below the lowest positive: none ruled out
    assert not np.any((scores >= point.rule_out) & (scores < np.float32(0.05)))
    negatives = np.sort(scores[~labels])
    assert negatives[179] < point.rule_in  # 180 of 200 negatives below rule-in
    assert _specificity(labels, scores, point.rule_in) >= 0.9


def test_no_positives_rules_nothing_out() -> None:
    labels = np.zeros(50, bool)
    scores = np.linspace(0.0, 0.5, 50).astype(np.float32)
    point, rule = choose_operating_point(labels, scores, youden=0.5)
    assert rule == "no positives" and point.rule_out == 0.0
    assert _specificity(labels, scores, point.rule_in) >= 0.9
    metrics = band_metrics(labels, scores, point)
    assert metrics.sensitivity_at_rule_out is None and metrics.positives == 0


def test_no_negatives_rules_nothing_in() -> None:
    labels = np.ones(12, bool)
    point, _ = choose_operating_point(labels, np.linspace(0.1, 0.9, 12), youden=0.5)
    assert point.rule_in == 1.0


def test_band_metrics_count_each_side_and_the_band() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    scores = np.array([0.9, 0.6, 0.3, 0.05, 0.7, 0.4, 0.2, 0.01], np.float32)
    metrics = band_metrics(labels, scores, OperatingPoint(rule_out=0.1, rule_in=0.5))
    assert metrics.sensitivity_at_rule_out == 0.75  # 0.05 ruled out
    assert metrics.specificity_at_rule_out == 0.25  # only 0.01 below
    assert metrics.sensitivity_at_rule_in == 0.5  # 0.9, 0.6
    assert metrics.specificity_at_rule_in == 0.75  # 0.7 ruled in
    assert metrics.indeterminate == 0.375  # 0.3, 0.4 and 0.2 lie in [0.1, 0.5)


def test_an_operating_point_is_ordered_and_bands_a_probability() -> None:
    point = OperatingPoint(rule_out=0.1, rule_in=0.4)
    assert [point.band(p) for p in (0.05, 0.1, 0.39, 0.4, 0.9)] == [
        "absent",
        "indeterminate",
        "indeterminate",
        "present",
        "present",
    ]
    single = OperatingPoint(rule_out=0.3, rule_in=0.3)
    assert single.band(0.29) == "absent" and single.band(0.3) == "present"
    with pytest.raises(ValidationError):
        OperatingPoint(rule_out=0.5, rule_in=0.2)


def test_the_shipped_starter_reads_a_point_for_every_finding() -> None:
    model = StarterFindingsModel(batch_wait_s=0)
    assert set(model.operating_points) == set(NIH_FINDINGS)
    for point in model.operating_points.values():
        assert 0.0 <= point.rule_out <= point.rule_in <= 1.0


def _bundle_without_points(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    shutil.copytree(bundled_dir("starter-classifier"), folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    for key in ("operating_points", "operating_points_evaluation"):
        metadata.pop(key, None)
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return folder


def test_a_bundle_without_points_fails_loudly_naming_the_command(tmp_path: Path) -> None:
    folder = _bundle_without_points(tmp_path)
    with pytest.raises(RadpilotError, match="radpilot models operating-points") as caught:
        StarterFindingsModel(folder, batch_wait_s=0)
    assert caught.value.code == "missing_operating_points"
    # The tools that derive points (or compare raw probabilities) can still read it.
    unchecked = StarterFindingsModel(folder, batch_wait_s=0, require_operating_points=False)
    assert unchecked.operating_points == {}
    partial = {"labels": ["Effusion", "Hernia"], "operating_points": {"Effusion": {
        "rule_out": 0.1, "rule_in": 0.4}}}  # fmt: skip
    with pytest.raises(RadpilotError, match="no operating points for Hernia"):
        read_operating_points(partial, folder)


def _report(rule_out: float = 0.1, rule_in: float = 0.4) -> OperatingPointsReport:
    metrics = BandMetrics(
        images=10,
        positives=3,
        sensitivity_at_rule_out=1.0,
        specificity_at_rule_out=0.5,
        sensitivity_at_rule_in=0.33,
        specificity_at_rule_in=0.9,
        indeterminate=0.4,
    )
    findings = [
        FindingOperatingPoints(
            finding=finding,
            rule_out=rule_out,
            rule_in=rule_in,
            youden=0.2,
            rule="few positives" if finding == "Hernia" else "targets",
            validation=metrics,
            test=metrics,
        )
        for finding in NIH_FINDINGS
    ]
    return OperatingPointsReport(
        model=ModelIdentity(name="starter-classifier", version="0", sha256="x"),
        target_sensitivity=0.9,
        target_specificity=0.9,
        min_positives=5,
        validation_images=10,
        validation_patients=9,
        test_images=10,
        test_patients=8,
        findings=findings,
        validation_mean_indeterminate=0.4,
        test_mean_indeterminate=0.4,
    )


def test_writing_keeps_the_file_format_key_order_and_weights_hash(tmp_path: Path) -> None:
    folder = _bundle_without_points(tmp_path)
    before = json.loads((folder / "metadata.json").read_text())
    refresh_operating_points(folder, _report())  # stores the points, re-renders the card
    text = (folder / "metadata.json").read_text()
    after = json.loads(text)
    assert text == json.dumps(after, indent=2) + "\n"
    keys = list(after)
    assert keys.index("operating_points") == keys.index("thresholds") + 1
    assert [k for k in keys if k in before] == list(before)  # the others keep their order
    assert after["sha256"] == before["sha256"] == after["card"]["sha256"]
    assert after["operating_points"]["Effusion"] == {"rule_out": 0.1, "rule_in": 0.4}
    metrics = after["card"]["metrics"]
    assert metrics["test_mean_auroc"] == before["card"]["metrics"]["test_mean_auroc"]
    assert metrics[f"{METRICS_PREFIX}Effusion.test_sensitivity_at_rule_out"] == 1.0
    assert any("Hernia: 3" in item for item in after["card"]["limitations"])
    card = (folder / "README.md").read_text()
    assert "## Operating points (rule-out / rule-in)" in card and "| Effusion | 3 / 3 |" in card
    assert StarterFindingsModel(folder).operating_points["Effusion"].rule_in == 0.4
    # Re-deriving replaces the points, metrics and limitations instead of adding to them.
    refresh_operating_points(folder, _report(0.2, 0.3))
    again = json.loads((folder / "metadata.json").read_text())
    assert list(again) == keys and again["operating_points"]["Mass"]["rule_out"] == 0.2
    assert len(again["card"]["limitations"]) == len(after["card"]["limitations"])
    assert len(again["card"]["metrics"]) == len(metrics)


@pytest.mark.parametrize("command", ["operating-points", "calibrate"])
def test_the_command_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path, command: str) -> None:
    import subprocess
    import sys

    args = ["models", command, "--bundle", str(tmp_path), "--data", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-m", "radpilot.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "not a classifier bundle" in result.stderr and "Traceback" not in result.stderr

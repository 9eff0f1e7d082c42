"""Per-finding calibration of the starter classifier: the fit on synthetic logits, how the
model applies it, and how a bundle stores it (no development data needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from radpilot.core.contracts import ModelIdentity
from radpilot.core.errors import RadpilotError
from radpilot.core.findings import NIH_FINDINGS
from radpilot.core.metrics import auroc
from radpilot.tools.models.findings import (
    Platt,
    StarterFindingsModel,
    calibrated,
    read_calibration,
)
from radpilot.tools.models.store import bundled_dir
from radpilot.training.calibration import (
    METRICS_PREFIX,
    CalibrationReport,
    FindingCalibration,
    ShiftCalibration,
    describe,
    fit_calibration,
    fit_platt,
)
from radpilot.training.starter_bundle import refresh_calibration


def platt_data(slope: float, intercept: float, n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Logits and labels drawn so that sigmoid(slope * z + intercept) is the true probability."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.5, 2.0, n)
    labels = rng.random(n) < 1 / (1 + np.exp(-(slope * z + intercept)))
    return z, labels


def test_a_bundle_without_a_calibration_has_its_global_temperature() -> None:
    calibration = read_calibration({"temperature": 2.0})
    assert set(calibration) == set(NIH_FINDINGS)
    logits = np.array([[-2.0, 0.0, 3.0] + [1.0] * (len(NIH_FINDINGS) - 3)])
    assert np.allclose(calibrated(logits, calibration), 1 / (1 + np.exp(-logits / 2.0)))
    assert describe(calibration) == "one global temperature 2.00"


def test_each_finding_gets_its_own_map() -> None:
    stored = {f: {"slope": 1.0, "intercept": 0.0} for f in NIH_FINDINGS}
    stored["Effusion"] = {"slope": 0.5, "intercept": -1.0}
    calibration = read_calibration({"temperature": 9.0, "calibration": {"findings": stored}})
    probabilities = calibrated(np.full((1, len(NIH_FINDINGS)), 2.0), calibration)[0]
    k = NIH_FINDINGS.index("Effusion")
    assert probabilities[k] == pytest.approx(0.5)  # 0.5 * 2 - 1 = 0
    assert probabilities[NIH_FINDINGS.index("Mass")] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert probabilities.dtype == np.float32
    assert describe(calibration) == "an earlier per-finding calibration"


def test_a_calibration_missing_a_finding_is_refused_at_load() -> None:
    stored = {"findings": {"Effusion": {"slope": 0.5, "intercept": 0.0}}}
    with pytest.raises(RadpilotError, match="radpilot models calibrate") as caught:
        read_calibration({"temperature": 1.0, "calibration": stored})
    assert caught.value.code == "invalid_calibration"


def test_platt_recovers_the_map_that_made_the_labels() -> None:
    z, labels = platt_data(0.6, -0.8, 20_000)
    fit = fit_platt(z[:, None], labels, Platt(slope=1.0), weight=0.1)
    assert fit.slope == pytest.approx(0.6, abs=0.05)
    assert fit.intercept == pytest.approx(-0.8, abs=0.08)


def test_each_image_counts_once_however_many_versions() -> None:
    z, labels = platt_data(0.6, -0.8, 300)
    once = fit_platt(z[:, None], labels, Platt(slope=1.0), weight=2.0)
    thrice = fit_platt(np.repeat(z[:, None], 3, axis=1), labels, Platt(slope=1.0), weight=2.0)
    assert thrice.slope == pytest.approx(once.slope, abs=1e-5)
    assert thrice.intercept == pytest.approx(once.intercept, abs=1e-5)


def test_the_prior_holds_a_fit_on_few_positives() -> None:
    z, labels = platt_data(0.6, -3.0, 120, seed=3)
    prior = Platt(slope=0.8)
    loose = fit_platt(z[:, None], labels, prior, weight=0.01)
    held = fit_platt(z[:, None], labels, prior, weight=200.0)
    distance = [abs(f.slope - 0.8) + abs(f.intercept) for f in (loose, held)]
    assert distance[1] < distance[0] / 5


def test_rare_findings_keep_the_global_temperature_and_no_auroc_moves() -> None:
    rng = np.random.default_rng(1)
    n, versions = 400, 2
    logits = rng.normal(-1.0, 2.0, (n, versions, len(NIH_FINDINGS)))
    labels = rng.random((n, len(NIH_FINDINGS))) < 1 / (1 + np.exp(-logits.mean(1) * 0.7 + 0.5))
    rare = NIH_FINDINGS.index("Hernia")
    labels[:, rare] = False
    labels[:3, rare] = True  # 3 positives: below the minimum
    temperature, fits = fit_calibration(logits, labels)
    assert fits["Hernia"] == Platt(slope=1 / temperature)
    assert fits["Effusion"] != fits["Hernia"] and fits["Effusion"].slope > 0
    clean = logits[:, 0]
    before, after = calibrated(clean, read_calibration({"temperature": 1.25})), calibrated(
        clean, fits
    )
    for k in range(len(NIH_FINDINGS)):
        assert auroc(labels[:, k], before[:, k]) == pytest.approx(auroc(labels[:, k], after[:, k]))


def _report(slope: float = 0.5) -> CalibrationReport:
    return CalibrationReport(
        model=ModelIdentity(name="starter-classifier", version="0", sha256="x"),
        method="Platt scaling",
        temperature=1.4,
        before="one global temperature 1.25",
        prior_weight=2.0,
        min_positives=10,
        fitted_shifts=["black borders"],
        validation_images=10,
        validation_patients=9,
        test_images=10,
        test_patients=8,
        findings=[
            FindingCalibration(
                finding=f,
                slope=slope,
                intercept=-0.25,
                rule="global temperature" if f == "Hernia" else "fitted",
                validation_positives=4 if f == "Hernia" else 12,
                test_positives=5,
                test_ece_before=0.04,
                test_ece_after=0.02,
            )
            for f in NIH_FINDINGS
        ],
        max_auroc_change=0.0,
        test_ece_before=0.03,
        test_ece_after=0.01,
        shifts=[
            ShiftCalibration(shift="clean", images=5, ece_before=0.03, ece_after=0.01,
                             ece_unseen=None),
            ShiftCalibration(shift="black borders", images=5, ece_before=0.07, ece_after=0.04,
                             ece_unseen=0.05),
        ],  # fmt: skip
        thresholds={f: 0.2 for f in NIH_FINDINGS},
    )


def test_the_bundle_stores_and_applies_the_calibration(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    shutil.copytree(bundled_dir("starter-classifier"), folder)
    before = json.loads((folder / "metadata.json").read_text())
    before.pop("calibration", None)
    before.pop("calibration_evaluation", None)
    (folder / "metadata.json").write_text(json.dumps(before, indent=2) + "\n")
    refresh_calibration(folder, _report())
    text = (folder / "metadata.json").read_text()
    after = json.loads(text)
    assert text == json.dumps(after, indent=2) + "\n"
    keys = list(after)
    assert keys.index("calibration") == keys.index("temperature") + 1
    assert [k for k in keys if k in before] == list(before)
    assert after["sha256"] == before["sha256"] == after["card"]["sha256"]
    assert after["thresholds"]["Mass"] == 0.2 and after["evaluation"]["ece"] == 0.01
    assert after["card"]["metrics"][f"{METRICS_PREFIX}black borders.ece_after"] == 0.04
    assert any("Hernia: 4" in item for item in after["card"]["limitations"])
    card = (folder / "README.md").read_text()
    assert "## Calibration" in card and "| black borders | 0.070 | 0.040 | 0.050 |" in card
    model = StarterFindingsModel(folder, batch_wait_s=0)
    assert model.calibration["Effusion"] == Platt(slope=0.5, intercept=-0.25)
    image = np.clip(np.random.default_rng(0).normal(0.5, 0.2, (300, 260)), 0, 1)
    expected = 1 / (1 + np.exp(-(0.5 * model.logits([image]) - 0.25)))
    assert np.allclose(model.predict([image]), expected, atol=1e-6)
    # Re-deriving replaces instead of adding.
    refresh_calibration(folder, _report(slope=0.7))
    again = json.loads((folder / "metadata.json").read_text())
    assert list(again) == keys and again["calibration"]["findings"]["Mass"]["slope"] == 0.7
    assert len(again["card"]["limitations"]) == len(after["card"]["limitations"])
    assert len(again["card"]["metrics"]) == len(after["card"]["metrics"])

"""The findings tools and `models evaluate` on real development images."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radpilot.assembly import build_registry
from radpilot.core.contracts import Artefact
from radpilot.core.findings import NIH_FINDINGS
from radpilot.data.devdata import read_nih, records_in
from radpilot.settings import Settings
from radpilot.tools.base import ToolContext

pytestmark = pytest.mark.integration


@pytest.fixture
def context(tmp_path: Path) -> ToolContext:
    return ToolContext.create(Settings(), root=tmp_path)


@pytest.fixture
def boxed_record(data_dir: Path):  # type: ignore[no-untyped-def]
    """A held-out (test-split) image with a radiologist's box."""
    return next(r for r in records_in(read_nih(data_dir), "test") if r.boxes)


def test_classify_gives_finite_calibrated_probabilities(
    data_dir: Path, context: ToolContext, boxed_record
) -> None:  # type: ignore[no-untyped-def]
    study = context.studies.ingest_file(data_dir / boxed_record.image)
    result = build_registry(Settings()).run("classify_findings", {"study_id": study.id}, context)
    assert result.ok and result.output is not None
    findings = result.output["findings"]
    assert [f["name"] for f in findings] == list(NIH_FINDINGS)
    assert all(0 <= f["probability"] <= 1 and f["status"] in
               {"present", "absent", "indeterminate"} for f in findings)  # fmt: skip
    assert result.output["model"]["name"] == "starter-classifier"
    assert result.output["model"]["sha256"]
    assert any("not a diagnosis" in item for item in result.output["limitations"])


def test_classify_a_subset_and_reject_unknown_findings(
    data_dir: Path, context: ToolContext, boxed_record
) -> None:  # type: ignore[no-untyped-def]
    from radpilot.core.errors import ToolArgumentError

    study = context.studies.ingest_file(data_dir / boxed_record.image)
    registry = build_registry(Settings())
    result = registry.run(
        "classify_findings", {"study_id": study.id, "findings": ["Effusion"]}, context
    )
    assert result.output is not None and [f["name"] for f in result.output["findings"]] == [
        "Effusion"
    ]
    with pytest.raises(ToolArgumentError, match="unknown finding"):
        registry.run("classify_findings", {"study_id": study.id, "findings": ["Fluid"]}, context)


def test_localize_draws_an_overlay_of_the_image_size(
    data_dir: Path, context: ToolContext, boxed_record
) -> None:  # type: ignore[no-untyped-def]
    from radpilot.core.findings import finding_from_box_label

    study = context.studies.ingest_file(data_dir / boxed_record.image)
    finding = finding_from_box_label(boxed_record.boxes[0].label)
    result = build_registry(Settings()).run(
        "localize_finding", {"study_id": study.id, "finding": finding}, context
    )
    assert result.ok and result.output is not None
    regions = result.output["regions"]
    assert regions, "a Grad-CAM heatmap always has a hottest region"
    for region in regions:
        x, y, w, h = region["box"]
        assert x >= 0 and y >= 0 and x + w <= study.width + 1 and y + h <= study.height + 1
        assert region["side"] in {"left", "right", "central"}
    [artefact] = [Artefact.model_validate(a) for a in result.output["artefacts"]]
    overlay = Image.open(io.BytesIO(context.artefacts.path(artefact).read_bytes()))
    assert overlay.format == "PNG" and overlay.size == (study.width, study.height)
    assert np.asarray(overlay).std() > 0


def test_localizing_after_classifying_reuses_the_probabilities(
    data_dir: Path, context: ToolContext, boxed_record, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    model = context.models.findings_model()
    calls: list[int] = []
    read_one = model.read_one
    monkeypatch.setattr(model, "read_one", lambda pixels: calls.append(1) or read_one(pixels))
    registry = build_registry(Settings())
    study = context.studies.ingest_file(data_dir / boxed_record.image)
    classified = registry.run("classify_findings", {"study_id": study.id}, context).output
    localized = registry.run(
        "localize_finding", {"study_id": study.id, "finding": "Effusion"}, context
    ).output
    assert classified is not None and localized is not None
    effusion = next(f for f in classified["findings"] if f["name"] == "Effusion")
    assert localized["probability"] == round(effusion["probability"], 4)
    assert len(calls) == 1  # the classifier ran once for the study
    again = context.studies.ingest_file(data_dir / boxed_record.image)  # a new study id
    registry.run("classify_findings", {"study_id": again.id}, context)
    assert len(calls) == 2  # results are kept per study, never shared across studies


def test_tools_refuse_what_qc_refused(context: ToolContext) -> None:
    from tests.factories import png_bytes

    blank = context.studies.ingest(png_bytes(np.zeros((300, 300), np.float32)), "blank.png")
    result = build_registry(Settings()).run("classify_findings", {"study_id": blank.id}, context)
    assert not result.ok and result.error is not None
    assert result.error.code == "qc_refused" and "blank" in result.error.message


def test_evaluate_runs_on_a_20_image_subset(data_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "radpilot.app.cli", "models", "evaluate", "starter-classifier",
         "--data", str(data_dir), "--limit", "20", "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    evaluation = json.loads(result.stdout)
    assert evaluation["images"] == 20
    assert {m["finding"] for m in evaluation["findings"]} == set(NIH_FINDINGS)
    assert 0 <= evaluation["ece"] <= 1
    for loc in evaluation["localization"]:
        assert 0 <= loc["pointing_game"] <= 1 and 0 <= loc["t_iobb_0_1"] <= 1


def test_cli_saves_the_overlay(data_dir: Path, tmp_path: Path, boxed_record) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [sys.executable, "-m", "radpilot.app.cli", "tools", "run", "localize_finding",
         "--image", str(data_dir / boxed_record.image), "--args", '{"finding": "Effusion"}',
         "--save-artefacts", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [saved] = list((tmp_path / "out").glob("*.png"))
    assert Image.open(saved).format == "PNG"


@pytest.fixture
def detector():  # type: ignore[no-untyped-def]
    from radpilot.tools.models.detector import shipped_detector

    found = shipped_detector()
    if found is None:
        pytest.skip("this build ships no starter-detector bundle (radpilot models train detector)")
    return found


def test_localize_uses_the_detector_where_it_was_chosen_and_grad_cam_elsewhere(
    data_dir: Path, context: ToolContext, boxed_record, detector
) -> None:  # type: ignore[no-untyped-def]
    study = context.studies.ingest_file(data_dir / boxed_record.image)
    registry = build_registry(Settings())
    for finding in detector.localizes:
        result = registry.run(
            "localize_finding", {"study_id": study.id, "finding": finding}, context
        )
        assert result.ok and result.output is not None
        output = result.output
        if not detector.detect(context.studies.pixels(study.id), finding):
            continue  # nothing boxed: Grad-CAM answers instead (checked below)
        assert output["method"].startswith("FCOS box detector")
        assert "starter-detector" in [m["name"] for m in output["models"]]
        for region in output["regions"]:
            x, y, w, h = region["box"]
            assert -1 <= x < x + w <= study.width + 1 and -1 <= y < y + h <= study.height + 1
            assert 0 <= region["heat"] <= 1
    elsewhere = next(f for f in NIH_FINDINGS if f not in detector.localizes)
    result = registry.run("localize_finding", {"study_id": study.id, "finding": elsewhere}, context)
    assert result.output is not None and result.output["method"].startswith("Grad-CAM")
    assert result.output["regions"]


def test_evaluate_detector_puts_both_localizers_side_by_side(data_dir: Path, detector) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [sys.executable, "-m", "radpilot.app.cli", "models", "evaluate", "starter-detector",
         "--data", str(data_dir), "--limit", "20", "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    evaluation = json.loads(result.stdout)
    assert 0 < evaluation["images"] <= 20
    detected = {m["finding"]: m for m in evaluation["detector"]}
    assert detected.keys() == {m["finding"] for m in evaluation["grad_cam"]}
    for m in [*evaluation["detector"], *evaluation["grad_cam"]]:
        assert m["boxes"] > 0 and 0 <= m["t_iobb_0_1"] <= 1 and 0 <= m["pointing_game"] <= 1


def test_compare_classifiers_puts_alone_tta_and_ensemble_side_by_side(
    data_dir: Path, tmp_path: Path
) -> None:
    import shutil

    from radpilot.tools.models.store import bundled_dir

    for name in ("one", "same"):
        shutil.copytree(bundled_dir("starter-classifier"), tmp_path / name)
    result = subprocess.run(
        [sys.executable, "-m", "radpilot.app.cli", "models", "compare-classifiers",
         str(tmp_path / "one"), str(tmp_path / "same"), "--data", str(data_dir),
         "--limit", "80", "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {(r["name"], r["tta"]): r for r in json.loads(result.stdout)}
    ensemble = "ensemble: one + same"
    singles = {(n, t) for n in ("one", "same") for t in ("none", "2 views")}
    assert set(rows) == singles | {(ensemble, "none")}
    assert rows[(ensemble, "none")]["forward_passes"] == 2
    assert rows[("one", "2 views")]["forward_passes"] == 2
    alone = rows[("one", "none")]
    assert alone["val_mean_auroc"] is not None and 0.5 < alone["val_mean_auroc"] <= 1
    assert rows[(ensemble, "none")]["weights_mb"] == pytest.approx(2 * alone["weights_mb"], 0.02)
    # Two copies of one model: the ensemble reads what each copy reads.
    for figure in ("val_mean_auroc", "test_mean_auroc", "test_ece"):
        assert rows[(ensemble, "none")][figure] == pytest.approx(alone[figure])

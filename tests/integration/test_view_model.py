"""The shipped projection classifier (PA vs AP) on real radiographs: its accuracy on the NIH
test patients (never used in training or selection), and `image_info` estimating the view of
a PNG, which records none."""

from __future__ import annotations

from pathlib import Path

import pytest

from radpilot.assembly import build_registry
from radpilot.data.devdata import read_nih, records_in
from radpilot.settings import Settings
from radpilot.tools.base import ToolContext
from radpilot.tools.models.view_model import NAME, ViewClassifier

pytestmark = pytest.mark.integration


def test_the_shipped_view_model_is_accurate_on_test_patients(data_dir: Path) -> None:
    from radpilot.training.view_bundle import evaluate_view

    evaluation = evaluate_view(
        ViewClassifier(), data_dir, split="test", other_archives=False, progress=lambda _: None
    )
    test = evaluation.test
    assert test.images == len([r for r in records_in(read_nih(data_dir), "test")
                               if r.view in ("PA", "AP")])  # fmt: skip
    assert test.pa > 100 and test.ap > 100
    assert test.accuracy >= 0.90, test
    assert test.auroc is not None and test.auroc >= 0.95, test


def test_image_info_estimates_the_view_of_real_pngs(data_dir: Path, tmp_path: Path) -> None:
    context = ToolContext.create(Settings(), root=tmp_path)
    registry = build_registry(Settings())
    test = records_in(read_nih(data_dir), "test")
    chosen = [next(r for r in test if r.view == view) for view in ("PA", "AP")]
    for record in chosen:
        study = context.studies.ingest_file(data_dir / record.image)
        output = registry.run("image_info", {"study_id": study.id}, context).output
        assert output is not None and output["qc_ok"]
        assert (output["view"], output["view_source"]) == ("UNKNOWN", "model")
        estimate = output["view_estimate"]
        assert estimate["model"]["name"] == NAME
        assert estimate["view"] == record.view, (record.image, estimate)
        assert estimate["probability"] >= 0.5


def test_a_dicom_that_records_its_view_is_not_estimated(data_dir: Path, tmp_path: Path) -> None:
    context = ToolContext.create(Settings(), root=tmp_path)
    study = context.studies.ingest_file(data_dir / "dicom" / "siim_chest_pa.dcm")
    output = build_registry(Settings()).run("image_info", {"study_id": study.id}, context).output
    assert output is not None
    assert (output["view"], output["view_source"], output["view_estimate"]) == ("PA", "dicom", None)

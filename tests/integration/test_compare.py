"""compare_studies on real same-patient pairs, synthetic moves, and pairs it must refuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radpilot.assembly import build_registry
from radpilot.core.contracts import Artefact
from radpilot.data.devdata import split_of
from radpilot.settings import Settings
from radpilot.tools.base import ToolContext
from radpilot.tools.registration import register
from tests.factories import chest_like, make_dicom, png_bytes

pytestmark = pytest.mark.integration


@pytest.fixture
def context(tmp_path: Path) -> ToolContext:
    return ToolContext.create(Settings(), root=tmp_path)


def grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255


def test_registration_recovers_a_known_move(data_dir: Path) -> None:
    image = grey(data_dir / "nih" / "images" / "00000211_010.png")  # 512 x 512
    moved = Image.fromarray((image * 255).astype(np.uint8)).rotate(
        4, translate=(10, -6), resample=Image.Resampling.BILINEAR
    )
    result = register(np.asarray(moved, dtype=np.float32) / 255, image)
    dx, dy = result.shift_pixels(512)
    # Tolerance: 1 degree, 3 pixels, 2% scale.
    assert abs(result.rotation_deg + 4) < 1 and abs(result.scale - 1) < 0.02
    assert abs(dx - 10) < 3 and abs(dy + 6) < 3
    assert result.score > 0.95 > result.score_before


def test_a_study_against_itself_is_unchanged_everywhere(
    data_dir: Path, context: ToolContext
) -> None:
    study = context.studies.ingest_file(data_dir / "nih" / "images" / "00000211_010.png")
    result = build_registry(Settings()).run(
        "compare_studies", {"study_id": study.id, "prior_id": study.id}, context
    )
    assert result.ok and result.output is not None, result.error
    assert {f["verdict"] for f in result.output["findings"]} == {"unchanged"}
    sized = [f for f in result.output["findings"] if f["region_px"] is not None]
    assert all(f["region_px"] == f["prior_region_px"] > 0 for f in sized)
    assert result.output["registration"]["score"] > 0.99


def test_a_real_pair_gives_verdicts_measurements_and_a_side_by_side(
    data_dir: Path, context: ToolContext
) -> None:
    pairs = [json.loads(line) for line in (data_dir / "pairs.jsonl").open()]
    pair = next(p for p in pairs if p["patient_id"].startswith("nih-")
                and split_of(p["patient_id"]) == "test")  # fmt: skip
    prior = context.studies.ingest_file(data_dir / pair["prior"])
    current = context.studies.ingest_file(data_dir / pair["current"])
    result = build_registry(Settings()).run(
        "compare_studies", {"study_id": current.id, "prior_id": prior.id}, context
    )
    assert result.ok and result.output is not None, result.error
    output = result.output
    assert result.evidence_kind == "comparison"
    assert len(output["findings"]) == 14
    for row in output["findings"]:
        assert row["margin"] >= 0.02
        assert row["verdict"] in {"new", "resolved", "worsened", "improved", "unchanged",
                                  "uncertain"}  # fmt: skip
    assert output["measurements"] is not None and 0.2 < output["measurements"]["ctr"] < 0.9
    picture = context.artefacts.path(Artefact.model_validate(output["artefacts"][0]))
    width, height = Image.open(picture).size
    assert width == 3 * height  # registered prior | current | difference


def test_different_views_are_refused_with_the_reason(context: ToolContext) -> None:
    pa = context.studies.ingest(make_dicom(pixels=chest_like(256, 256), view="PA"), "a.dcm")
    ap = context.studies.ingest(make_dicom(pixels=chest_like(256, 256), view="AP"), "b.dcm")
    result = build_registry(Settings()).run(
        "compare_studies", {"study_id": pa.id, "prior_id": ap.id}, context
    )
    assert not result.ok and result.error is not None
    assert "different views (AP prior, PA current)" in result.error.message


def test_lateral_against_frontal_is_refused(context: ToolContext) -> None:
    frontal = context.studies.ingest(make_dicom(pixels=chest_like(256, 256), view="PA"), "a.dcm")
    lateral = context.studies.ingest(make_dicom(pixels=chest_like(256, 256), view="LL"), "b.dcm")
    result = build_registry(Settings()).run(
        "compare_studies", {"study_id": frontal.id, "prior_id": lateral.id}, context
    )
    assert not result.ok and result.error is not None
    assert "LATERAL" in result.error.message or "lateral" in result.error.message


def test_an_unregistrable_pair_is_refused(data_dir: Path, context: ToolContext) -> None:
    image = grey(data_dir / "nih" / "images" / "00000211_010.png")
    turned = np.ascontiguousarray(np.rot90(image))  # lying on its side
    current = context.studies.ingest(png_bytes(image), "current.png")
    prior = context.studies.ingest(png_bytes(turned), "prior.png")
    result = build_registry(Settings()).run(
        "compare_studies", {"study_id": current.id, "prior_id": prior.id}, context
    )
    assert not result.ok and result.error is not None
    assert result.error.code == "registration_failed" and "do not compare" in result.error.message


def test_evaluate_temporal_prints_verdict_scores_next_to_the_baseline(data_dir: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "radpilot.app.cli", "models", "evaluate", "temporal",
         "--data", str(data_dir), "--limit", "3"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout)
    assert result["pairs"] == 3 and 0 <= result["registration_success_rate"] <= 1
    assert set(result["radpilot"]["f1"]) == {"new", "resolved", "unchanged"}
    assert "macro_f1" in result["baseline"] and "noisy proxy" in result["proxy_note"]

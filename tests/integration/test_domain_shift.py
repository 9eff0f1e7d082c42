"""The domain-shift guard on real development images: NIH test films pass, the same films
shifted are flagged with a reason, the evaluation command reports every shift and archive."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radpilot.assembly import build_registry
from radpilot.data.devdata import read_nih, records_in
from radpilot.settings import Settings
from radpilot.tools.base import ToolContext
from radpilot.tools.imaging import read_pixels
from radpilot.tools.models.domain_guard import DomainCheck
from radpilot.training.shifts import SHIFTS, apply_shift

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def test_images(data_dir: Path) -> list[Path]:
    """The first 20 NIH images of the test patients (never in the guard's reference)."""
    return [data_dir / r.image for r in records_in(read_nih(data_dir), "test")[:20]]


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    from radpilot.tools.models.findings import StarterFindingsModel

    found = StarterFindingsModel(batch_wait_s=0)
    assert found.domain_reference is not None, "the starter ships its domain-shift reference"
    return found


def checks(model, images: list[np.ndarray]) -> list[DomainCheck]:  # type: ignore[no-untyped-def]
    reference = model.domain_reference
    readings = model.read(images)
    return [reference.check(p, r.embedding, model.identity)
            for p, r in zip(images, readings, strict=True)]


def test_test_films_pass_and_inverted_ones_are_flagged_with_the_reason(
    model, test_images: list[Path]
) -> None:  # type: ignore[no-untyped-def]
    films = [read_pixels(p) for p in test_images]
    plain = checks(model, films)
    assert sum(c.out_of_distribution for c in plain) <= 2  # ~2.5 % expected; 2 of 20 allowed
    assert all(not c.reasons for c in plain if not c.out_of_distribution)
    inverted = checks(model, [apply_shift("inverted polarity", p, seed=0) for p in films])
    assert sum(c.out_of_distribution for c in inverted) >= 18
    assert np.mean([c.score for c in inverted]) > 2 * np.mean([c.score for c in plain])
    named = [c for c in inverted if any("inverted polarity?" in r for r in c.reasons)]
    assert len(named) >= 10  # the reason says why, for most


def test_classify_findings_reports_the_domain_of_an_uploaded_film(
    tmp_path: Path, test_images: list[Path]
) -> None:
    context = ToolContext.create(Settings(), root=tmp_path)
    registry = build_registry(Settings())
    film = read_pixels(test_images[0])
    shifted = apply_shift("photo of a screen", film, seed=1)
    buffer = io.BytesIO()
    Image.fromarray(np.round(shifted * 255).astype(np.uint8)).save(buffer, format="PNG")
    domains = []
    for data, name in ((test_images[0].read_bytes(), "film.png"), (buffer.getvalue(), "photo.png")):
        study = context.studies.ingest(data, name)
        output = registry.run("classify_findings", {"study_id": study.id}, context).output
        assert output is not None
        domains.append(DomainCheck.model_validate(output["domain"]))
    film_check, photo_check = domains
    assert photo_check.out_of_distribution and photo_check.reasons
    assert photo_check.score > film_check.score


def test_the_evaluation_command_reports_every_shift_and_archive(data_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "radpilot.app.cli", "models", "evaluate", "domain-shift",
         "--data", str(data_dir), "--limit", "6", "--json"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    evaluation = json.loads(result.stdout)
    assert evaluation["nih_test_images"] == 6
    rows = {r["name"]: r for r in evaluation["rows"]}
    assert set(SHIFTS) <= set(rows)
    assert {"COVID-19 collection", "JSRT", "Wingspan"} <= set(rows)
    assert all(0 <= r["auroc"] <= 1 and 0 <= r["flagged"] <= 1 for r in rows.values())
    assert rows["inverted polarity"]["auroc"] >= 0.9
    assert 0 <= evaluation["false_alarms"] <= 1

"""The projection classifier's runtime wrapper (no data): input checks, input shape, the
estimate it reports, loading a bundle, and how `image_info` uses it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from radpilot.assembly import build_registry
from radpilot.core.contracts import ModelCard, ModelIdentity
from radpilot.core.errors import RadpilotError
from radpilot.settings import Settings
from radpilot.tools.base import ToolContext
from radpilot.tools.models.catalog import CATALOG
from radpilot.tools.models.store import ModelStore, WeightsMissingError
from radpilot.tools.models.view_model import (
    NAME,
    ViewClassifier,
    ViewNetConfig,
    build_view_net,
    check_view_pixels,
    estimate_from,
    view_input,
    view_model_is_shipped,
)
from tests.bundles import shipped_bundle
from tests.factories import chest_like, make_dicom, png_bytes

IDENTITY = ModelIdentity(name=NAME, version="test", sha256="0" * 64)


@pytest.mark.parametrize(
    ("pixels", "words"),
    [
        (np.zeros((2, 64, 64), dtype=np.float32), "2-D grey image"),
        (np.zeros(4096, dtype=np.float32), "2-D grey image"),
        (np.zeros((20, 300), dtype=np.float32), "at least 32 px"),
        (np.full((64, 64), np.nan, dtype=np.float32), "NaN or infinite"),
        (np.full((64, 64), 255.0, dtype=np.float32), "pixels in [0, 1]"),
        (np.full((64, 64), -0.5, dtype=np.float32), "pixels in [0, 1]"),
    ],
)
def test_inputs_the_model_was_not_trained_on_are_refused(pixels: np.ndarray, words: str) -> None:
    with pytest.raises(RadpilotError, match=words.replace("[", r"\[").replace("]", r"\]")):
        check_view_pixels(pixels)


def test_a_list_is_not_an_image() -> None:
    with pytest.raises(RadpilotError, match="2-D grey image"):
        check_view_pixels([[0.5] * 64] * 64)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(300, 200), (200, 300), (512, 512), (1024, 40)])
def test_the_input_is_the_whole_image_letterboxed_on_black(shape: tuple[int, int]) -> None:
    pixels = np.full(shape, 0.75, dtype=np.float32)
    prepared = view_input(pixels, 128)
    assert prepared.shape == (1, 128, 128) and prepared.dtype == np.float32
    assert prepared.min() >= -1.0 and prepared.max() <= 1.0
    assert np.isclose(prepared[0, 64, 64], 0.5)  # 0.75 in [0, 1] is 0.5 in [-1, 1]
    if shape[0] != shape[1]:  # padded with black (-1) along the shorter side, never cropped
        assert np.isclose(prepared.min(), -1.0)
        image_part = (prepared[0] > -0.99).sum()
        assert image_part == pytest.approx(128 * 128 * min(shape) / max(shape), rel=0.1)


@pytest.mark.parametrize(
    ("probability_ap", "view", "probability"),
    [(0.93, "AP", 0.93), (0.2, "PA", 0.8), (0.5, "AP", 0.5), (0.0, "PA", 1.0), (1.2, "AP", 1.0)],
)
def test_the_estimate_names_the_more_probable_view_and_its_probability(
    probability_ap: float, view: str, probability: float
) -> None:
    estimate = estimate_from(probability_ap, IDENTITY)
    assert (estimate.view, estimate.probability) == (view, pytest.approx(probability))
    assert estimate.probability_ap == pytest.approx(min(probability_ap, 1.0))
    assert estimate.model == IDENTITY


def test_the_network_gives_one_logit_per_image() -> None:
    import torch

    net = build_view_net(ViewNetConfig(width=4)).eval()
    with torch.no_grad():
        logits = net(torch.zeros(3, 1, 64, 64))
    assert tuple(logits.shape) == (3,)


def _bundle(folder: Path, size: int = 64, temperature: float = 2.0) -> Path:
    from safetensors.torch import save_file

    config = ViewNetConfig(width=4)
    state = {k: v.contiguous() for k, v in build_view_net(config).state_dict().items()}
    folder.mkdir(parents=True)
    save_file(state, str(folder / "model.safetensors"))
    card = ModelCard(name=NAME, version="test", architecture="small CNN", source="test",
                     licence="test", intended_use="test")  # fmt: skip
    metadata = {"name": NAME, "version": "test", "sha256": "0" * 64,
                "input": {"size": size, "scale": 1.0, "channels": 1},
                "network": config.model_dump(mode="json"), "temperature": temperature,
                "card": card.model_dump(mode="json")}  # fmt: skip
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def test_a_bundle_loads_and_estimates_images_of_any_shape(tmp_path: Path) -> None:
    classifier = ViewClassifier(_bundle(tmp_path / "bundle"))
    assert (classifier.size, classifier.temperature) == (64, 2.0)
    images = [chest_like(300, 200), chest_like(128, 512, seed=1), chest_like(64, 64, seed=2)]
    probabilities = classifier.probabilities_ap(images)
    assert probabilities.shape == (3,) and ((probabilities >= 0) & (probabilities <= 1)).all()
    assert classifier.probabilities_ap([]).shape == (0,)
    estimate = classifier.estimate(images[0])
    assert estimate.model.name == NAME and 0.5 <= estimate.probability <= 1
    with pytest.raises(RadpilotError, match="2-D grey image"):
        classifier.estimate(np.zeros((3, 64, 64), dtype=np.float32))


def test_a_missing_bundle_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError, match="radpilot models train view"):
        ViewClassifier(tmp_path / "nowhere")


def test_the_catalog_knows_the_view_model() -> None:
    weights = CATALOG[NAME]
    assert weights.bundled and weights.family == "starter-view"
    assert weights.labels == ["PA", "AP"]


def test_models_list_verify_knows_the_view_model(tmp_path: Path) -> None:
    statuses = {s.name: s for s in ModelStore(tmp_path).statuses(verify=True)}
    assert statuses[NAME].state == "verified", statuses[NAME]


def test_the_shipped_view_model_is_verified_and_its_card_reports_test_patients() -> None:
    path, card = shipped_bundle(NAME)
    assert path.stat().st_size < 1_000_000
    assert "NIH" in (card.training_data or "") and "training patients" in (card.training_data or "")
    assert "NIH" in card.licence
    assert card.metrics["test_accuracy"] >= 0.90 and card.metrics["test_images"] > 0
    assert any("lateral" in item for item in card.limitations)
    assert any("one archive" in item for item in card.limitations)
    readme = (path.parent / "README.md").read_text()
    assert "radpilot models evaluate starter-view" in readme


@pytest.fixture
def context(tmp_path: Path) -> ToolContext:
    return ToolContext.create(Settings(), root=tmp_path)


def test_image_info_estimates_the_view_of_a_png(context: ToolContext) -> None:
    assert view_model_is_shipped()
    study = context.studies.ingest(png_bytes(chest_like(300, 400)), "x.png")
    registry = build_registry(Settings())
    output = registry.run("image_info", {"study_id": study.id}, context).output
    assert output is not None
    assert output["view"] == "UNKNOWN"  # what the file says stays as it is
    assert output["view_source"] == "model"
    estimate = output["view_estimate"]
    assert estimate["view"] in ("PA", "AP") and 0.5 <= estimate["probability"] <= 1
    assert estimate["model"]["name"] == NAME
    assert [m["name"] for m in output["models"]] == [NAME]
    assert any(f"estimated {estimate['view']}" in item for item in output["limitations"])
    assert NAME in [card.name for card in registry.spec("image_info").model_cards]
    again = registry.run("image_info", {"study_id": study.id}, context).output
    assert again is not None and again["view_estimate"] == estimate  # cached per study


def test_image_info_keeps_the_dicom_view_and_estimates_only_without_one(
    context: ToolContext,
) -> None:
    registry = build_registry(Settings())
    recorded = context.studies.ingest(make_dicom(view="AP"), "x.dcm")
    output = registry.run("image_info", {"study_id": recorded.id}, context).output
    assert output is not None
    assert (output["view"], output["view_source"], output["view_estimate"]) == ("AP", "dicom", None)
    assert output["models"] == []
    unrecorded = context.studies.ingest(make_dicom(view=""), "y.dcm")
    output = registry.run("image_info", {"study_id": unrecorded.id}, context).output
    assert output is not None
    assert (output["view"], output["view_source"]) == ("UNKNOWN", "model")
    assert output["view_estimate"]["view"] in ("PA", "AP")


def test_image_info_estimates_nothing_for_a_refused_image(context: ToolContext) -> None:
    blank = context.studies.ingest(png_bytes(np.full((300, 300), 0.5, dtype=np.float32)), "b.png")
    output = build_registry(Settings()).run("image_info", {"study_id": blank.id}, context).output
    assert output is not None and output["qc_ok"] is False
    assert (output["view_source"], output["view_estimate"]) == ("none", None)

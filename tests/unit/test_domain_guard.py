"""The domain-shift guard without data: the shipped reference, its scoring and reasons, the
loader's refusals, the fitting arithmetic and the tools' `domain` field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from radpilot.core.contracts import ModelIdentity
from radpilot.tools.models.domain_guard import (
    FEATURES_REASON,
    GUARD_FILE,
    IMAGE_REASON,
    STATISTIC_NAMES,
    DomainCheck,
    DomainReference,
    image_statistics,
    load_domain_reference,
)
from radpilot.tools.models.store import bundled_dir
from radpilot.training.domain_guard import Observations, fit_reference, ledoit_wolf
from radpilot.training.shifts import black_borders, invert

BUNDLE = bundled_dir("starter-classifier")


def shipped_sha256() -> str:
    sha256: str = json.loads((BUNDLE / "metadata.json").read_text())["sha256"]
    return sha256


@pytest.fixture(scope="module")
def reference() -> DomainReference:
    loaded = load_domain_reference(BUNDLE, shipped_sha256())
    assert loaded is not None, "the starter classifier ships its domain-shift reference"
    return loaded


def radiograph_like(side: int = 512, seed: int = 0) -> np.ndarray:
    """A synthetic frontal film whose image statistics fall inside the training radiographs'
    (dark air around the body, darker lungs with ribs either side of a brighter mediastinum,
    a little blurred noise): the plausible baseline that shifts move away from."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    body = (((x - 0.5) / 0.47) ** 2 + ((y - 0.62) / 0.62) ** 2) < 1
    image = np.where(body, 0.72 + 0.12 * y, 0.03)
    for centre in (0.3, 0.7):
        lung = (((x - centre) / 0.15) ** 2 + ((y - 0.47) / 0.3) ** 2) < 1
        ribs = 0.06 * np.sin(2 * np.pi * (y * 9 + 18 * (x - centre) ** 2))
        image = np.where(lung, 0.28 + 0.25 * (y - 0.2) + ribs, image)
    image = ndimage.gaussian_filter(image, 6)
    image += 0.1 * np.exp(-(((x - 0.5) / 0.05) ** 2)) * body
    image = ndimage.gaussian_filter(image + rng.normal(0, 0.03, image.shape), 0.8)
    return np.clip(image * 0.9, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def chest() -> np.ndarray:
    return radiograph_like()


def test_the_plausible_synthetic_film_is_inside_the_image_reference(
    reference: DomainReference, chest: np.ndarray
) -> None:
    assert reference.image_distances(image_statistics(chest))[0] < reference.statistics_scale
    assert reference.cues(image_statistics(chest)) == []


def test_the_shipped_reference_is_small_and_belongs_to_the_shipped_weights(
    reference: DomainReference,
) -> None:
    assert (BUNDLE / GUARD_FILE).stat().st_size < 2 * 1024 * 1024
    assert reference.model_sha256 == shipped_sha256()
    assert reference.threshold > 0 and reference.statistics_scale > 0
    assert reference.statistics_reference.shape[1] == len(STATISTIC_NAMES)
    metadata = json.loads((BUNDLE / "metadata.json").read_text())
    assert metadata["domain_guard"]["threshold"] == pytest.approx(reference.threshold, abs=1e-4)


@pytest.mark.parametrize("shift", [invert, black_borders])
def test_an_inverted_or_framed_film_is_further_than_a_plausible_one(
    shift, reference: DomainReference, chest: np.ndarray  # type: ignore[no-untyped-def]
) -> None:
    plausible = reference.image_distances(image_statistics(chest))[0]
    shifted = shift(chest, np.random.default_rng(0))
    assert reference.image_distances(image_statistics(shifted))[0] > 1.5 * plausible
    assert reference.image_distances(image_statistics(shifted))[0] > reference.statistics_scale


def test_the_check_reuses_the_classifiers_reading_and_says_why(
    reference: DomainReference, chest: np.ndarray
) -> None:
    from radpilot.tools.models.findings import StarterFindingsModel

    model = StarterFindingsModel(batch_wait_s=0)
    assert model.domain_reference is not None
    inverted = invert(chest, np.random.default_rng(0))
    readings = model.read([chest, inverted])
    assert np.allclose(readings[0].probabilities, model.predict([chest])[0], atol=1e-5)
    assert readings[0].embedding is not None
    assert np.allclose(readings[0].embedding, model.embed([chest])[0], atol=1e-5)  # embed's path
    plain = reference.check(chest, readings[0].embedding, model.identity)
    flagged = reference.check(inverted, readings[1].embedding, model.identity)  # type: ignore[arg-type]
    assert flagged.score > plain.score
    assert flagged.out_of_distribution and flagged.score > flagged.threshold
    assert flagged.reasons and flagged.reasons[0].startswith(IMAGE_REASON)
    assert "inverted polarity?" in flagged.reasons[0]
    assert flagged.threshold == pytest.approx(reference.threshold, abs=1e-3)


def test_reasons_name_the_features_and_the_likeliest_cause(reference: DomainReference) -> None:
    statistics = reference.statistics_median.copy()
    polarity = STATISTIC_NAMES.index("polarity")
    statistics[polarity] -= 10 * reference.statistics_spread[polarity]
    assert reference.reasons(statistics, image=2.0, features=3.0) == [
        f"{IMAGE_REASON} (inverted polarity?)",
        FEATURES_REASON,
    ]
    assert reference.reasons(reference.statistics_median, image=0.5, features=3.0) == [
        FEATURES_REASON
    ]
    assert reference.reasons(reference.statistics_median, image=2.0, features=0.5) == [
        IMAGE_REASON  # nothing stands out alone: no guessed cause
    ]


def test_a_domain_check_validates() -> None:
    model = ModelIdentity(name="starter-classifier", version="0.1.0", sha256=shipped_sha256())
    check = DomainCheck(score=1.8, threshold=1.1, out_of_distribution=True,
                        reasons=[FEATURES_REASON], image_score=0.7, feature_score=2.1,
                        model=model)  # fmt: skip
    assert DomainCheck.model_validate_json(check.model_dump_json()) == check
    with pytest.raises(ValidationError):
        DomainCheck(score=-1, threshold=1, out_of_distribution=False, image_score=0,
                    feature_score=0, model=model)  # fmt: skip
    with pytest.raises(ValidationError):
        DomainCheck.model_validate({"score": 1.0, "threshold": 1.0})


def test_the_loader_refuses_a_reference_of_other_weights_or_none(
    tmp_path: Path, reference: DomainReference
) -> None:
    assert load_domain_reference(tmp_path, shipped_sha256()) is None  # no file
    reference.save(tmp_path / GUARD_FILE)
    assert load_domain_reference(tmp_path, "0" * 64) is None  # derived for other weights
    again = load_domain_reference(tmp_path, shipped_sha256())
    assert again is not None and again.threshold == reference.threshold
    assert np.allclose(again.statistics_whitening, reference.statistics_whitening)
    (tmp_path / GUARD_FILE).write_bytes(b"not a reference")
    assert load_domain_reference(tmp_path, shipped_sha256()) is None


def test_ledoit_wolf_shrinks_only_when_the_sample_cannot_be_trusted() -> None:
    rng = np.random.default_rng(0)
    plenty = rng.normal(size=(5000, 4)) * [1, 2, 3, 4]
    assert np.allclose(ledoit_wolf(plenty), np.cov(plenty.T, bias=True), atol=0.1)
    few = rng.normal(size=(10, 30))  # fewer samples than dimensions: singular sample covariance
    assert np.linalg.matrix_rank(ledoit_wolf(few)) == 30


def test_the_threshold_flags_about_the_chosen_share_of_validation_images() -> None:
    rng = np.random.default_rng(1)

    def observations(n: int) -> Observations:
        embeddings = rng.normal(size=(n, 64))
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        return Observations(rng.normal(size=(n, len(STATISTIC_NAMES))), embeddings)

    validation = observations(400)
    fitted = fit_reference("f" * 64, observations(800), validation)
    scores, image, features = fitted.scores(validation.statistics, validation.embeddings)
    assert np.mean(scores > fitted.threshold) == pytest.approx(0.025, abs=0.01)
    assert np.quantile(image, 0.975) == pytest.approx(1.0, abs=0.01)
    assert np.quantile(features, 0.975) == pytest.approx(1.0, abs=0.01)


def test_classify_and_image_info_carry_the_domain_check(tmp_path: Path) -> None:
    from radpilot.assembly import build_registry
    from radpilot.settings import Settings
    from radpilot.tools.base import ToolContext
    from tests.factories import png_bytes

    context = ToolContext.create(Settings(), root=tmp_path)
    registry = build_registry(Settings())
    study = context.studies.ingest(png_bytes(radiograph_like(seed=2)), "x.png")
    classified = registry.run("classify_findings", {"study_id": study.id}, context).output
    described = registry.run("image_info", {"study_id": study.id}, context).output
    assert classified is not None and described is not None
    domain = DomainCheck.model_validate(classified["domain"])
    assert DomainCheck.model_validate(described["domain"]) == domain  # one reading, shared
    assert domain.out_of_distribution == (domain.score > domain.threshold)


def test_the_domain_field_is_documented_in_both_output_schemas() -> None:
    from radpilot.tools.classify import ClassifyOutput
    from radpilot.tools.image_info import ImageInfoOutput

    for output in (ClassifyOutput, ImageInfoOutput):
        field = output.model_json_schema()["properties"]["domain"]
        assert "out_of_distribution" in field["description"]

"""The domain-shift guard's reference, derived from the development data and stored with the
classifier (`radpilot models domain-guard --data DIR [--bundle DIR] --write`).

The training patients' NIH images give the reference: their image statistics (whitened by a
Ledoit-Wolf shrunk covariance, kept whole for the nearest-neighbour distance) and the first
principal axes of their embeddings (probabilistic PCA). The validation patients, never in the
reference, give each distance's scale (its 97.5th percentile) and then the threshold (the
97.5th percentile of their combined scores), so about 2.5 % of in-distribution films are
flagged; the test patients measure that false-alarm rate. How the score is made is
`radpilot.tools.models.domain_guard`; how well it separates shifted images is
`radpilot models evaluate domain-shift` (`radpilot.training.evaluate_domain`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from radpilot.core.contracts import ModelIdentity
from radpilot.data.devdata import NihRecord, read_nih, records_in
from radpilot.tools.imaging import read_pixels
from radpilot.tools.models.domain_guard import (
    GUARD_FILE,
    GUARD_VERSION,
    NEIGHBOURS,
    DomainReference,
    image_statistics,
)
from radpilot.tools.models.findings import FindingsModel

QUANTILE = 0.975  # of the validation scores: each distance's scale, then the threshold
FEATURE_AXES = 32  # principal axes of the embeddings kept (the rest is one residual term)
BATCH = 16

# Card metrics and limitations written by this command start with these (replaced each time).
METRICS_PREFIX = "domain_guard."
LIMITATION_PREFIX = "Domain-shift guard"


@dataclass(frozen=True)
class Observations:
    """What the guard looks at for a set of images: their image statistics and embeddings."""

    statistics: np.ndarray  # (N, statistics)
    embeddings: np.ndarray  # (N, embedding size), unit length

    def __len__(self) -> int:
        return int(self.statistics.shape[0])


def observe(model: FindingsModel, images: Iterable[np.ndarray]) -> Observations:
    """Statistics and embeddings of `images` through the model's own reading path (the
    forward pass that gives users their probabilities), a batch at a time."""
    statistics: list[np.ndarray] = []
    embeddings: list[np.ndarray] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        for reading in model.read(batch):
            if reading.embedding is None:
                raise ValueError(f"{model.identity.name} does not expose its features")
            embeddings.append(reading.embedding)
        statistics.extend(image_statistics(p) for p in batch)
        batch.clear()

    for pixels in images:
        batch.append(pixels)
        if len(batch) == BATCH:
            flush()
    if batch:
        flush()
    return Observations(np.array(statistics), np.array(embeddings))


def observe_records(model: FindingsModel, records: list[Any], data_dir: Path) -> Observations:
    """`observe` on development records (anything with an `image` path under `data_dir`)."""
    return observe(model, (read_pixels(data_dir / r.image) for r in records))


def ledoit_wolf(values: np.ndarray) -> np.ndarray:
    """The Ledoit-Wolf (2004) shrunk covariance of the rows of `values`: the sample covariance
    pulled towards a scaled identity by the amount that minimises the expected error."""
    n, p = values.shape
    centred = values - values.mean(axis=0)
    sample = centred.T @ centred / n
    mu = np.trace(sample) / p
    target = mu * np.eye(p)
    delta = ((sample - target) ** 2).sum() / p
    squares = centred**2
    beta = ((squares.T @ squares).sum() / n - (sample**2).sum()) / p / n
    shrinkage = min(beta, delta) / delta if delta > 0 else 1.0
    return np.asarray((1 - shrinkage) * sample + shrinkage * target)


def robust_spread(values: np.ndarray) -> np.ndarray:
    """Per column: 1.4826 x the median absolute deviation (the standard deviation for normal
    data), floored at a quarter of the standard deviation for statistics that are constant on
    most films (a black share of 0)."""
    deviation = np.median(np.abs(values - np.median(values, axis=0)), axis=0) * 1.4826
    return np.maximum(deviation, np.maximum(values.std(axis=0) / 4, 1e-6))


def fit_reference(
    model_sha256: str, train: Observations, validation: Observations, *, quantile: float = QUANTILE
) -> DomainReference:
    """The reference from the training images; scales and threshold from the validation
    images (see the module docstring)."""
    stats = train.statistics
    stats_mean = stats.mean(axis=0)
    whitening = np.linalg.cholesky(np.linalg.inv(ledoit_wolf(stats)))
    embeddings = train.embeddings.astype(np.float64)
    feature_mean = embeddings.mean(axis=0)
    _, singular, axes = np.linalg.svd(embeddings - feature_mean, full_matrices=False)
    variances = singular**2 / len(train)
    dimensions = embeddings.shape[1]
    reference = DomainReference(
        model_sha256=model_sha256,
        threshold=0.0,  # set below, from the validation scores
        statistics_mean=stats_mean,
        statistics_whitening=whitening,
        statistics_reference=(stats - stats_mean) @ whitening,
        statistics_median=np.median(stats, axis=0),
        statistics_spread=robust_spread(stats),
        statistics_scale=1.0,
        feature_mean=feature_mean,
        feature_axes=axes[:FEATURE_AXES],
        feature_variances=variances[:FEATURE_AXES],
        residual_variance=float(variances[FEATURE_AXES:].sum() / (dimensions - FEATURE_AXES)),
        feature_scale=1.0,
    )
    # Round-trip through the stored precision first, so that the scales and the threshold are
    # those of the reference users load.
    reference = _as_stored(reference)
    reference.statistics_scale = float(
        np.quantile(reference.image_distances(validation.statistics), quantile)
    )
    reference.feature_scale = float(
        np.quantile(reference.feature_distances(validation.embeddings), quantile)
    )
    scores, _, _ = reference.scores(validation.statistics, validation.embeddings)
    reference.threshold = float(np.quantile(scores, quantile))
    return reference


def _as_stored(reference: DomainReference) -> DomainReference:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / GUARD_FILE
        reference.save(path)
        return DomainReference.load(path)


class GuardReport(BaseModel):
    """How the reference was derived and how often it flags in-distribution films."""

    model: ModelIdentity
    version: str
    quantile: float
    neighbours: int
    feature_axes: int
    train_images: int
    train_patients: int
    validation_images: int
    validation_patients: int
    test_images: int
    test_patients: int
    threshold: float
    validation_false_alarms: float  # share of validation images above the threshold
    test_false_alarms: float  # the same on the test patients (never used to choose)
    file_bytes: int = 0


def _patients(records: list[NihRecord]) -> int:
    return len({r.patient_id for r in records})


def derive_domain_guard(
    model: FindingsModel, data_dir: Path, *, progress: Callable[[str], None] = lambda _: None
) -> tuple[DomainReference, GuardReport]:
    """Fit the reference on the training patients, scale and threshold it on the validation
    patients, and measure its false alarms on the test patients."""
    records = read_nih(data_dir)
    train, validation, test = (records_in(records, s) for s in ("train", "val", "test"))
    seen = {}
    for name, split in (("training", train), ("validation", validation), ("test", test)):
        progress(f"reading {len(split)} {name} images")
        seen[name] = observe_records(model, split, data_dir)
    sha256 = model.identity.sha256 or ""
    reference = fit_reference(sha256, seen["training"], seen["validation"])

    def flagged(observations: Observations) -> float:
        scores, _, _ = reference.scores(observations.statistics, observations.embeddings)
        return round(float((scores > reference.threshold).mean()), 4)

    report = GuardReport(
        model=model.identity,
        version=GUARD_VERSION,
        quantile=QUANTILE,
        neighbours=NEIGHBOURS,
        feature_axes=FEATURE_AXES,
        train_images=len(train),
        train_patients=_patients(train),
        validation_images=len(validation),
        validation_patients=_patients(validation),
        test_images=len(test),
        test_patients=_patients(test),
        threshold=round(reference.threshold, 4),
        validation_false_alarms=flagged(seen["validation"]),
        test_false_alarms=flagged(seen["test"]),
    )
    reference.summary = report.model_dump(mode="json", exclude={"file_bytes"})
    return reference, report


def store_domain_guard(folder: Path, reference: DomainReference, report: GuardReport) -> None:
    """Write the reference beside the weights and the report into the bundle's metadata.json
    (`domain_guard`, the card's metrics and limitations; `sha256` untouched)."""
    path = folder / GUARD_FILE
    reference.save(path)
    path.chmod(0o644)  # safetensors writes owner-only; the bundle is read by every user
    report.file_bytes = path.stat().st_size
    metadata_path = folder / "metadata.json"
    metadata: dict[str, Any] = json.loads(metadata_path.read_text())
    sha256 = metadata.get("sha256")
    metadata["domain_guard"] = report.model_dump(mode="json")
    card = metadata["card"]
    card["limitations"] = [
        *[item for item in card["limitations"] if not item.startswith(LIMITATION_PREFIX)],
        card_limitation(report),
    ]
    card["metrics"] = {
        **{k: v for k, v in card.get("metrics", {}).items() if not k.startswith(METRICS_PREFIX)},
        f"{METRICS_PREFIX}threshold": report.threshold,
        f"{METRICS_PREFIX}test_false_alarms": report.test_false_alarms,
    }
    assert metadata.get("sha256") == sha256  # the weights' hash: never changed here
    metadata_path.write_text(json.dumps(metadata, indent=2) + "\n")


def card_limitation(report: GuardReport) -> str:
    return (
        f"{LIMITATION_PREFIX}: every study is scored against the training radiographs (image "
        f"statistics and the model's features); above the threshold ({report.threshold:.3f}, "
        f"the {report.quantile:.1%} point of {report.validation_images} validation images) it "
        f"is flagged out of distribution ({report.test_false_alarms:.1%} of the "
        f"{report.test_images} NIH test images are). The guard knows only what differs from "
        "NIH films; a film that looks like them can still be read wrongly."
    )


def text_lines(report: GuardReport) -> list[str]:
    """The command's plain-text output."""
    return [
        f"domain-shift guard v{report.version} for {report.model.name} {report.model.version}",
        f"reference: {report.train_images} training images ({report.train_patients} patients); "
        f"{report.neighbours} nearest neighbours on image statistics, {report.feature_axes} "
        "principal axes of the embeddings",
        f"threshold {report.threshold:.3f}: the {report.quantile:.1%} point of "
        f"{report.validation_images} validation images ({report.validation_patients} patients)",
        f"false alarms: validation {report.validation_false_alarms:.1%}, test "
        f"{report.test_false_alarms:.1%} of {report.test_images} images "
        f"({report.test_patients} patients, never used to choose)",
        *([f"reference file: {report.file_bytes / 1024:.0f} kB"] if report.file_bytes else []),
    ]

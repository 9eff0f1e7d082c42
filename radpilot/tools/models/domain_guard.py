"""The domain-shift guard: how far a study lies from the radiographs the starter classifier
learnt from, so that a confidently wrong reading of a film from another hospital, scanner or
screen is flagged instead of trusted.

Two distances, each divided by its own 97.5th percentile on the validation patients (1.0 = as
far as the farthest 2.5 % of in-distribution films):

- **image statistics** of the square the model sees (`image_statistics`: brightness and contrast
  quantiles, black and saturated area, polarity, fine detail, JPEG blocking, burned-in strokes,
  periodic patterns): the mean distance to the 5 nearest training images after whitening by the
  training images' shrunk covariance. Nearest neighbours rather than one Gaussian because the
  training films are several populations (PA and portable AP, two mirrors' processing).
- **the model's features**: the unit-length pooled penultimate features that `embed` returns
  (the same forward pass as the probabilities), as a probabilistic-PCA Mahalanobis distance:
  whitened coordinates on the training images' first principal axes plus the residual off them.

`score = image + max(features - 1, 0)`: the image statistics separate every synthetic shift
and other archive better than the features do, and adding the features' full distance only
adds noise (measured in the README); the features still raise the score when they leave their
validation range. A study is out of distribution above `threshold`, the 97.5th percentile of
the validation patients' scores. The reference (training statistics and feature axes, scales,
threshold) is `domain_guard.safetensors` beside the classifier's weights, derived for exactly
those weights by `radpilot models domain-guard --data DIR --write`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from radpilot.core.contracts import ModelIdentity
from radpilot.tools.imaging import to_model_input

log = logging.getLogger(__name__)

GUARD_FILE = "domain_guard.safetensors"
GUARD_COMMAND = "radpilot models domain-guard --data DIR --write"
GUARD_VERSION = "1"
# The square the statistics are measured on: twice the classifier's input, so that detail the
# classifier averages away (a thumbnail enlarged again, JPEG blocks) is still visible.
STATISTICS_SIZE = 512
NEIGHBOURS = 5
# How many robust spreads (median absolute deviations of the training images) a statistic must
# lie from the training median before a reason names it.
REASON_SPREADS = 4.0

FEATURES_REASON = "the model's features are far from the training images"
IMAGE_REASON = "the image statistics differ from the training radiographs"


class DomainCheck(BaseModel):
    """Whether a study looks like the radiographs the findings model was trained on."""

    score: float = Field(
        ge=0, description="Distance from the training radiographs (image statistics plus the "
        "model's features beyond their usual range); about 1 at the edge of the validation "
        "images."
    )  # fmt: skip
    threshold: float = Field(
        description="Above it the study is out of distribution: the 97.5th percentile of the "
        "validation patients' scores (about 2.5 % false alarms on in-distribution films)."
    )
    out_of_distribution: bool = Field(
        description="True when the score exceeds the threshold: the model may be confidently "
        "wrong on this image without its probabilities showing it."
    )
    reasons: list[str] = Field(
        default_factory=list,
        description="Short phrases saying what differs (only when out of distribution), "
        "e.g. 'the image statistics differ from the training radiographs (inverted polarity?)'.",
    )
    image_score: float = Field(
        ge=0, description="The image-statistics distance alone (1 = the validation edge)."
    )
    feature_score: float = Field(
        ge=0, description="The model's-features distance alone (1 = the validation edge)."
    )
    model: ModelIdentity = Field(
        description="The findings model whose training radiographs and features the study was "
        "compared with."
    )

    def limitation(self) -> str:
        """The limitation every answer about a flagged study carries."""
        reasons = "; ".join(self.reasons) or "its domain-shift score is above the threshold"
        return (
            f"This image differs from the images the models were trained on: {reasons} "
            f"(score {self.score:.2f}, threshold {self.threshold:.2f}). The findings model may "
            "be confidently wrong on it, so no finding is called absent and a finding is "
            "called present only far beyond its rule-in point; read the film yourself."
        )


@dataclass(frozen=True)
class Statistic:
    """One image statistic and what an unusually low or high value suggests (None: nothing
    worth naming in that direction). A `specific` statistic points at one cause (inverted
    polarity, JPEG blocks) and is named before the generic ones (brightness, detail) when it
    stands out; `spreads` is how far from the training median it must lie to be named."""

    name: str
    low: str | None
    high: str | None
    specific: bool = False
    spreads: float = REASON_SPREADS


CURVE = "another brightness or contrast curve?"
BLACK = "black borders, corners or a crop?"
BLUR = "blurred or enlarged from a small image?"
FINE = "noise, sharpening or moiré?"
STATISTICS: tuple[Statistic, ...] = (
    Statistic("mean", CURVE, CURVE),
    Statistic("std", CURVE, CURVE),
    Statistic("p01", CURVE, CURVE),
    Statistic("p05", CURVE, CURVE),
    Statistic("p50", CURVE, CURVE),
    Statistic("p95", CURVE, CURVE),
    Statistic("p99", CURVE, CURVE),
    Statistic("log_black_share", None, BLACK, specific=True),
    Statistic("log_white_share", None, "saturated areas or burned-in text?"),
    # Inverted films sit only ~3.7 spreads below the median (the training films' polarity
    # varies widely; an off-centre crop reaches ~2.5), and no training film is inverted.
    Statistic("polarity", "inverted polarity?", None, specific=True, spreads=3.0),
    Statistic("border_minus_centre", BLACK, "a bright frame around the film?", specific=True),
    Statistic("log_fine_detail", BLUR, FINE),
    Statistic("log_fine_to_coarse", BLUR, FINE),
    # The training films' own blocking varies (one mirror's pixels went through JPEG).
    Statistic("blockiness", None, "JPEG compression blocks?", specific=True, spreads=3.0),
    Statistic("log_bright_strokes", None, "burned-in text or markings?", specific=True),
    Statistic("log_black_corners", None, BLACK, specific=True),
    Statistic("periodicity", None, "a periodic pattern (moiré: a photo of a screen?)",
              specific=True),  # fmt: skip
    Statistic("median_position", CURVE, CURVE),
)
STATISTIC_NAMES = tuple(s.name for s in STATISTICS)


def image_statistics(pixels: np.ndarray) -> np.ndarray:
    """The `STATISTICS` of a study's pixels (float32 in [0, 1]), measured on the centre square
    the classifier sees, at `STATISTICS_SIZE` px; shares and energies on a log scale (their
    spread is multiplicative). A few tens of milliseconds on one CPU core."""
    from scipy import ndimage

    square = (to_model_input(pixels, size=STATISTICS_SIZE, scale=1.0)[0] + 1) / 2
    x = np.clip(square, 0, 1).astype(np.float32)
    side = x.shape[0]
    quantiles = np.percentile(x[::2, ::2], [1, 5, 50, 95, 99])
    # Polarity: the mediastinum and spine (a central band) are denser, so brighter, than the
    # lung fields either side of it on every frontal film; inverted, they are darker.
    rows = slice(int(side * 0.25), int(side * 0.70))
    band = x[rows, int(side * 0.45) : int(side * 0.55)].mean()
    lungs = (x[rows, int(side * 0.18) : int(side * 0.35)].mean()
             + x[rows, int(side * 0.65) : int(side * 0.82)].mean()) / 2  # fmt: skip
    edge = int(side * 0.08)
    ring = np.concatenate(
        [x[:edge].ravel(), x[-edge:].ravel(), x[edge:-edge, :edge].ravel(),
         x[edge:-edge, -edge:].ravel()]
    )  # fmt: skip
    centre = x[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4].mean()
    # Detail: the finest scale's energy, and its ratio to the next scale's (a blurred or
    # enlarged image loses the finest first).
    blur1, blur2 = ndimage.gaussian_filter(x, 1.0), ndimage.gaussian_filter(x, 2.0)
    fine, coarse = float(np.abs(x - blur1).mean()), float(np.abs(blur1 - blur2).mean())
    # Bright strokes much brighter than their surroundings: burned-in text and markers.
    strokes = float(((x - ndimage.gaussian_filter(x, 3.0)) > 0.2).mean())
    return np.array(
        [
            x.mean(), x.std(), *quantiles,
            np.log((x < 0.03).mean() + 1e-3), np.log((x > 0.97).mean() + 1e-3),
            band - lungs, ring.mean() - centre,
            np.log(fine + 1e-6), np.log((fine + 1e-4) / (coarse + 1e-4)),
            _blockiness(x), np.log(strokes + 1e-3), np.log(_black_corners(x) + 1e-3),
            _periodicity(x - blur2),
            (quantiles[2] - quantiles[1]) / (quantiles[3] - quantiles[1] + 1e-3),
        ],
        dtype=np.float64,
    )  # fmt: skip


def _blockiness(x: np.ndarray) -> float:
    """How much stronger the steps across one column (and row) phase of 8 are than the mean
    step: JPEG's 8x8 blocks; ~0 for an uncompressed film whatever its crop offset."""
    total = 0.0
    for axis in (1, 0):
        steps = np.abs(np.diff(x, axis=axis)).mean(axis=1 - axis)
        phases = [steps[p::8].mean() for p in range(8)]
        total += float(np.log(max(phases) / (np.mean(phases) + 1e-6)))
    return total


def _black_corners(x: np.ndarray) -> float:
    """Share of black pixels in the four corner triangles (legs 15 % of the side): a rotated
    or skewed film's empty corners."""
    side = x.shape[0]
    y, xx = np.mgrid[0:side, 0:side] / side
    corners = ((xx + y) < 0.15) | ((1 - xx + y) < 0.15) | ((xx + 1 - y) < 0.15) | (
        (2 - xx - y) < 0.15
    )
    return float((x[corners] < 0.03).mean())


def _periodicity(detail: np.ndarray) -> float:
    """The strongest high-frequency peak over the mean in the detail's spectrum: a screen's
    pixel grid beating with a camera's (moiré) is one sharp peak, anatomy is not."""
    spectrum = np.abs(np.fft.rfft2(detail))
    fy = np.fft.fftfreq(detail.shape[0])[:, None]
    fx = np.fft.rfftfreq(detail.shape[1])[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    band = spectrum[(radius > 0.2) & (radius < 0.45)]
    return float(np.log(band.max() / (band.mean() + 1e-9)))


class DomainReference:
    """The stored reference of one classifier's training radiographs, and the scoring."""

    def __init__(
        self,
        *,
        model_sha256: str,
        threshold: float,
        statistics_mean: np.ndarray,
        statistics_whitening: np.ndarray,
        statistics_reference: np.ndarray,
        statistics_median: np.ndarray,
        statistics_spread: np.ndarray,
        statistics_scale: float,
        feature_mean: np.ndarray,
        feature_axes: np.ndarray,
        feature_variances: np.ndarray,
        residual_variance: float,
        feature_scale: float,
        version: str = GUARD_VERSION,
        summary: dict[str, object] | None = None,
    ) -> None:
        self.model_sha256 = model_sha256
        self.threshold = float(threshold)
        self.statistics_mean = statistics_mean.astype(np.float64)
        self.statistics_whitening = statistics_whitening.astype(np.float64)
        self.statistics_reference = statistics_reference.astype(np.float64)
        self.statistics_median = statistics_median.astype(np.float64)
        self.statistics_spread = statistics_spread.astype(np.float64)
        self.statistics_scale = float(statistics_scale)
        self.feature_mean = feature_mean.astype(np.float64)
        self.feature_axes = feature_axes.astype(np.float64)
        self.feature_variances = feature_variances.astype(np.float64)
        self.residual_variance = float(residual_variance)
        self.feature_scale = float(feature_scale)
        self.version = version
        self.summary = summary or {}

    # --- scoring -------------------------------------------------------------------------

    def image_distances(self, statistics: np.ndarray) -> np.ndarray:
        """Mean whitened distance of each row of `statistics` to its nearest training images
        (unscaled)."""
        whitened = (np.atleast_2d(statistics) - self.statistics_mean) @ self.statistics_whitening
        squared = (
            (whitened**2).sum(axis=1)[:, None]
            - 2 * whitened @ self.statistics_reference.T
            + (self.statistics_reference**2).sum(axis=1)[None, :]
        )
        nearest = np.sort(np.sqrt(np.maximum(squared, 0)), axis=1)[:, :NEIGHBOURS]
        return nearest.mean(axis=1)

    def feature_distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Probabilistic-PCA Mahalanobis distance of each unit-length embedding (unscaled)."""
        centred = np.atleast_2d(embeddings).astype(np.float64) - self.feature_mean
        along = centred @ self.feature_axes.T
        residual = np.maximum((centred**2).sum(axis=1) - (along**2).sum(axis=1), 0)
        return np.sqrt((along**2 / self.feature_variances).sum(axis=1)
                       + residual / self.residual_variance)  # fmt: skip

    def scores(self, statistics: np.ndarray, embeddings: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """(score, image score, feature score) per row: the module docstring's combination."""
        image = self.image_distances(statistics) / self.statistics_scale
        features = self.feature_distances(embeddings) / self.feature_scale
        return image + np.maximum(features - 1, 0), image, features

    def check(self, pixels: np.ndarray, embedding: np.ndarray, model: ModelIdentity
              ) -> DomainCheck:  # fmt: skip
        """The guard's verdict on one study from its pixels and its embedding (from the
        classifier's forward pass: nothing is run twice) by `model`."""
        statistics = image_statistics(pixels)
        score, image, features = (float(v[0]) for v in self.scores(statistics, embedding))
        outside = score > self.threshold
        return DomainCheck(
            score=round(score, 3),
            threshold=round(self.threshold, 3),
            out_of_distribution=outside,
            reasons=self.reasons(statistics, image, features) if outside else [],
            image_score=round(image, 3),
            feature_score=round(features, 3),
            model=model,
        )

    def reasons(self, statistics: np.ndarray, image: float, features: float) -> list[str]:
        """What differs, in a clinician's words: the image statistics (with the likeliest
        causes, from the statistics furthest from the training images) and the features."""
        reasons = []
        if image > 1 or features <= 1:
            cues = self.cues(statistics)
            reasons.append(f"{IMAGE_REASON} ({'; '.join(cues)})" if cues else IMAGE_REASON)
        if features > 1:
            reasons.append(FEATURES_REASON)
        return reasons

    def cues(self, statistics: np.ndarray, most: int = 2) -> list[str]:
        """Up to `most` distinct likely causes: the statistics that lie beyond their bar (in
        robust spreads from the training images' median) in a direction that has a cause,
        specific ones first, each group furthest first."""
        spreads = (statistics - self.statistics_median) / self.statistics_spread
        standing_out = [(s.specific, abs(z), s.high if z > 0 else s.low)
                        for z, s in zip(spreads, STATISTICS, strict=True)
                        if abs(z) >= s.spreads]  # fmt: skip
        cues: list[str] = []
        for _, _, cue in sorted(standing_out, key=lambda c: (not c[0], -c[1])):
            if cue is not None and cue not in cues and len(cues) < most:
                cues.append(cue)
        return cues

    # --- storage -------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the reference (arrays in float16 where precision allows; < 200 kB)."""
        from safetensors.numpy import save_file

        arrays: dict[str, np.ndarray] = {
            "statistics_mean": self.statistics_mean.astype(np.float32),
            "statistics_whitening": self.statistics_whitening.astype(np.float32),
            "statistics_reference": self.statistics_reference.astype(np.float16),
            "statistics_median": self.statistics_median.astype(np.float32),
            "statistics_spread": self.statistics_spread.astype(np.float32),
            "feature_mean": self.feature_mean.astype(np.float16),
            "feature_axes": self.feature_axes.astype(np.float16),
            "feature_variances": self.feature_variances.astype(np.float32),
        }
        metadata = {
            "version": self.version,
            "model_sha256": self.model_sha256,
            "threshold": repr(self.threshold),
            "statistics_scale": repr(self.statistics_scale),
            "feature_scale": repr(self.feature_scale),
            "residual_variance": repr(self.residual_variance),
            "statistics": json.dumps(STATISTIC_NAMES),
            "summary": json.dumps(self.summary),
        }
        save_file(arrays, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: Path) -> DomainReference:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            meta = handle.metadata()
            arrays = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        if json.loads(meta["statistics"]) != list(STATISTIC_NAMES):
            raise ValueError(f"{path} was derived for other image statistics; re-derive it")
        return cls(
            **arrays,
            model_sha256=meta["model_sha256"],
            threshold=float(meta["threshold"]),
            statistics_scale=float(meta["statistics_scale"]),
            feature_scale=float(meta["feature_scale"]),
            residual_variance=float(meta["residual_variance"]),
            version=meta["version"],
            summary=json.loads(meta.get("summary", "{}")),
        )


def load_domain_reference(folder: Path, model_sha256: str) -> DomainReference | None:
    """The reference beside a classifier's weights, or None (logged, with the command that
    derives it) when it is missing, unreadable or was derived for other weights."""
    path = folder / GUARD_FILE
    if not path.exists():
        log.warning("no domain-shift reference in %s: derive it with `%s`", folder, GUARD_COMMAND)
        return None
    from safetensors import SafetensorError

    try:
        reference = DomainReference.load(path)
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        log.warning("unreadable domain-shift reference %s (%s): re-derive it with `%s`",
                    path, error, GUARD_COMMAND)  # fmt: skip
        return None
    if reference.model_sha256 != model_sha256:
        log.warning("the domain-shift reference %s belongs to other weights: re-derive it "
                    "with `%s`", path, GUARD_COMMAND)  # fmt: skip
        return None
    return reference

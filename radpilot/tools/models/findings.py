"""One interface over every findings classifier (starter or torchxrayvision DenseNet).

`predict` returns calibrated probabilities in the order of `NIH_FINDINGS`, NaN where a model
does not cover a finding (the starter's logits pass through its per-finding `Platt`
calibration, fitted on the validation patients by `radpilot models calibrate`); `attribution`
returns a Grad-CAM heatmap for one finding on the model's square input. Each finding has a
Youden `threshold` and two `operating_points` (rule-out, rule-in) chosen on the validation
patients. Models are loaded once per process by `ModelHub`.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict

from radpilot.core.contracts import ModelCard, ModelIdentity
from radpilot.core.errors import RadpilotError
from radpilot.core.findings import NIH_FINDINGS, OperatingPoint
from radpilot.tools.imaging import to_model_input
from radpilot.tools.models import precision
from radpilot.tools.models.batching import BATCH_WAIT_S, MicroBatcher, model_batcher
from radpilot.tools.models.catalog import CATALOG, InputConvention, KnownWeights
from radpilot.tools.models.domain_guard import (
    DomainCheck,
    DomainReference,
    load_domain_reference,
)
from radpilot.tools.models.store import ModelStore, bundled_dir, sha256_of

# Preference when several classifiers are installed: canonical multi-dataset weights first.
CLASSIFIER_PREFERENCE = ("densenet121-res224-all", "densenet121-res224-nih", "starter-classifier")

# The one command that derives a starter bundle's operating points (named in its errors).
OPERATING_POINTS_COMMAND = "radpilot models operating-points --data DIR --bundle BUNDLE --write"
CALIBRATE_COMMAND = "radpilot models calibrate --data DIR --bundle BUNDLE --write"


class TtaView(BaseModel):
    """One view of the input whose logits are averaged at test time: a zoom about the centre
    and a shift (fractions of half the image). Never a flip: left and right matter in chest
    radiographs (laterality, the heart's side)."""

    zoom: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0


IDENTITY_VIEW = TtaView()


class Platt(BaseModel):
    """One finding's calibration of the starter's logit z: p = sigmoid(slope * z + intercept)
    (Platt scaling; a global temperature T is slope 1/T, intercept 0). A positive slope keeps
    the order of the images, so every AUROC is unchanged."""

    model_config = ConfigDict(frozen=True)

    slope: float
    intercept: float = 0.0


def read_calibration(metadata: dict[str, Any]) -> dict[str, Platt]:
    """A starter bundle's per-finding calibration (`calibration.findings`); a bundle from before
    it (or one trained and not yet calibrated) has only the global `temperature`."""
    stored = metadata.get("calibration")
    if stored is not None:
        fits = {name: Platt.model_validate(value) for name, value in stored["findings"].items()}
        missing = [f for f in NIH_FINDINGS if f not in fits]
        if missing:  # refused at load, not at the first image
            raise RadpilotError(
                f"the classifier bundle's calibration lacks {', '.join(missing)}: re-derive it "
                f"with `{CALIBRATE_COMMAND}`",
                code="invalid_calibration",
            )
        return fits
    shared = Platt(slope=1 / float(metadata["temperature"]))
    return {finding: shared for finding in NIH_FINDINGS}


def calibrated(logits: np.ndarray, calibration: dict[str, Platt]) -> np.ndarray:
    """Probabilities (float32) of logits (N, findings in the order of `NIH_FINDINGS`)."""
    slopes = np.array([calibration[f].slope for f in NIH_FINDINGS])
    intercepts = np.array([calibration[f].intercept for f in NIH_FINDINGS])
    z = np.asarray(logits, dtype=np.float64) * slopes + intercepts
    return (1 / (1 + np.exp(-z))).astype(np.float32)


class Reading(NamedTuple):
    """What one forward pass gives for one image: calibrated probabilities (in the order of
    `NIH_FINDINGS`) and the unit-length pooled penultimate features that `embed` returns (None
    where the model does not expose them on the way)."""

    probabilities: np.ndarray
    embedding: np.ndarray | None


def _unit_rows(pooled: Any) -> np.ndarray:
    """Pooled features (N, C) as unit-length float32 rows: the one embedding convention."""
    import torch

    vectors = torch.nn.functional.normalize(pooled.float(), dim=1)
    return vectors.cpu().numpy().astype(np.float32)


def views_of(batch: Any, views: Sequence[TtaView]) -> Any:
    """`batch` (N, C, H, W) seen through each view: (len(views) * N, C, H, W), view-major."""
    import torch
    import torch.nn.functional as F

    n = batch.shape[0]
    theta = torch.tensor(
        [[[1 / v.zoom, 0.0, v.shift_x], [0.0, 1 / v.zoom, v.shift_y]] for v in views],
        dtype=batch.dtype,
        device=batch.device,
    ).repeat_interleave(n, dim=0)
    tiled = batch.repeat(len(views), 1, 1, 1)
    grid = F.affine_grid(theta, list(tiled.shape), align_corners=False)
    return F.grid_sample(tiled, grid, align_corners=False, padding_mode="border")


class FindingsModel(ABC):
    weights: KnownWeights
    identity: ModelIdentity
    card: ModelCard
    thresholds: dict[str, float]
    # Per covered finding: below rule_out "No / unlikely", at or above rule_in "Yes / likely",
    # in between "Possibly / indeterminate".
    operating_points: dict[str, OperatingPoint]
    # The training radiographs' reference for the domain-shift guard; None for weights without
    # one (torchxrayvision's, or a bundle whose reference was not derived).
    domain_reference: DomainReference | None = None

    def __init__(self, device: str = "cpu", batch_wait_s: float = BATCH_WAIT_S) -> None:
        self.device = device
        self._lock = threading.Lock()  # torch modules are not safe to call concurrently
        # Concurrent sessions' single-image requests share one forward pass.
        self.batcher: MicroBatcher[np.ndarray, Reading] = model_batcher(
            self._read_prepared, device, batch_wait_s
        )

    @property
    def covered(self) -> list[str]:
        return [f for f in NIH_FINDINGS if f in self.weights.labels]

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """One image as the model's input array (resized and scaled, no batch axis)."""
        convention = self.weights.input
        return to_model_input(pixels, size=convention.size, scale=convention.scale)

    def inputs(self, pixels: list[np.ndarray]) -> Any:
        import torch

        return torch.from_numpy(np.stack([self.prepare(p) for p in pixels])).to(self.device)

    def predict(self, pixels: list[np.ndarray]) -> np.ndarray:
        import torch

        batch = self.inputs(pixels)
        with self._lock, torch.no_grad(), precision.inference(self.device):
            return self._probabilities(self._forward(batch))

    def predict_one(self, pixels: np.ndarray) -> np.ndarray:
        """One image's probabilities, micro-batched with other sessions' concurrent requests
        (the input is prepared in the caller's thread; only the forward pass is shared)."""
        return self.read_one(pixels).probabilities

    def read_one(self, pixels: np.ndarray) -> Reading:
        """One image's probabilities and, from the same forward pass, its embedding (for the
        domain-shift guard), micro-batched like `predict_one`."""
        return self.batcher.submit(self.prepare(pixels))

    def domain_check(self, pixels: np.ndarray, reading: Reading) -> DomainCheck | None:
        """The domain-shift guard's verdict on an image from its reading (nothing is run
        again); None for weights without a reference."""
        if self.domain_reference is None or reading.embedding is None:
            return None
        return self.domain_reference.check(pixels, reading.embedding, self.identity)

    def read(self, pixels: list[np.ndarray]) -> list[Reading]:
        """`read_one` for a batch of images at once (training and evaluation)."""
        return self._read_prepared([self.prepare(p) for p in pixels])

    def _read_prepared(self, prepared: Sequence[np.ndarray]) -> list[Reading]:
        import torch

        batch = torch.from_numpy(np.stack(prepared)).to(self.device)
        with self._lock, torch.no_grad(), precision.inference(self.device):
            outputs, pooled = self._forward_and_pool(batch)
            probabilities = self._probabilities(outputs)
        vectors = [None] * len(prepared) if pooled is None else list(_unit_rows(pooled))
        return [Reading(p, v) for p, v in zip(probabilities, vectors, strict=True)]

    def embed(self, pixels: list[np.ndarray]) -> np.ndarray:
        """Penultimate features (global average pooled, unit length): one row per image, for
        image-to-image similarity and the domain-shift guard."""
        import torch

        batch = self.inputs(pixels)
        with self._lock, torch.no_grad():
            return _unit_rows(self._features(batch).mean(dim=(2, 3)))

    def _forward_and_pool(self, batch: Any) -> tuple[Any, Any | None]:
        """The outputs and, where the forward pass computes them on the way, the pooled
        penultimate features (as `embed` pools them). None here: a model whose outputs are
        not its head over those features (torchxrayvision's are normalised) would need a
        second pass, and no domain reference exists for it."""
        return self._forward(batch), None

    def attribution(self, pixels: np.ndarray, finding: str) -> np.ndarray:
        """Grad-CAM (Selvaraju et al. 2017) on the last convolutional features, in [0, 1],
        at the model's input size."""
        import torch
        import torch.nn.functional as F

        column = NIH_FINDINGS.index(finding)
        batch = self.inputs([pixels])
        with self._lock, torch.enable_grad():
            features = self._features(batch).detach().requires_grad_(True)
            logits = self._head(features)
            score = logits[0, self._output_index(column)]
            (gradients,) = torch.autograd.grad(score, features)
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * features).sum(dim=1, keepdim=True))
        size = self.weights.input.size
        resized = F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)
        heatmap = resized[0, 0].detach().cpu().numpy().astype(np.float32)
        peak = float(heatmap.max())
        return heatmap / peak if peak > 0 else heatmap

    @abstractmethod
    def _forward(self, batch: Any) -> Any: ...

    @abstractmethod
    def _probabilities(self, outputs: Any) -> np.ndarray: ...

    @abstractmethod
    def _features(self, batch: Any) -> Any: ...

    @abstractmethod
    def _head(self, features: Any) -> Any: ...

    @abstractmethod
    def _output_index(self, column: int) -> int: ...


class StarterFindingsModel(FindingsModel):
    """The EfficientNet-Lite starter shipped inside the package (its bundle names the variant)."""

    def __init__(
        self,
        folder: Path | None = None,
        device: str = "cpu",
        batch_wait_s: float = BATCH_WAIT_S,
        views: Sequence[TtaView] | None = None,
        require_operating_points: bool = True,
    ) -> None:
        """`views` overrides the bundle's test-time views (to evaluate a TTA before it ships).
        A bundle without operating points is refused unless `require_operating_points` is
        False (only for the tools that derive them or compare raw probabilities; there
        `operating_points` is empty)."""
        super().__init__(device, batch_wait_s)
        from safetensors.torch import load_file

        from radpilot.tools.models.efficientnet import build_lite

        folder = folder or bundled_dir("starter-classifier")
        metadata = json.loads((folder / "metadata.json").read_text())
        # The bundle states its own input size (the recipe's), the catalog only the family's.
        self.weights = CATALOG["starter-classifier"].model_copy(
            update={"input": InputConvention.model_validate(metadata["input"])}
        )
        self.model = build_lite(metadata["backbone"], len(NIH_FINDINGS), imagenet=False)
        state = {
            k: v.float() if v.is_floating_point() else v
            for k, v in load_file(str(folder / self.weights.filename)).items()
        }
        self.model.load_state_dict(state)
        self.model.to(device).eval()
        self.views = list(views or map(TtaView.model_validate, metadata["test_time_views"]))
        self.calibration = read_calibration(metadata)
        self.thresholds = {k: float(v) for k, v in metadata["thresholds"].items()}
        self.operating_points = read_operating_points(
            metadata, folder, required=require_operating_points
        )
        self.card = ModelCard.model_validate(metadata["card"])
        self.identity = ModelIdentity(
            name=self.weights.name, version=metadata["version"], sha256=metadata["sha256"]
        )
        self.domain_reference = load_domain_reference(folder, metadata["sha256"])

    def view_logits(self, batch: Any, views: Sequence[TtaView]) -> Any:
        """Logits of `batch` seen through each view: (len(views), N, labels)."""
        if list(views) == [IDENTITY_VIEW]:  # the shipped default: no resampling on the hot path
            return self.model(batch)[None]
        logits = self.model(views_of(batch, views))
        return logits.reshape(len(views), batch.shape[0], -1)

    def _forward(self, batch: Any) -> Any:
        return self.view_logits(batch, self.views).mean(dim=0)

    def _forward_and_pool(self, batch: Any) -> tuple[Any, Any | None]:
        if self.views != [IDENTITY_VIEW]:  # test-time views: the image itself is not among them
            return self._forward(batch), self._features(batch).mean(dim=(2, 3))
        # The shipped default: the head runs on the very features that are pooled (the
        # network's own forward is extract_features, pooling, dropout (off in eval), fc).
        features = self._features(batch)
        return self._head(features), features.mean(dim=(2, 3))

    def logits(self, pixels: list[np.ndarray]) -> np.ndarray:
        """Uncalibrated logits (averaged over the test-time views), one row per image: what
        the calibration is fitted on."""
        import torch

        batch = self.inputs(pixels)
        with self._lock, torch.no_grad(), precision.inference(self.device):
            return self._forward(batch).float().cpu().numpy()

    def _probabilities(self, outputs: Any) -> np.ndarray:
        return calibrated(outputs.float().cpu().numpy(), self.calibration)

    def _features(self, batch: Any) -> Any:
        return self.model.extract_features(batch)

    def _head(self, features: Any) -> Any:
        pooled = self.model._avg_pooling(features).flatten(start_dim=1)
        return self.model._fc(pooled)

    def _output_index(self, column: int) -> int:
        return column


def read_operating_points(
    metadata: dict[str, Any], folder: Path, *, required: bool = True
) -> dict[str, OperatingPoint]:
    """A starter bundle's `operating_points`, one per finding; a missing or incomplete set is a
    clear error naming the command that derives them (an empty dict when not `required`)."""
    stored = metadata.get("operating_points")
    if stored is None:
        if not required:
            return {}
        raise RadpilotError(
            f"the classifier bundle {folder} has no operating points (rule-out / rule-in per "
            f"finding) in its metadata.json: derive them on the validation patients with "
            f"`{OPERATING_POINTS_COMMAND}`",
            code="missing_operating_points",
        )
    points = {name: OperatingPoint.model_validate(value) for name, value in stored.items()}
    missing = [f for f in metadata.get("labels", NIH_FINDINGS) if f not in points]
    if missing and required:
        raise RadpilotError(
            f"the classifier bundle {folder} has no operating points for {', '.join(missing)}: "
            f"re-derive them with `{OPERATING_POINTS_COMMAND}`",
            code="missing_operating_points",
        )
    return points


class XrvFindingsModel(FindingsModel):
    """A torchxrayvision DenseNet-121, loaded by `xrv.models.DenseNet(weights=, cache_dir=)`.

    Outputs pass through xrv's operating-point normalisation, so 0.5 is each finding's
    published operating threshold. No validation-derived operating points exist for these
    weights: rule-out = rule-in = 0.5 (a single cut, never "indeterminate"), which the card
    states.
    """

    def __init__(
        self,
        name: str,
        store: ModelStore,
        device: str = "cpu",
        batch_wait_s: float = BATCH_WAIT_S,
    ) -> None:
        super().__init__(device, batch_wait_s)
        import torchxrayvision as xrv

        self.weights = CATALOG[name]
        path = store.require(name)
        self.model = xrv.models.DenseNet(weights=name, cache_dir=str(path.parent))
        self.model.to(device).eval()
        self.thresholds = {finding: 0.5 for finding in self.covered}
        self.operating_points = {
            finding: OperatingPoint(rule_out=threshold, rule_in=threshold)
            for finding, threshold in self.thresholds.items()
        }
        self.identity = ModelIdentity(name=name, version="xrv-1.5.7", sha256=sha256_of(path))
        self.card = ModelCard(
            name=name,
            version="torchxrayvision v1 release",
            architecture=self.weights.architecture,
            source=self.weights.url,
            licence=self.weights.licence,
            sha256=self.identity.sha256,
            intended_use=self.weights.intended_use,
            limitations=[
                "Probabilities are normalised so 0.5 is the published operating point.",
                "No operating points were chosen on validation data for these weights: rule-out "
                "and rule-in are both the published operating point (0.5), so an answer is Yes "
                "or No, never indeterminate, and its sensitivity and specificity at that point "
                "are those of the weights' source, not measured here.",
            ],
        )
        self._xrv_index = {f: self.weights.labels.index(f) for f in self.covered}

    def _forward(self, batch: Any) -> Any:
        return self.model(batch)

    def _probabilities(self, outputs: Any) -> np.ndarray:
        values = outputs.float().cpu().numpy()
        result = np.full((values.shape[0], len(NIH_FINDINGS)), np.nan, dtype=np.float32)
        for column, finding in enumerate(NIH_FINDINGS):
            if finding in self._xrv_index:
                result[:, column] = values[:, self._xrv_index[finding]]
        return result

    def _features(self, batch: Any) -> Any:
        import torch.nn.functional as F

        return F.relu(self.model.features(batch))  # as in xrv's features2, before pooling

    def _head(self, features: Any) -> Any:
        return self.model.classifier(features.mean(dim=(2, 3)))

    def _output_index(self, column: int) -> int:
        return self._xrv_index[NIH_FINDINGS[column]]

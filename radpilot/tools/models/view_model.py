"""The starter projection classifier: PA or AP, for frontal chest radiographs whose file does
not say (PNG, JPEG, or DICOM without ViewPosition). Shipped inside the package and trained here
(`radpilot models train view`).

A small convolutional network (five stride-2 stages, about 0.37 M parameters) reads the whole
image letterboxed to a small square (aspect kept, never cropped: the side markers and the
shoulders at the edges carry the projection), and returns the probability that the film is
AP, temperature-scaled on the validation patients. It needs no other model, so its bundle does
not depend on the findings classifier's weights, and one call costs a few milliseconds on a CPU.

`ViewClassifier.estimate` takes study pixels (float32 in [0, 1], any H×W) and returns a
`ViewEstimate`: the more probable view and its probability, with the model's identity.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from radpilot.core.contracts import ModelCard, ModelIdentity
from radpilot.core.errors import RadpilotError
from radpilot.shared import process_wide
from radpilot.tools.models import precision
from radpilot.tools.models.store import bundled_dir, starter_bundle
from radpilot.tools.models.unet import letterbox

NAME = "starter-view"
LABELS = ("PA", "AP")  # the network's one logit is AP's
MIN_SIDE = 32  # smaller than any image QC lets through (64 px); below it nothing is left to see


class ViewNetConfig(BaseModel):
    """The network's shape; stored in the bundle so the loader rebuilds the trained net."""

    width: int = Field(default=16, ge=1, description="Channels of the first stage.")
    # Channels of each stage as multiples of `width`; every stage halves the resolution.
    multipliers: tuple[int, ...] = (1, 2, 4, 4, 8)
    dropout: float = Field(default=0.3, ge=0, lt=1)


class ViewEstimate(BaseModel):
    """The projection a model estimates for a frontal radiograph."""

    view: Literal["PA", "AP"] = Field(description="The more probable projection.")
    probability: float = Field(ge=0, le=1, description="The model's probability of `view`.")
    probability_ap: float = Field(ge=0, le=1, description="The model's probability of AP.")
    model: ModelIdentity


def build_view_net(config: ViewNetConfig | None = None) -> Any:
    """One grey input channel → one logit (AP). Each stage: a stride-2 3×3 convolution and a
    3×3 convolution, each with batch norm and ReLU; then global average and max pooling."""
    import torch
    from torch import nn

    shape = config or ViewNetConfig()

    def stage(inputs: int, outputs: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(inputs, outputs, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True),
            nn.Conv2d(outputs, outputs, 3, padding=1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True),
        )

    class ViewNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            channels = [1, *(shape.width * m for m in shape.multipliers)]
            self.features = nn.Sequential(
                *(stage(a, b) for a, b in zip(channels, channels[1:], strict=False))
            )
            self.dropout = nn.Dropout(shape.dropout)
            self.head = nn.Linear(2 * channels[-1], 1)

        def forward(self, x: Any) -> Any:
            h = self.features(x)
            pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
            return self.head(self.dropout(pooled))[:, 0]

    return ViewNet()


def check_view_pixels(pixels: np.ndarray) -> None:
    """Fail loudly on inputs the model was not trained on (wrong shape, range or size)."""
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 2:
        shape = getattr(pixels, "shape", type(pixels).__name__)
        raise RadpilotError(
            f"the projection model needs one 2-D grey image, got an array of shape {shape}",
            code="bad_image",
        )
    if min(pixels.shape) < MIN_SIDE:
        raise RadpilotError(
            f"the projection model needs an image of at least {MIN_SIDE} px a side, got "
            f"{pixels.shape[1]}x{pixels.shape[0]}",
            code="bad_image",
        )
    if not np.isfinite(pixels).all():
        raise RadpilotError(
            "the projection model got pixels that are NaN or infinite", code="bad_image"
        )
    low, high = float(pixels.min()), float(pixels.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise RadpilotError(
            f"the projection model needs pixels in [0, 1], got [{low:.3g}, {high:.3g}]",
            code="bad_image",
        )


def view_input(pixels: np.ndarray, size: int) -> np.ndarray:
    """Study pixels in [0, 1] → (1, size, size) in [-1, 1], letterboxed on black: what the
    network sees, in training and in use."""
    check_view_pixels(pixels)
    canvas, _ = letterbox(np.clip(pixels, 0.0, 1.0).astype(np.float32), size, fill=0.0)
    return (canvas * 2.0 - 1.0)[None]


def estimate_from(probability_ap: float, identity: ModelIdentity) -> ViewEstimate:
    """The estimate a probability of AP stands for (AP at 0.5 and above)."""
    p = float(min(max(probability_ap, 0.0), 1.0))
    view: Literal["PA", "AP"] = "AP" if p >= 0.5 else "PA"
    return ViewEstimate(
        view=view,
        probability=round(p if view == "AP" else 1.0 - p, 4),
        probability_ap=round(p, 4),
        model=identity,
    )


class ViewClassifier:
    """The bundled projection classifier (fp16 on disk, fp32 in memory)."""

    def __init__(self, folder: Path | None = None, device: str = "cpu") -> None:
        metadata, state = starter_bundle(NAME, folder, "the starter projection classifier",
                                         "radpilot models train view --data DIR")
        self.device = device
        self.size = int(metadata["input"]["size"])
        self.temperature = float(metadata["temperature"])
        self.model = build_view_net(ViewNetConfig.model_validate(metadata["network"]))
        self.model.load_state_dict(state)
        self.model.to(device).eval()
        self.card = ModelCard.model_validate(metadata["card"])
        self.identity = ModelIdentity(
            name=NAME, version=metadata["version"], sha256=metadata["sha256"]
        )
        self._lock = threading.Lock()  # torch modules are not safe to call concurrently

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """One image as the network's input, (1, size, size) in [-1, 1]."""
        return view_input(pixels, self.size)

    def probabilities_ap(self, images: list[np.ndarray]) -> np.ndarray:
        """The probability of AP for each image (one float per image)."""
        import torch

        if not images:
            return np.zeros(0, dtype=np.float32)
        batch = torch.from_numpy(np.stack([self.prepare(p) for p in images])).to(self.device)
        with self._lock, torch.no_grad(), precision.inference(self.device):
            logits = self.model(batch).float().cpu().numpy().astype(np.float64)
        return (1.0 / (1.0 + np.exp(-logits / self.temperature))).astype(np.float32)

    def estimate(self, pixels: np.ndarray) -> ViewEstimate:
        """The more probable projection of one frontal radiograph, with its probability."""
        return estimate_from(float(self.probabilities_ap([pixels])[0]), self.identity)


def view_model_is_shipped() -> bool:
    return (bundled_dir(NAME) / "metadata.json").exists()


@process_wide
def shipped_view_classifier(device: str = "cpu") -> ViewClassifier | None:
    """The packaged projection classifier, loaded once per process; None where a build has
    no bundle."""
    return ViewClassifier(device=device) if view_model_is_shipped() else None

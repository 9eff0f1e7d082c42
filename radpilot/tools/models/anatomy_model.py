"""The starter anatomy segmenter: one MONAI U-Net for the heart and both lungs, shipped inside
the package and trained here (`radpilot models train anatomy`).

`AnatomySegmenter.predict` takes study pixels (float32 in [0, 1], any H×W) and returns the
heart, the patient's right lung and left lung as boolean masks of the same H×W. The image is
letterboxed as for every starter segmenter (aspect kept, never cropped: a crop could cut off
an apex, a base or the heart's border), the four class probabilities are resized back, and
each pixel takes its most probable class. Each structure keeps its largest connected
component, holes filled (a dense opacity inside a lung is still lung).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radpilot.core.contracts import ModelCard, ModelIdentity
from radpilot.shared import process_wide
from radpilot.tools.models import precision
from radpilot.tools.models.store import starter_bundle
from radpilot.tools.models.unet import (
    UNetConfig,
    build_unet,
    check_pixels,
    model_input,
    unletterbox,
)

NAME = "starter-anatomy"
# Output channels, in order ("right"/"left" are the patient's sides).
CLASSES = ("background", "heart", "right_lung", "left_lung")
BACKGROUND, HEART, RIGHT_LUNG, LEFT_LUNG = range(len(CLASSES))


@dataclass(frozen=True)
class AnatomyMasks:
    heart: np.ndarray
    right_lung: np.ndarray
    left_lung: np.ndarray


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component, holes filled; empty stays empty."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    filled: np.ndarray = ndimage.binary_fill_holes(labels == largest)
    return filled.astype(bool)


class AnatomySegmenter:
    """The bundled starter anatomy U-Net (fp16 on disk, fp32 in memory)."""

    def __init__(self, folder: Path | None = None, device: str = "cpu") -> None:
        metadata, state = starter_bundle(NAME, folder, "the starter anatomy segmenter",
                                         "radpilot models train anatomy --data DIR")
        self.device = device
        self.size = int(metadata["input"]["size"])
        self.equalize = bool(metadata["input"].get("equalize", False))
        self.model = build_unet(UNetConfig.model_validate(metadata["network"]))
        self.model.load_state_dict(state)
        self.model.to(device).eval()
        self.card = ModelCard.model_validate(metadata["card"])
        self.identity = ModelIdentity(
            name=NAME, version=metadata["version"], sha256=metadata["sha256"]
        )
        self._lock = threading.Lock()  # torch modules are not safe to call concurrently

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(4, H, W) class probabilities at the input's H×W (before any clean-up)."""
        import torch

        check_pixels(pixels)
        inputs, placement = model_input(
            np.asarray(pixels, dtype=np.float32), self.size, equalize=self.equalize
        )
        batch = torch.from_numpy(inputs[None]).to(self.device)
        with self._lock, torch.no_grad(), precision.inference(self.device):
            square = torch.softmax(self.model(batch)[0].float(), dim=0).cpu().numpy()
        return np.stack([unletterbox(channel, placement, pixels.shape) for channel in square])

    def predict(self, pixels: np.ndarray) -> AnatomyMasks:
        labels = self.probabilities(pixels).argmax(axis=0)
        return AnatomyMasks(
            heart=largest_component(labels == HEART),
            right_lung=largest_component(labels == RIGHT_LUNG),
            left_lung=largest_component(labels == LEFT_LUNG),
        )


@process_wide
def shipped_anatomy_segmenter(device: str = "cpu") -> AnatomySegmenter:
    """The bundled segmenter on `device`, loaded once per process on first use."""
    return AnatomySegmenter(device=device)

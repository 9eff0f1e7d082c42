"""The starter lung segmenter: a small MONAI U-Net shipped inside the package.

`LungSegmenter.predict` takes study pixels (float32 in [0, 1], any H×W) and returns a boolean
mask of both lungs at the same H×W. The image is letterboxed (aspect kept, padded to a square)
rather than centre-cropped as the classifiers do: a crop would cut off lung apices or bases on
portrait images, and a segmentation must cover the whole image. `split_left_right` separates
the patient's right and left lung in image convention (patient's right on the image's left).

Training (`train_lungs.py`) uses the same `letterbox`, `model_input` and `build_unet`, so the
model sees identical inputs in training and in use.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from radpilot.errors import RadpilotError
from radpilot.shared import process_wide
from radpilot.tools.base import ModelCard, ModelIdentity
from radpilot.tools.models import precision
from radpilot.tools.models.store import WeightsMissingError, bundled_dir

NAME = "starter-lungs"
# A second component under this share of the largest is a speck, not a lung: one lung can be
# small (collapse, effusion) but not 50 times smaller than the other.
MIN_SECOND_LUNG_FRACTION = 0.02


class UNetConfig(BaseModel):
    """The network's shape; stored in the bundle so the loader rebuilds the trained net."""

    # Six levels (an 8×8 bottleneck at 256 px): the lung bases are judged from the whole
    # chest's context; the extra level costs little compute at that resolution.
    channels: tuple[int, ...] = (16, 32, 64, 128, 256, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2, 2)
    num_res_units: int = 2


def build_unet(config: UNetConfig | None = None) -> Any:
    """2-D U-Net, one grey input channel, one output channel of "lung" logits."""
    from monai.networks.nets import UNet

    config = config or UNetConfig()
    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        channels=config.channels,
        strides=config.strides,
        num_res_units=config.num_res_units,
    )


@dataclass(frozen=True)
class Placement:
    """Where the resized image sits inside the square model input (model pixels)."""

    top: int
    left: int
    height: int
    width: int


def letterbox(values: np.ndarray, size: int, fill: float = 0.0) -> tuple[np.ndarray, Placement]:
    """Resize `values` (H×W) so its longer side is `size`, aspect kept, centred on a
    size×size canvas of `fill`."""
    from PIL import Image

    height, width = values.shape
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    resized = Image.fromarray(values.astype(np.float32), mode="F").resize(
        (new_w, new_h), Image.Resampling.BILINEAR
    )
    canvas = np.full((size, size), fill, dtype=np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = np.asarray(resized, dtype=np.float32)
    return canvas, Placement(top=top, left=left, height=new_h, width=new_w)


def unletterbox(values: np.ndarray, placement: Placement, shape: tuple[int, int]) -> np.ndarray:
    """The inverse of `letterbox`: crop the image's part of the square, resize to `shape`."""
    from PIL import Image

    p = placement
    crop = values[p.top : p.top + p.height, p.left : p.left + p.width].astype(np.float32)
    resized = Image.fromarray(crop, mode="F").resize(
        (shape[1], shape[0]), Image.Resampling.BILINEAR
    )
    return np.asarray(resized, dtype=np.float32)


def model_input(pixels: np.ndarray, size: int) -> tuple[np.ndarray, Placement]:
    """Study pixels in [0, 1] → (1, size, size) in [-1, 1]; the padding is black (-1), as the
    borders of most radiographs are."""
    canvas, placement = letterbox(pixels, size, fill=0.0)
    return (canvas * 2.0 - 1.0)[None], placement


def check_pixels(pixels: np.ndarray) -> None:
    """Fail loudly on inputs the model was not trained on (wrong shape or range)."""
    if pixels.ndim != 2 or min(pixels.shape) < 8:
        raise RadpilotError(
            f"lung segmentation needs one 2-D grey image, got an array of shape {pixels.shape}",
            code="bad_image",
        )
    low, high = float(np.nanmin(pixels)), float(np.nanmax(pixels))
    if not np.isfinite(pixels).all() or low < -1e-3 or high > 1 + 1e-3:
        raise RadpilotError(
            f"lung segmentation needs pixels in [0, 1], got [{low:.3g}, {high:.3g}]",
            code="bad_image",
        )


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Keep the two largest connected components (the lungs; drops specks) and fill holes
    (dense opacities inside a lung are still lung)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1][:2]
    keep = [int(order[0]) + 1]
    if len(order) == 2 and sizes[order[1]] >= MIN_SECOND_LUNG_FRACTION * sizes[order[0]]:
        keep.append(int(order[1]) + 1)
    kept: np.ndarray = ndimage.binary_fill_holes(np.isin(labels, keep))
    return kept.astype(bool)


def split_left_right(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right_lung, left_lung) of a both-lungs mask, in image convention: the patient's right
    lung is on the image's left.

    Two substantial components are the two lungs, ordered by their centroids' columns (any
    smaller pieces go to the side of their centroid). One component that spans the image's
    vertical centre line is two touching lungs: it is cut at the column with the fewest lung
    pixels in the middle of its extent. One component on one side is a single lung.
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    empty = np.zeros(mask.shape, dtype=bool)
    labels, count = ndimage.label(mask)
    if count == 0:
        return empty, empty.copy()
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    columns = np.arange(mask.shape[1])
    centroids = [float(ndimage.center_of_mass(mask, labels, k + 1)[1]) for k in range(count)]
    if count >= 2 and sizes[order[1]] >= MIN_SECOND_LUNG_FRACTION * sizes[order[0]]:
        cut = (centroids[order[0]] + centroids[order[1]]) / 2
        right = np.isin(labels, [k + 1 for k in range(count) if centroids[k] < cut])
        return right, mask & ~right
    largest = labels == order[0] + 1
    occupied = np.flatnonzero(largest.any(axis=0))
    x0, x1 = int(occupied[0]), int(occupied[-1])
    centre = mask.shape[1] / 2
    if x0 < centre < x1:
        lo, hi = x0 + int(0.3 * (x1 - x0)), x0 + int(0.7 * (x1 - x0)) + 1
        cut_column = lo + int(np.argmin(largest[:, lo:hi].sum(axis=0)))
        right = mask & (columns[None, :] < cut_column)
        return right, mask & ~right
    if centroids[order[0]] < centre:
        return mask.copy(), empty
    return empty, mask.copy()


class LungSegmenter:
    """The bundled starter lung U-Net (fp16 on disk, fp32 in memory)."""

    def __init__(self, folder: Path | None = None, device: str = "cpu") -> None:
        from safetensors.torch import load_file

        folder = folder or bundled_dir(NAME)
        weights = folder / "model.safetensors"
        if not weights.exists() or not (folder / "metadata.json").exists():
            raise WeightsMissingError(
                f"the starter lung segmenter is not in {folder}; train it with "
                "`radpilot models train lungs --data DIR`"
            )
        metadata = json.loads((folder / "metadata.json").read_text())
        self.device = device
        self.size = int(metadata["input"]["size"])
        self.threshold = float(metadata.get("threshold", 0.5))
        self.model = build_unet(UNetConfig.model_validate(metadata["network"]))
        state = {
            k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()
        }
        self.model.load_state_dict(state)
        self.model.to(device).eval()
        self.card = ModelCard.model_validate(metadata["card"])
        self.identity = ModelIdentity(
            name=NAME, version=metadata["version"], sha256=metadata["sha256"]
        )
        self._lock = threading.Lock()  # torch modules are not safe to call concurrently

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Per-pixel lung probability at the input's H×W (before any clean-up)."""
        import torch

        check_pixels(pixels)
        inputs, placement = model_input(np.asarray(pixels, dtype=np.float32), self.size)
        batch = torch.from_numpy(inputs[None]).to(self.device)
        with self._lock, torch.no_grad(), precision.inference(self.device):
            logits = self.model(batch)[0, 0].float().cpu().numpy()
        square = 1.0 / (1.0 + np.exp(-logits))
        return unletterbox(square, placement, pixels.shape)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Boolean mask of both lungs, the input's H×W."""
        return clean_mask(self.probabilities(pixels) >= self.threshold)


@process_wide
def starter_lung_segmenter(device: str = "cpu") -> LungSegmenter:
    """The bundled segmenter on `device`, loaded once per process on first use."""
    return LungSegmenter(device=device)

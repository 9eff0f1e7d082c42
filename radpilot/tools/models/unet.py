"""The U-Net shared by the starter segmenters: its shape, and the letterbox that both training
and use put images through, so the model sees identical inputs in training and in use.

The image is letterboxed (aspect kept, padded to a square) rather than centre-cropped as the
classifiers do: a crop would cut off lung apices, bases or the heart's border on portrait
images, and a segmentation must cover the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from radpilot.core.errors import RadpilotError


class UNetConfig(BaseModel):
    """The network's shape; stored in the bundle so the loader rebuilds the trained net."""

    # Six levels (an 8×8 bottleneck at 256 px): the lung bases and the heart's borders are
    # judged from the whole chest's context; the extra level costs little compute there.
    channels: tuple[int, ...] = (16, 32, 64, 128, 256, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2, 2)
    num_res_units: int = 2
    # The anatomy model's softmax classes (background, heart, right lung, left lung).
    out_channels: int = 4


def build_unet(config: UNetConfig | None = None) -> Any:
    """2-D U-Net, one grey input channel, `config.out_channels` output channels of logits."""
    from monai.networks.nets import UNet

    config = config or UNetConfig()
    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=config.out_channels,
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


def equalized(pixels: np.ndarray, bins: int = 256) -> np.ndarray:
    """Histogram-equalized pixels in [0, 1]: each value becomes its rank in the image.

    Radiographs from different sources differ in brightness and contrast far more than in
    anatomy (digitised film against a modern detector's processing); equalizing each image
    makes the heart's border look alike across them, which the anatomy model needs to carry
    what it learned on two sources to others."""
    histogram, edges = np.histogram(pixels, bins=bins, range=(0.0, 1.0))
    cdf = np.cumsum(histogram).astype(np.float64)
    cdf = (cdf - cdf[0]) / max(cdf[-1] - cdf[0], 1.0)
    return np.interp(pixels, edges[1:], cdf).astype(np.float32)


def model_input(
    pixels: np.ndarray, size: int, *, equalize: bool = False
) -> tuple[np.ndarray, Placement]:
    """Study pixels in [0, 1] → (1, size, size) in [-1, 1]; the padding is black (-1), as the
    borders of most radiographs are."""
    canvas, placement = letterbox(equalized(pixels) if equalize else pixels, size, fill=0.0)
    return (canvas * 2.0 - 1.0)[None], placement


def check_pixels(pixels: np.ndarray) -> None:
    """Fail loudly on inputs the model was not trained on (wrong shape or range)."""
    if pixels.ndim != 2 or min(pixels.shape) < 8:
        raise RadpilotError(
            f"segmentation needs one 2-D grey image, got an array of shape {pixels.shape}",
            code="bad_image",
        )
    low, high = float(np.nanmin(pixels)), float(np.nanmax(pixels))
    if not np.isfinite(pixels).all() or low < -1e-3 or high > 1 + 1e-3:
        raise RadpilotError(
            f"segmentation needs pixels in [0, 1], got [{low:.3g}, {high:.3g}]",
            code="bad_image",
        )

"""Similarity registration (rotation, isotropic scale, shift) of a prior radiograph to the current.

Intensity based, in a few lines of torch rather than SimpleITK: both images are centre-cropped
and resized to a small square (the classifier's own crop), the prior is warped with
`grid_sample`, and Adam maximises normalised cross-correlation (NCC) over the central region,
coarse to fine. Chest films of one patient differ mostly by positioning, so a similarity
transform is enough; NCC after registration is the quality score, and a low score means the
two films do not show the same view (lateral vs frontal, strong rotation, different cropping).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from radpilot.tools.imaging import to_model_input

SIZES = (64, 128)  # coarse to fine
STEPS = 80
BORDER = 0.1  # fraction of each side left out of the score (collimation edges, labels)


@dataclass(frozen=True)
class Registration:
    rotation_deg: float  # positive: the prior was turned anticlockwise to match
    scale: float
    shift: tuple[float, float]  # x, y as fractions of the square's side
    score: float  # NCC of the registered prior and the current over the central region
    score_before: float
    size: int

    def shift_pixels(self, side: int) -> tuple[float, float]:
        return self.shift[0] * side / 2, self.shift[1] * side / 2


def square(pixels: np.ndarray, size: int) -> np.ndarray:
    """The centre square at `size`, in [0, 1] (the classifier's crop)."""
    return (to_model_input(pixels, size=size, scale=1.0)[0] + 1.0) / 2.0


def _theta(params: Any) -> Any:
    import torch

    angle, log_scale, tx, ty = params
    scale = torch.exp(log_scale)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack([torch.stack([cos, -sin, tx]), torch.stack([sin, cos, ty])])[None]


def _ncc(a: Any, b: Any, size: int) -> Any:
    import torch

    margin = int(BORDER * size)
    a = a[..., margin:-margin, margin:-margin]
    b = b[..., margin:-margin, margin:-margin]
    a = (a - a.mean()) / (a.std() + 1e-6)
    b = (b - b.mean()) / (b.std() + 1e-6)
    return torch.mean(a * b)


def warp(image: np.ndarray, registration: Registration) -> np.ndarray:
    """The square `image` moved by the registration (same size)."""
    import torch
    import torch.nn.functional as F

    params = torch.tensor(
        [math.radians(registration.rotation_deg), math.log(registration.scale),
         *registration.shift], dtype=torch.float32,
    )  # fmt: skip
    tensor = torch.from_numpy(image.astype(np.float32))[None, None]
    grid = F.affine_grid(_theta(params), list(tensor.shape), align_corners=False)
    moved = F.grid_sample(tensor, grid, padding_mode="border", align_corners=False)
    return moved[0, 0].numpy()


def register(prior: np.ndarray, current: np.ndarray) -> Registration:
    """Register the prior to the current; both are study pixels in [0, 1]."""
    import torch
    import torch.nn.functional as F

    params = torch.zeros(4, requires_grad=True)
    for size in SIZES:
        moving = torch.from_numpy(square(prior, size))[None, None]
        fixed = torch.from_numpy(square(current, size))[None, None]
        optimiser = torch.optim.Adam([params], lr=0.02)
        for _ in range(STEPS):
            grid = F.affine_grid(_theta(params), list(moving.shape), align_corners=False)
            moved = F.grid_sample(moving, grid, padding_mode="border", align_corners=False)
            loss = -_ncc(moved, fixed, size)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    size = SIZES[-1]
    angle, log_scale, tx, ty = (float(v) for v in params.detach())
    result = Registration(
        rotation_deg=math.degrees(angle), scale=math.exp(log_scale), shift=(tx, ty),
        score=0.0, score_before=0.0, size=size,
    )  # fmt: skip
    fixed_np, moving_np = square(current, size), square(prior, size)
    with torch.no_grad():
        before = float(_ncc(torch.from_numpy(moving_np), torch.from_numpy(fixed_np), size))
        after = float(
            _ncc(torch.from_numpy(warp(moving_np, result)), torch.from_numpy(fixed_np), size)
        )
    return Registration(
        rotation_deg=round(result.rotation_deg, 2), scale=round(result.scale, 4),
        shift=(round(tx, 4), round(ty, 4)), score=round(after, 4),
        score_before=round(before, 4), size=size,
    )  # fmt: skip

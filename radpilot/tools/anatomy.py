"""Anatomy masks of a study (lungs, heart) shared by `segment_anatomy` and `measure`.

With the torchxrayvision PSPNet installed, all structures come from it. Otherwise the heart and
both lungs come from the bundled starter anatomy U-Net (trained here on radiologists' heart and
lung masks), through the model hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from radpilot.core.contracts import ModelIdentity
from radpilot.core.errors import RadpilotError
from radpilot.tools.artefacts import png_bytes
from radpilot.tools.study_cache import StudyCache

if TYPE_CHECKING:
    from radpilot.tools.models.hub import ModelHub
    from radpilot.tools.models.pspnet import PspnetSegmenter

CACHED_STUDIES = 32

PSPNET_METHOD = "torchxrayvision ChestX-Det PSPNet"
HEART_FROM_PSPNET = f"heart segmented by the {PSPNET_METHOD}"
STARTER_METHOD = "starter anatomy U-Net (MONAI), trained here on JSRT/SCR and Wingspan masks"
HEART_FROM_STARTER = f"heart segmented by the {STARTER_METHOD}"


@dataclass
class Anatomy:
    """Boolean masks at the image's size; right/left are the patient's sides."""

    right_lung: np.ndarray
    left_lung: np.ndarray
    heart: np.ndarray
    heart_method: str
    models: list[ModelIdentity]
    lung_method: str = STARTER_METHOD
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # PSPNet's other structures

    @property
    def lungs(self) -> np.ndarray:
        return self.right_lung | self.left_lung


@dataclass(frozen=True)
class Span:
    """A horizontal measurement line: row y from column x_start to x_end (inclusive)."""

    y: int
    x_start: int
    x_end: int

    @property
    def width(self) -> int:
        return self.x_end - self.x_start + 1


def both_lung_rows(right: np.ndarray, left: np.ndarray) -> np.ndarray:
    return np.flatnonzero(right.any(axis=1) & left.any(axis=1))


def thoracic_span(right: np.ndarray, left: np.ndarray) -> Span:
    """Widest distance between the lungs' outer borders (the inner thoracic width)."""
    rows = both_lung_rows(right, left)
    if rows.size == 0:
        raise RadpilotError("both lungs must be visible to measure the thorax", code="no_lungs")
    best: Span | None = None
    for y in rows:
        span = Span(int(y), int(np.flatnonzero(right[y])[0]), int(np.flatnonzero(left[y])[-1]))
        if best is None or span.width > best.width:
            best = span
    assert best is not None
    return best


def widest_row(mask: np.ndarray) -> Span:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        raise RadpilotError("the heart could not be found between the lungs", code="no_heart")
    spans = []
    for y in rows:
        columns = np.flatnonzero(mask[y])
        spans.append(Span(int(y), int(columns[0]), int(columns[-1])))
    return max(spans, key=lambda s: s.width)


def cardiothoracic(right: np.ndarray, left: np.ndarray, heart: np.ndarray) -> tuple[Span, Span]:
    """(heart line, thorax line): the ratio is heart.width / thorax.width."""
    return widest_row(heart), thoracic_span(right, left)


def mask_png(mask: np.ndarray) -> bytes:
    """A 1-bit PNG (compressed): 255 inside the structure."""
    from PIL import Image

    return png_bytes(Image.fromarray(mask.astype(bool)).convert("1"))


# Several questions about one image (segment, then measure) cost one segmentation.
_cache: StudyCache[Anatomy] = StudyCache(CACHED_STUDIES)


def anatomy_of(study_id: str, pixels: np.ndarray, hub: ModelHub) -> Anatomy:
    """Lungs (right/left) and heart of one study, computed once per process: from the
    torchxrayvision PSPNet when its weights are installed, else from the starter anatomy
    U-Net."""
    pspnet = hub.pspnet()
    if pspnet is not None:
        return _cache.get_or_compute(f"{study_id}:pspnet", lambda: pspnet_anatomy(pixels, pspnet))
    return _cache.get_or_compute(f"{study_id}:starter", lambda: starter_anatomy(pixels, hub))


def pspnet_anatomy(pixels: np.ndarray, segmenter: PspnetSegmenter) -> Anatomy:
    masks = segmenter.predict(pixels)
    return Anatomy(
        right_lung=masks.pop("Right Lung"), left_lung=masks.pop("Left Lung"),
        heart=masks.pop("Heart"), heart_method=HEART_FROM_PSPNET, lung_method=PSPNET_METHOD,
        models=[segmenter.identity], extra={name.lower(): m for name, m in masks.items()},
    )  # fmt: skip


def starter_anatomy(pixels: np.ndarray, hub: ModelHub) -> Anatomy:
    segmenter = hub.anatomy()
    masks = segmenter.predict(pixels)
    return Anatomy(
        right_lung=masks.right_lung,
        left_lung=masks.left_lung,
        heart=masks.heart,
        heart_method=HEART_FROM_STARTER,
        models=[segmenter.identity],
    )

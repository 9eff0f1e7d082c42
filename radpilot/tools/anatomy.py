"""Anatomy masks of a study (lungs, heart) shared by `segment_anatomy` and `measure`.

With the torchxrayvision PSPNet installed, all structures come from it. Otherwise the lungs
come from the bundled starter U-Net, and, as no starter model segments the heart (there are no
heart masks to train one on here), the heart's width is estimated from brightness profiles
between the lungs: what a reader measures for the cardiothoracic ratio, not the true outline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radpilot.errors import RadpilotError
from radpilot.tools.artefacts import png_bytes
from radpilot.tools.base import ModelIdentity
from radpilot.tools.models.store import ModelStore
from radpilot.tools.study_cache import StudyCache

# Rows of the both-lungs extent (0 = apex, 1 = lowest row with both lungs) searched for the
# heart's borders, and only rows where each lung is at least WIDE_ROW of its widest: above lie
# the great vessels, below the diaphragm domes. Chosen on 250 training-split NIH images
# (Cardiomegaly AUROC of the ratio), never on the test split.
CARDIAC_ROWS = (0.5, 0.8)
WIDE_ROW = 0.5
CACHED_STUDIES = 32

PSPNET_METHOD = "torchxrayvision ChestX-Det PSPNet"
HEART_FROM_PSPNET = f"heart segmented by the {PSPNET_METHOD}"
HEART_FROM_PROFILES = (
    "heart width estimated from brightness profiles between the lungs (dense cardiac shadow "
    "against aerated lung, row by row, lower half of the lung fields); the starter models do "
    "not segment the heart itself"
)


@dataclass
class Anatomy:
    """Boolean masks at the image's size; right/left are the patient's sides."""

    right_lung: np.ndarray
    left_lung: np.ndarray
    heart: np.ndarray
    heart_method: str
    models: list[ModelIdentity]
    lung_method: str = "starter lung U-Net (MONAI), trained here"
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


def heart_from_profiles(pixels: np.ndarray, right: np.ndarray, left: np.ndarray) -> np.ndarray:
    """The cardiac silhouette, row by row, as a mask (Nakamori et al.'s profile idea).

    On each cardiac row (both lungs wide there, between the upper and lower cardiac fractions
    of the lung height), walk out from the thoracic midline while the smoothed image stays
    brighter than halfway between aerated lung (the upper lung fields) and the mediastinum.
    The lung masks cannot give the heart: they include the lung behind it.
    """
    from scipy import ndimage

    heart = np.zeros(right.shape, dtype=bool)
    rows = both_lung_rows(right, left)
    if rows.size == 0:
        return heart
    thorax = thoracic_span(right, left)
    midline = (thorax.x_start + thorax.x_end) // 2
    image = ndimage.gaussian_filter(np.asarray(pixels, dtype=np.float32), 2)
    top, bottom = int(rows[0]), int(rows[-1])
    upper_lungs = right | left
    upper_lungs[top + (bottom - top) // 2 :] = False
    right_widths, left_widths = right.sum(axis=1), left.sum(axis=1)
    lo, hi = (top + f * (bottom - top) for f in CARDIAC_ROWS)
    cardiac = [
        int(y) for y in rows
        if lo <= y <= hi and right_widths[y] >= WIDE_ROW * right_widths.max()
        and left_widths[y] >= WIDE_ROW * left_widths.max()
    ]  # fmt: skip
    if not cardiac or not upper_lungs.any():
        return heart
    band = image[cardiac, max(midline - 10, 0) : midline + 10]
    threshold = (float(np.median(image[upper_lungs])) + float(np.median(band))) / 2
    for y in cardiac:
        bright = image[y] > threshold
        x_right, x_left = midline, midline
        while x_right > thorax.x_start and bright[x_right - 1]:
            x_right -= 1
        while x_left < thorax.x_end and bright[x_left + 1]:
            x_left += 1
        heart[y, x_right : x_left + 1] = True
    return heart


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


def anatomy_of(study_id: str, pixels: np.ndarray, store: ModelStore, device: str) -> Anatomy:
    """Lungs (right/left) and heart of one study, computed once per process: from the
    torchxrayvision PSPNet when its weights are installed, else from the starter lung U-Net
    and brightness profiles."""
    from radpilot.tools.models.pspnet import pspnet_installed

    use_pspnet = pspnet_installed(store)
    if use_pspnet:
        return _cache.get_or_compute(
            f"{study_id}:pspnet", lambda: pspnet_anatomy(pixels, store, device)
        )
    return _cache.get_or_compute(f"{study_id}:starter", lambda: starter_anatomy(pixels, device))


def pspnet_anatomy(pixels: np.ndarray, store: ModelStore, device: str) -> Anatomy:
    from radpilot.tools.models.pspnet import shared_pspnet

    segmenter = shared_pspnet(store.root, device)
    masks = segmenter.predict(pixels)
    return Anatomy(
        right_lung=masks.pop("Right Lung"), left_lung=masks.pop("Left Lung"),
        heart=masks.pop("Heart"), heart_method=HEART_FROM_PSPNET, lung_method=PSPNET_METHOD,
        models=[segmenter.identity], extra={name.lower(): m for name, m in masks.items()},
    )  # fmt: skip


def starter_anatomy(pixels: np.ndarray, device: str = "cpu") -> Anatomy:
    from radpilot.tools.models.lungs import split_left_right, starter_lung_segmenter

    segmenter = starter_lung_segmenter(device)
    right, left = split_left_right(segmenter.predict(pixels))
    return Anatomy(
        right_lung=right,
        left_lung=left,
        heart=heart_from_profiles(pixels, right, left),
        heart_method=HEART_FROM_PROFILES,
        models=[segmenter.identity],
    )

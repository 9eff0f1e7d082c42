"""Promptable segmentation with segment-anything (SAM ViT-B/L/H, MedSAM).

Models are built by segment-anything's own `_build_sam` (which loads the checkpoint) and run
through its `SamPredictor`. The image encoder is the expensive part (a ViT over a 1024-px
image), so its output is cached per study: several prompts on one image cost one encoder pass.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from radpilot.core.contracts import ModelIdentity
from radpilot.shared import process_wide
from radpilot.tools.models.store import ModelStore, WeightsMissingError
from radpilot.tools.study_cache import StudyCache

CACHED_EMBEDDINGS = 8  # a ViT-H embedding is 256x64x64 floats (4 MB)
PREFERENCE = ("medsam-vit-b", "sam-vit-h", "sam-vit-l", "sam-vit-b")  # MedSAM: medical images


class SamArchitecture(BaseModel):
    """The image-encoder dimensions `_build_sam` takes (the rest of SAM is fixed)."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: list[int]


ARCHITECTURES = {
    "vit_b": SamArchitecture(embed_dim=768, depth=12, num_heads=12,
                             global_attn_indexes=[2, 5, 8, 11]),
    "vit_l": SamArchitecture(embed_dim=1024, depth=24, num_heads=16,
                             global_attn_indexes=[5, 11, 17, 23]),
    "vit_h": SamArchitecture(embed_dim=1280, depth=32, num_heads=16,
                             global_attn_indexes=[7, 15, 23, 31]),
}  # fmt: skip
WEIGHTS_ARCHITECTURE = {"sam-vit-b": "vit_b", "sam-vit-l": "vit_l", "sam-vit-h": "vit_h",
                        "medsam-vit-b": "vit_b"}  # fmt: skip


@dataclass
class Prediction:
    mask: np.ndarray  # bool, the image's size
    score: float  # SAM's own predicted IoU of the mask
    encoder_cached: bool


class SamSegmenter:
    def __init__(
        self, checkpoint: Path, architecture: SamArchitecture, identity: ModelIdentity,
        device: str = "cpu",
    ) -> None:  # fmt: skip
        from segment_anything.build_sam import _build_sam
        from segment_anything.predictor import SamPredictor

        model = _build_sam(
            encoder_embed_dim=architecture.embed_dim,
            encoder_depth=architecture.depth,
            encoder_num_heads=architecture.num_heads,
            encoder_global_attn_indexes=architecture.global_attn_indexes,
            checkpoint=str(checkpoint),
        )
        self.predictor = SamPredictor(model.to(device))
        self.identity = identity
        self._embeddings: StudyCache[tuple[Any, Any, Any]] = StudyCache(CACHED_EMBEDDINGS)
        self._lock = threading.Lock()  # the predictor holds one image's state at a time

    def _set_image(self, key: str, pixels: np.ndarray) -> bool:
        """Load the study's embedding into the predictor; True when it came from the cache."""
        predictor = self.predictor
        cached = self._embeddings.get(key)
        if cached is not None:
            predictor.features, predictor.original_size, predictor.input_size = cached
            predictor.is_image_set = True
            return True
        grey = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
        predictor.set_image(np.stack([grey] * 3, axis=-1))
        self._embeddings.put(
            key, (predictor.features, predictor.original_size, predictor.input_size)
        )
        return False

    def segment(
        self, key: str, pixels: np.ndarray, box: tuple[float, float, float, float] | None,
        point: tuple[float, float] | None, point_is_foreground: bool = True,
    ) -> Prediction:  # fmt: skip
        """Best of SAM's three masks for a box (x, y, w, h) and/or a point (x, y) prompt."""
        import torch

        with self._lock, torch.no_grad():
            cached = self._set_image(key, pixels)
            masks, scores, _ = self.predictor.predict(
                point_coords=None if point is None else np.array([point], dtype=np.float32),
                point_labels=None if point is None else np.array([int(point_is_foreground)]),
                box=None if box is None else np.array(
                    [box[0], box[1], box[0] + box[2], box[1] + box[3]], dtype=np.float32
                ),
                multimask_output=box is None,  # one prompt point is ambiguous, a box is not
            )  # fmt: skip
        best = int(np.argmax(scores))
        return Prediction(mask=masks[best].astype(bool), score=float(scores[best]),
                          encoder_cached=cached)  # fmt: skip


def installed_sam(store: ModelStore, wanted: str | None = None) -> str:
    """The weights to use: the requested ones, else the first installed by preference."""
    if wanted is not None:
        store.require(wanted)
        return wanted
    for name in PREFERENCE:
        if store.status(name).state != "missing":
            return name
    raise WeightsMissingError(
        "no segment-anything weights are installed: copy sam_vit_b_01ec64.pth (or ViT-L/H, or "
        "medsam_vit_b.pth) into a folder and run `radpilot models import --from FOLDER`"
    )


@process_wide
def shared_sam(store_root: Path, name: str, device: str) -> SamSegmenter:
    """One segmenter per weights and process (a ViT-H takes seconds to build)."""
    store = ModelStore(store_root)
    path = store.require(name)
    identity = ModelIdentity(name=name, version=path.name, sha256=None)
    return SamSegmenter(path, ARCHITECTURES[WEIGHTS_ARCHITECTURE[name]], identity, device)

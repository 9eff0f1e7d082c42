"""The torchxrayvision ChestX-Det PSPNet: 14 anatomical structures, when its weights are
installed through the model store (it is never downloaded at run time)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from radpilot.core.contracts import ModelIdentity
from radpilot.shared import process_wide
from radpilot.tools.imaging import square_crop_box, to_model_input
from radpilot.tools.models.catalog import CATALOG
from radpilot.tools.models.store import ModelStore

NAME = "xrv-pspnet-chestx-det"


def pspnet_installed(store: ModelStore) -> bool:
    return store.status(NAME).state != "missing"


class PspnetSegmenter:
    """`xrv.baseline_models.chestx_det.PSPNet`, loaded by its own constructor from the store's
    folder (the file name is the one it expects, so it finds the file and downloads nothing)."""

    def __init__(self, store: ModelStore, device: str = "cpu") -> None:
        import torchxrayvision as xrv

        path = store.require(NAME)
        self.model = xrv.baseline_models.chestx_det.PSPNet(cache_dir=str(path.parent))
        self.model.to(device).eval()
        self.device = device
        self.targets: list[str] = list(self.model.targets)
        self.identity = ModelIdentity(name=NAME, version=path.name, sha256=None)
        self._lock = threading.Lock()

    def predict(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """One boolean mask per structure, at the image's size (outside the centre square the
        model saw, nothing)."""
        import torch
        from PIL import Image

        convention = CATALOG[NAME].input
        batch = torch.from_numpy(to_model_input(pixels, convention.size, convention.scale)[None])
        with self._lock, torch.no_grad():
            probabilities = torch.sigmoid(self.model(batch.to(self.device)))[0].cpu().numpy()
        top, left, side = square_crop_box(*pixels.shape)
        masks = {}
        for target, probability in zip(self.targets, probabilities, strict=True):
            resized = Image.fromarray(probability.astype(np.float32), mode="F").resize((side, side))
            full = np.zeros(pixels.shape, dtype=bool)
            full[top : top + side, left : left + side] = np.asarray(resized) > 0.5
            masks[target] = full
        return masks


@process_wide
def shared_pspnet(store_root: Path, device: str) -> PspnetSegmenter:
    return PspnetSegmenter(ModelStore(store_root), device)

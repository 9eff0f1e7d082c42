"""The starter box detector: FCOS (Tian et al. 2019, torchvision's implementation) on the
starter classifier's EfficientNet-Lite0 backbone, for the 8 findings that the NIH data set
has radiologist boxes for.

The backbone's stride-8, -16 and -32 features feed a feature pyramid (P3-P7, so that boxes from
a small nodule to an enlarged heart each have a level); torchvision's FCOS head predicts a
class score, a box and a centre-ness at every location. Inputs follow the classifier's
convention (`to_model_input`: centre square, [-1, 1]), so boxes map back to the original image
the same way Grad-CAM's do.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from radpilot.core.contracts import ModelCard, ModelIdentity
from radpilot.core.findings import BOX_FINDINGS
from radpilot.shared import process_wide
from radpilot.tools.imaging import square_crop_box, to_model_input
from radpilot.tools.models.batching import BATCH_WAIT_S, MicroBatcher, model_batcher
from radpilot.tools.models.store import bundled_dir

PYRAMID_CHANNELS = 64
# Backbone blocks whose outputs feed the pyramid (strides 8, 16, 32 of EfficientNet-Lite0).
TAPPED_BLOCKS = {4: 40, 10: 112, 15: 320}
MAX_DETECTIONS = 3  # per finding, as the Grad-CAM path gives at most 3 regions


class DetectedBox(BaseModel):
    box: tuple[float, float, float, float] = Field(description="x, y, w, h in original pixels")
    score: float


def build_fcos(input_size: int, backbone: Any | None = None, *, head_convs: int = 2) -> Any:
    """FCOS over a Lite0 feature pyramid; `backbone` is an EfficientNet-Lite0 (the starter
    classifier, for training) or None (an untrained one, to load saved weights into).
    `head_convs` (torchvision's default is 4) is 2: the head dominates the cost on CPU."""
    import torch
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead
    from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

    from radpilot.tools.models.efficientnet import build_lite0

    class Lite0Pyramid(torch.nn.Module):
        def __init__(self, body: Any) -> None:
            super().__init__()
            self.stem = torch.nn.Sequential(body._conv_stem, body._bn0, body._swish)
            self.blocks = body._blocks
            self.fpn = FeaturePyramidNetwork(
                list(TAPPED_BLOCKS.values()),
                PYRAMID_CHANNELS,
                extra_blocks=LastLevelP6P7(PYRAMID_CHANNELS, PYRAMID_CHANNELS),
            )
            self.out_channels = PYRAMID_CHANNELS

        def forward(self, x: Any) -> Any:
            x = self.stem(x)
            taps: OrderedDict[str, Any] = OrderedDict()
            for index, block in enumerate(self.blocks):
                x = block(x)
                if index in TAPPED_BLOCKS:
                    taps[f"c{len(taps) + 3}"] = x
            return self.fpn(taps)

    body = backbone if backbone is not None else build_lite0(14, imagenet=False)
    # One anchor per location whose size is the level's stride: FCOS uses it only to assign
    # each box to the level matching its size (torchvision's FCOS convention).
    strides = ((8,), (16,), (32,), (64,), (128,))
    anchors = AnchorGenerator(sizes=strides, aspect_ratios=((1.0,),) * len(strides))
    classes = len(BOX_FINDINGS) + 1
    return FCOS(
        Lite0Pyramid(body),
        num_classes=classes,  # label 0 is FCOS's background
        head=FCOSHead(PYRAMID_CHANNELS, 1, classes, num_convs=head_convs),
        min_size=input_size,
        max_size=input_size,
        image_mean=[0.0],  # inputs are already in the classifier's [-1, 1] convention
        image_std=[1.0],
        anchor_generator=anchors,
        score_thresh=0.01,
        detections_per_img=50,
        topk_candidates=200,
    )


class Detector:
    """A box detector over the classifier's input convention: boxes per finding, in original
    image pixels."""

    def __init__(
        self, model: Any, input_size: int, device: str = "cpu", batch_wait_s: float = BATCH_WAIT_S
    ) -> None:
        self.model = model.eval()  # once: torchvision's FCOS returns losses in train mode
        self.input_size = input_size
        self.device = device
        self._lock = threading.Lock()  # torch modules are not safe to call concurrently
        # Concurrent sessions' localizations share one forward pass, as the classifier's do.
        self.batcher: MicroBatcher[np.ndarray, dict[str, Any]] = model_batcher(
            self._detect_prepared, device, batch_wait_s
        )

    def detect(self, pixels: np.ndarray, finding: str) -> list[DetectedBox]:
        """The strongest boxes for `finding` (at most `MAX_DETECTIONS`), in original pixels."""
        return self.detect_all(pixels).get(finding, [])

    def detect_all(self, pixels: np.ndarray) -> dict[str, list[DetectedBox]]:
        """Every finding's boxes (micro-batched with other sessions' concurrent requests; the
        input is prepared in the caller's thread)."""
        output = self.batcher.submit(to_model_input(pixels, size=self.input_size, scale=1.0))
        top, left, side = square_crop_box(*pixels.shape)
        return boxes_by_finding(output, scale=side / self.input_size, left=left, top=top)

    def _detect_prepared(self, prepared: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        import torch

        images = [torch.from_numpy(p).to(self.device) for p in prepared]
        with self._lock, torch.no_grad():
            return list(self.model(images))


class StarterDetector(Detector):
    """The shipped bundle (`starter/starter-detector/`): weights, metadata and model card.
    `localizes` lists the findings for which it beat Grad-CAM on the validation patients."""

    def __init__(
        self, folder: Path | None = None, device: str = "cpu", batch_wait_s: float = BATCH_WAIT_S
    ) -> None:
        from safetensors.torch import load_file

        folder = folder or bundled_dir("starter-detector")
        metadata = json.loads((folder / "metadata.json").read_text())
        model = build_fcos(metadata["input"]["size"], head_convs=int(metadata["head_convs"]))
        state = load_file(str(folder / "model.safetensors"))
        model.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        )
        super().__init__(model.to(device), int(metadata["input"]["size"]), device, batch_wait_s)
        self.localizes: list[str] = list(metadata["localizes"])
        self.card = ModelCard.model_validate(metadata["card"])
        self.identity = ModelIdentity(
            name="starter-detector", version=metadata["version"], sha256=metadata["sha256"]
        )


def detector_is_shipped() -> bool:
    return (bundled_dir("starter-detector") / "metadata.json").exists()


@process_wide
def shipped_detector(
    device: str = "cpu", batch_wait_s: float = BATCH_WAIT_S
) -> StarterDetector | None:
    """The packaged detector, loaded once per process; None where a build has no bundle."""
    return (
        StarterDetector(device=device, batch_wait_s=batch_wait_s) if detector_is_shipped() else None
    )


def boxes_by_finding(
    output: dict[str, Any], *, scale: float, left: int, top: int
) -> dict[str, list[DetectedBox]]:
    """torchvision's detections (x1, y1, x2, y2 in model pixels, labels 1..8, sorted by score)
    as each finding's strongest boxes in original pixels (x, y, w, h)."""
    found: dict[str, list[DetectedBox]] = {}
    boxes = output["boxes"].detach().cpu().numpy()
    for (x1, y1, x2, y2), label, score in zip(
        boxes, output["labels"].tolist(), output["scores"].tolist(), strict=True
    ):
        finding = BOX_FINDINGS[int(label) - 1]
        degenerate = min(x2 - x1, y2 - y1) * scale < 1  # under a pixel wide or high
        if degenerate or len(found.get(finding, [])) >= MAX_DETECTIONS:
            continue
        xywh = (left + x1 * scale, top + y1 * scale, (x2 - x1) * scale, (y2 - y1) * scale)
        found.setdefault(finding, []).append(
            DetectedBox(box=tuple(round(float(v), 1) for v in xywh), score=round(score, 4))  # type: ignore[arg-type]
        )
    return found

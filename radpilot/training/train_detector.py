"""Training of the starter box detector (`radpilot models train detector`).

Recipe: FCOS on the shipped starter classifier's backbone (trained on the same training
patients, so no held-out patient is seen), fine-tuned on the radiologist boxes of the training
patients' images; the epoch is chosen on the validation patients' boxes by mean T(IoBB>0.1),
the metric that the model card reports; and per finding, the localizer that the
`localize_finding` tool uses (detector or Grad-CAM) is the one with the better validation
T(IoBB>0.1). The test patients are used once, for the model card.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from radpilot.core.findings import BOX_FINDINGS, finding_from_box_label
from radpilot.data.devdata import NihRecord, read_nih, records_in
from radpilot.tools.imaging import read_pixels, square_crop_box, to_model_input
from radpilot.tools.models.detector import Detector, build_fcos
from radpilot.training.evaluate import (
    LocalizationMetrics,
    Localizer,
    evaluate_localization,
    grad_cam_localizer,
)

MIN_BOX_KEPT = 0.5  # a box cropped to less than half its area is dropped from a training crop


class DetectorRecipe(BaseModel):
    epochs: int = 10
    input_size: int = 384
    batch_size: int = 8
    learning_rate: float = 1e-3
    backbone_learning_rate: float = 2e-4
    weight_decay: float = 1e-4
    head_convs: int = 2
    seed: int = 0


class DetectorEpochLog(BaseModel):
    epoch: int
    train_loss: float
    val_mean_t_iobb: float
    seconds: float


class TrainedDetector(BaseModel):
    recipe: DetectorRecipe
    best_epoch: int
    history: list[DetectorEpochLog]
    train_images: int
    train_boxes: int
    val_images: int
    val_localization: list[LocalizationMetrics]
    val_grad_cam_localization: list[LocalizationMetrics]
    localizes: list[str]  # findings where the detector beat Grad-CAM on validation
    wall_seconds: float


@dataclass(frozen=True)
class Sample:
    """One training image at the model's input size, and its boxes (x1, y1, x2, y2, label)."""

    image: np.ndarray
    boxes: list[tuple[float, float, float, float, int]]


def samples_of(records: list[NihRecord], pixels: list[np.ndarray], size: int) -> list[Sample]:
    samples = []
    for record, image in zip(records, pixels, strict=True):
        top, left, side = square_crop_box(*image.shape)
        factor = size / side
        boxes = []
        for box in record.boxes:
            x, y, w, h = box.xywh
            x1, y1 = max(0.0, (x - left) * factor), max(0.0, (y - top) * factor)
            x2, y2 = min(size, (x + w - left) * factor), min(size, (y + h - top) * factor)
            label = BOX_FINDINGS.index(finding_from_box_label(box.label)) + 1
            if x2 - x1 > 1 and y2 - y1 > 1:
                boxes.append((x1, y1, x2, y2, label))
        samples.append(Sample(image=to_model_input(image, size=size, scale=1.0), boxes=boxes))
    return samples


def _augmented(sample: Sample, size: int, rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
    """A random square crop (75-100% of the side) resized back to `size`, with its boxes, and
    brightness/contrast jitter. No flips: the heart's side and laterality matter."""
    import torch
    import torch.nn.functional as F

    side = int(size * rng.uniform(0.75, 1.0))
    x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    crop = torch.from_numpy(sample.image[:, y0 : y0 + side, x0 : x0 + side].copy())
    image = F.interpolate(crop[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    image = (image * rng.uniform(0.85, 1.15) + rng.uniform(-0.1, 0.1)).clamp(-1.5, 1.5)
    factor = size / side
    boxes, labels = [], []
    for x1, y1, x2, y2, label in sample.boxes:
        cx1, cy1 = max(x1, x0), max(y1, y0)
        cx2, cy2 = min(x2, x0 + side), min(y2, y0 + side)
        kept = max(0.0, cx2 - cx1) * max(0.0, cy2 - cy1) / ((x2 - x1) * (y2 - y1))
        if kept >= MIN_BOX_KEPT:
            boxes.append([(cx1 - x0) * factor, (cy1 - y0) * factor,
                          (cx2 - x0) * factor, (cy2 - y0) * factor])  # fmt: skip
            labels.append(label)
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }
    return image, target


def detector_localizer(detector: Detector) -> Localizer:
    """A detector as an evaluation localizer: its top boxes for the finding, and the centre of
    the strongest one (the image centre when it found none)."""

    def localize(
        image: np.ndarray, finding: str
    ) -> tuple[list[tuple[float, float, float, float]], tuple[float, float]]:
        boxes = [found.box for found in detector.detect(image, finding)]
        if not boxes:
            return [], (image.shape[1] / 2, image.shape[0] / 2)
        x, y, w, h = boxes[0]
        return boxes, (x + w / 2, y + h / 2)

    return localize


def detector_wins(
    detector: list[LocalizationMetrics], grad_cam: list[LocalizationMetrics]
) -> list[str]:
    """The findings where the detector's T(IoBB>0.1) beats Grad-CAM's (ties go to Grad-CAM)."""
    cam = {m.finding: m.t_iobb_0_1 for m in grad_cam}
    return [m.finding for m in detector if m.t_iobb_0_1 > cam.get(m.finding, 0.0)]


def mean_t_iobb(metrics: list[LocalizationMetrics]) -> float:
    return float(np.mean([m.t_iobb_0_1 for m in metrics])) if metrics else 0.0


def train_detector(
    data_dir: Path,
    recipe: DetectorRecipe,
    *,
    progress: Callable[[str], None] = print,
) -> tuple[Any, TrainedDetector]:
    """Train on the training patients' boxes; returns the model (best epoch) and its log."""
    import torch

    from radpilot.tools.models.findings import StarterFindingsModel

    started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    records = [r for r in read_nih(data_dir) if r.boxes]
    train, val = records_in(records, "train"), records_in(records, "val")
    progress(f"loading {len(train)} training and {len(val)} validation images with boxes")
    train_samples = samples_of(train, [read_pixels(data_dir / r.image) for r in train],
                               recipe.input_size)  # fmt: skip
    val_pixels = [read_pixels(data_dir / r.image) for r in val]

    classifier = StarterFindingsModel()
    # A copy: training changes the backbone in place, and Grad-CAM below must see the
    # classifier as shipped.
    backbone_start = copy.deepcopy(classifier.model)
    model = build_fcos(recipe.input_size, backbone_start, head_convs=recipe.head_convs)
    backbone: list[Any] = []
    others: list[Any] = []
    for name, parameter in model.named_parameters():
        in_backbone = name.startswith(("backbone.stem", "backbone.blocks"))
        (backbone if in_backbone else others).append(parameter)
    optimiser = torch.optim.AdamW(
        [{"params": backbone, "lr": recipe.backbone_learning_rate},
         {"params": others, "lr": recipe.learning_rate}],
        weight_decay=recipe.weight_decay,
    )  # fmt: skip
    steps = recipe.epochs * int(np.ceil(len(train_samples) / recipe.batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser,
        max_lr=[recipe.backbone_learning_rate, recipe.learning_rate],
        total_steps=steps,
        pct_start=0.15,
    )
    history: list[DetectorEpochLog] = []
    best_state, best_score, best_epoch = None, -1.0, 0
    best_metrics: list[LocalizationMetrics] = []
    for epoch in range(1, recipe.epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        order = rng.permutation(len(train_samples))
        losses = []
        for start in range(0, len(order), recipe.batch_size):
            pairs = [_augmented(train_samples[i], recipe.input_size, rng)
                     for i in order[start : start + recipe.batch_size]]  # fmt: skip
            loss_parts = model([p[0] for p in pairs], [p[1] for p in pairs])
            loss = sum(loss_parts.values())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
        metrics = evaluate_localization(
            detector_localizer(Detector(model, recipe.input_size)),  # in eval mode
            list(BOX_FINDINGS),
            val,
            val_pixels,
        )
        score = mean_t_iobb(metrics)
        entry = DetectorEpochLog(
            epoch=epoch,
            train_loss=float(np.mean(losses)),
            val_mean_t_iobb=round(score, 4),
            seconds=round(time.perf_counter() - epoch_started, 1),
        )
        history.append(entry)
        progress(
            f"epoch {epoch}/{recipe.epochs}: loss {entry.train_loss:.4f}, validation mean "
            f"T(IoBB>0.1) {score:.3f} ({entry.seconds:.0f} s)"
        )
        if score > best_score:
            best_score, best_epoch, best_metrics = score, epoch, metrics
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    progress("Grad-CAM on the validation boxes, to choose each finding's localizer")
    grad_cam = evaluate_localization(
        grad_cam_localizer(classifier), list(BOX_FINDINGS), val, val_pixels
    )
    localizes = detector_wins(best_metrics, grad_cam)
    return model, TrainedDetector(
        recipe=recipe,
        best_epoch=best_epoch,
        history=history,
        train_images=len(train),
        train_boxes=sum(len(s.boxes) for s in train_samples),
        val_images=len(val),
        val_localization=best_metrics,
        val_grad_cam_localization=grad_cam,
        localizes=localizes,
        wall_seconds=round(time.perf_counter() - started, 1),
    )

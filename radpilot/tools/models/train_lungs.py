"""Training and evaluation of the starter lung segmenter (`radpilot models train lungs`).

Recipe: a small MONAI U-Net from scratch on the COVID-collection images with V7 lung masks of
the training patients, Dice + BCE loss, AdamW with warm-up and cosine decay, light augmentation;
the epoch with the best validation-patient Dice is kept. Test patients are used once, for the
model card (Dice and HD95 at the masks' own resolution).

Augmentation: small affine (rotation, scale, shift) and brightness/contrast/gamma, applied to
image and mask alike. No left-right flips: the lungs are not mirror images (the heart
indents the left lung, the left hemidiaphragm sits lower) and a flipped radiograph is not an
anatomy the model will meet, so flips would spend its small capacity on impossible inputs.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from radpilot.tools.models.devdata import (
    LungMaskRecord,
    Split,
    read_lung_masks,
    records_in,
    split_of,
)
from radpilot.tools.models.lungs import UNetConfig, build_unet, model_input

SPLITS: tuple[Split, ...] = ("train", "val", "test")


class LungRecipe(BaseModel):
    input_size: int = Field(default=256, ge=64, description="Square model input (pixels).")
    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=8, ge=1)
    learning_rate: float = Field(default=3e-3, gt=0, description="Peak, after warm-up.")
    weight_decay: float = 1e-4
    augmentation: float = Field(
        default=1.0, ge=0, description="Scales every augmentation range; 0 turns it off."
    )
    network: UNetConfig = Field(default_factory=UNetConfig)
    threads: int = Field(default=2, ge=1, description="torch CPU threads.")
    max_minutes: float | None = Field(
        default=28.0, description="Stop after the epoch that passes this (a safety net)."
    )
    seed: int = 0


class LungEpochLog(BaseModel):
    epoch: int
    train_loss: float
    val_dice: float
    seconds: float


class TrainedLungs(BaseModel):
    recipe: LungRecipe
    best_epoch: int
    best_val_dice: float
    history: list[LungEpochLog]
    train_images: int
    train_patients: int
    val_images: int
    val_patients: int
    wall_seconds: float
    stopped_early: bool = False


class SplitCount(BaseModel):
    images: int
    patients: int


class LungImageScore(BaseModel):
    image: str
    dice: float
    hd95: float = Field(description="Pixels of the mask's own resolution.")


class LungEvaluation(BaseModel):
    model: str
    split: str
    images: int
    patients: int
    dice_mean: float
    dice_median: float
    dice_min: float
    hd95_mean: float
    hd95_median: float
    hd95_max: float
    empty_predictions: int = Field(description="Images with no lung found (HD95 = diagonal).")
    splits: dict[str, SplitCount] = Field(description="All masked images per patient split.")
    per_image: list[LungImageScore]


def split_counts(records: list[LungMaskRecord]) -> dict[str, SplitCount]:
    return {
        split: SplitCount(
            images=len(members := records_in(records, split)),
            patients=len({r.patient_id for r in members}),
        )
        for split in SPLITS
    }


def load_pixels(path: Path) -> np.ndarray:
    """An image through the same decoder as user uploads: float32 in [0, 1]."""
    from radpilot.tools.dicom import Deidentifier
    from radpilot.tools.imaging import decode_image

    image = decode_image(
        path.read_bytes(),
        filename=path.name,
        max_megapixels=50,
        deidentifier=Deidentifier(b"training-has-no-identities"),
    )
    return image.pixels


def load_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 127


def load_pairs(
    records: list[LungMaskRecord], data_dir: Path, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Letterboxed inputs (N, 1, size, size) and binary masks (N, 1, size, size)."""
    from radpilot.tools.models.lungs import letterbox

    inputs, masks = [], []
    for record in records:
        pixels, _ = model_input(load_pixels(data_dir / record.image), size)
        mask, _ = letterbox(load_mask(data_dir / record.lung_mask).astype(np.float32), size)
        inputs.append(pixels)
        masks.append((mask >= 0.5)[None].astype(np.float32))
    return np.stack(inputs), np.stack(masks)


def _augment(images: Any, masks: Any, strength: float, generator: Any) -> tuple[Any, Any]:
    """Same random affine for image and mask; intensity changes for the image only."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = images.shape
    if strength <= 0:
        return images, masks

    def uniform(low: float, high: float, *shape: int) -> Any:
        return torch.empty(*shape).uniform_(low, high, generator=generator)

    angle = uniform(-10, 10, n) * strength * torch.pi / 180
    scale = 1 + uniform(-0.1, 0.1, n) * strength
    shift = uniform(-0.06, 0.06, n, 2) * strength
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    # Pad with black (-1), like the letterbox: sample the image shifted to [0, 2].
    moved = F.grid_sample(images + 1, grid, align_corners=False) - 1
    moved_masks = (F.grid_sample(masks, grid, align_corners=False) >= 0.5).float()
    unit = ((moved + 1) / 2).clamp(0, 1)
    gamma = torch.exp(uniform(-0.25, 0.25, n, 1, 1, 1) * strength)
    contrast = 1 + uniform(-0.15, 0.15, n, 1, 1, 1) * strength
    brightness = uniform(-0.1, 0.1, n, 1, 1, 1) * strength
    unit = ((unit**gamma - 0.5) * contrast + 0.5 + brightness).clamp(0, 1)
    return unit * 2 - 1, moved_masks


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    total = int(prediction.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((prediction & truth).sum()) / total


def _val_dice(model: Any, inputs: np.ndarray, masks: np.ndarray, batch_size: int) -> float:
    """Mean per-image Dice at the model's resolution (cheap; used only to pick the epoch)."""
    import torch

    model.eval()
    scores = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            logits = model(torch.from_numpy(inputs[start : start + batch_size])).numpy()
            for predicted, truth in zip(
                logits > 0, masks[start : start + batch_size] > 0.5, strict=True
            ):
                scores.append(dice(predicted, truth))
    return float(np.mean(scores))


def _warmup_cosine(steps: int) -> Callable[[int], float]:
    """Linear warm-up over the first 10% of steps, then cosine decay to 1% of the peak (a
    one-cycle shape that, unlike OneCycleLR, also works for a 1-epoch smoke run)."""
    warmup = max(1, steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return 0.01 + 0.99 * 0.5 * (1 + float(np.cos(np.pi * progress)))

    return factor


def train_lungs(
    data_dir: Path,
    recipe: LungRecipe,
    *,
    progress: Callable[[str], None] = print,
) -> tuple[Any, TrainedLungs]:
    """Train on the training patients; returns the model (best validation epoch) and a log."""
    import torch
    from monai.losses import DiceCELoss

    started = time.perf_counter()
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    records = read_lung_masks(data_dir)
    train, val = records_in(records, "train"), records_in(records, "val")
    counts = split_counts(records)
    progress(
        f"loading {len(train)} training images ({counts['train'].patients} patients) and "
        f"{len(val)} validation images ({counts['val'].patients} patients)"
    )
    train_x, train_y = (torch.from_numpy(a) for a in load_pairs(train, data_dir, recipe.input_size))
    val_x, val_y = load_pairs(val, data_dir, recipe.input_size)

    model = build_unet(recipe.network)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay
    )
    steps = recipe.epochs * int(np.ceil(len(train) / recipe.batch_size))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, _warmup_cosine(steps))
    # A single output channel: MONAI applies BCE-with-logits for the CE part.
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    history: list[LungEpochLog] = []
    best_state, best_score, best_epoch = None, -1.0, 0
    stopped_early = False
    for epoch in range(1, recipe.epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=generator)
        losses = []
        for start in range(0, len(train), recipe.batch_size):
            index = order[start : start + recipe.batch_size]
            images, masks = _augment(train_x[index], train_y[index], recipe.augmentation, generator)
            loss = loss_fn(model(images), masks)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
        score = _val_dice(model, val_x, val_y, recipe.batch_size)
        entry = LungEpochLog(
            epoch=epoch,
            train_loss=float(np.mean(losses)),
            val_dice=score,
            seconds=time.perf_counter() - epoch_started,
        )
        history.append(entry)
        elapsed = time.perf_counter() - started
        progress(
            f"epoch {epoch}/{recipe.epochs}: loss {entry.train_loss:.4f}, validation Dice "
            f"{score:.4f} ({entry.seconds:.0f} s, {elapsed / 60:.1f} min in all)"
        )
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if recipe.max_minutes is not None and elapsed > recipe.max_minutes * 60:
            stopped_early = epoch < recipe.epochs
            if stopped_early:
                progress(f"stopping: past the {recipe.max_minutes} min budget")
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return model, TrainedLungs(
        recipe=recipe,
        best_epoch=best_epoch,
        best_val_dice=best_score,
        history=history,
        train_images=len(train),
        train_patients=counts["train"].patients,
        val_images=len(val),
        val_patients=counts["val"].patients,
        wall_seconds=time.perf_counter() - started,
        stopped_early=stopped_early,
    )


def hd95(prediction: np.ndarray, truth: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance in pixels (MONAI); the image diagonal
    when either mask is empty (the worst possible, rather than NaN that would vanish from a
    mean)."""
    import torch
    from monai.metrics import compute_hausdorff_distance

    if not prediction.any() or not truth.any():
        return float(np.hypot(*prediction.shape))
    with warnings.catch_warnings():
        # MONAI 1.6 passes its own deprecated argument internally; nothing to fix here.
        warnings.simplefilter("ignore", FutureWarning)
        value = compute_hausdorff_distance(
            torch.from_numpy(prediction[None, None].astype(np.float32)),
            torch.from_numpy(truth[None, None].astype(np.float32)),
            include_background=True,
            percentile=95,
        )
    return float(value.item())


def evaluate_lungs(
    segmenter: Any,
    records: list[LungMaskRecord],
    data_dir: Path,
    *,
    split: str,
    all_records: list[LungMaskRecord] | None = None,
    progress: Callable[[str], None] = print,
) -> LungEvaluation:
    """Dice and HD95 of `segmenter.predict` against each record's mask, at the mask's own
    resolution (the 512-px development images)."""
    if not records:
        raise ValueError("no images to evaluate")
    progress(f"segmenting {len(records)} images ({split})")
    scores = []
    empty = 0
    for record in records:
        truth = load_mask(data_dir / record.lung_mask)
        predicted = segmenter.predict(load_pixels(data_dir / record.image))
        if predicted.shape != truth.shape:
            raise ValueError(
                f"{record.image}: mask {predicted.shape} differs from truth {truth.shape}"
            )
        empty += int(not predicted.any())
        scores.append(
            LungImageScore(
                image=record.image, dice=dice(predicted, truth), hd95=hd95(predicted, truth)
            )
        )
    dices = np.array([s.dice for s in scores])
    distances = np.array([s.hd95 for s in scores])
    identity = getattr(segmenter, "identity", None)
    return LungEvaluation(
        model=identity.name if identity is not None else type(segmenter).__name__,
        split=split,
        images=len(records),
        patients=len({r.patient_id for r in records}),
        dice_mean=float(dices.mean()),
        dice_median=float(np.median(dices)),
        dice_min=float(dices.min()),
        hd95_mean=float(distances.mean()),
        hd95_median=float(np.median(distances)),
        hd95_max=float(distances.max()),
        empty_predictions=empty,
        splits=split_counts(all_records if all_records is not None else records),
        per_image=scores,
    )


def records_of_split(records: list[LungMaskRecord], split: str) -> list[LungMaskRecord]:
    """`records_in` plus "all"."""
    if split == "all":
        return list(records)
    return [r for r in records if split_of(r.patient_id) == split]

"""Training of the starter anatomy segmenter (`radpilot models train anatomy`).

One MONAI U-Net with four softmax classes (background, heart, right lung, left lung) trained
from scratch on two kinds of labels:

- `cardiac/` (JSRT with SCR masks, Wingspan): heart, right-lung and left-lung masks;
- the COVID collection's V7 lung masks: both lungs as one label and no heart at all.

A partly labelled image is not a wrong image. Each pixel carries the *set* of classes its
labels allow: a COVID lung pixel is "right or left lung", a COVID non-lung pixel is
"background or heart" (it may be heart; nobody drew it), a `cardiac/` pixel is exactly one
class (both heart and lung where the radiologists' masks overlap by a pixel or two). The
cross-entropy is the marginal likelihood of the allowed set, -log Σ_{c allowed} p_c, so a
missing label is neither background nor a guess. Dice terms are taken only over the images
that label the structure (heart: `cardiac/`; right/left lung: `cardiac/`; both lungs: all).

The epoch with the best validation-patient score (mean of heart Dice, lung Dice on
`cardiac/` and lung Dice on COVID) is kept; the test patients are used once, for the model
card. Augmentation: small affine and intensity changes, no flips (a mirrored chest is not an
anatomy the model will meet: the heart would sit on the right, and right and left would swap).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from radpilot.data.devdata import (
    CardiacRecord,
    read_cardiac,
    read_lung_masks,
    records_in,
)
from radpilot.tools.imaging import read_pixels
from radpilot.tools.models.anatomy_model import BACKGROUND, HEART, LEFT_LUNG, RIGHT_LUNG
from radpilot.tools.models.unet import UNetConfig, build_unet, letterbox, model_input
from radpilot.training.evaluate_anatomy import load_mask


class AnatomyRecipe(BaseModel):
    input_size: int = Field(default=256, ge=64, description="Square model input (pixels).")
    epochs: int = Field(default=60, ge=1)
    batch_size: int = Field(default=8, ge=1)
    learning_rate: float = Field(default=3e-3, gt=0, description="Peak, after warm-up.")
    weight_decay: float = 1e-4
    augmentation: float = Field(
        default=1.0, ge=0, description="Scales every augmentation range; 0 turns it off."
    )
    network: UNetConfig = Field(default_factory=UNetConfig)
    equalize: bool = Field(
        default=True, description="Histogram-equalize each image (training and use)."
    )
    use_covid_lungs: bool = Field(
        default=True, description="Add the COVID images (lung label only, no heart)."
    )
    threads: int = Field(default=2, ge=1, description="torch CPU threads.")
    max_minutes: float | None = Field(
        default=45.0, description="Stop after the epoch that passes this (a safety net)."
    )
    seed: int = 0


class AnatomyEpochLog(BaseModel):
    epoch: int
    train_loss: float
    val_heart_dice: float
    val_lung_dice: float
    val_covid_lung_dice: float | None
    val_score: float
    seconds: float


class TrainedAnatomy(BaseModel):
    recipe: AnatomyRecipe
    best_epoch: int
    best_val_score: float
    history: list[AnatomyEpochLog]
    train_images: dict[str, int] = Field(description="Per source: cardiac, covid.")
    train_patients: int
    val_images: dict[str, int]
    val_patients: int
    wall_seconds: float
    stopped_early: bool = False


def _square(path: Path, size: int) -> np.ndarray:
    mask, _ = letterbox(load_mask(path).astype(np.float32), size)
    return mask >= 0.5


def cardiac_allowed(record: CardiacRecord, data_dir: Path, size: int) -> np.ndarray:
    """(4, size, size) allowed-class sets of a fully labelled image."""
    heart = _square(data_dir / record.heart_mask, size)
    right = _square(data_dir / record.right_lung_mask, size)
    left = _square(data_dir / record.left_lung_mask, size)
    return np.stack([~(heart | right | left), heart, right, left])


def lungs_only_allowed(lungs: np.ndarray) -> np.ndarray:
    """(4, H, W) allowed sets where only "both lungs" is labelled: lung pixels may be either
    lung, the rest background or heart."""
    return np.stack([~lungs, ~lungs, lungs, lungs])


def load_training_set(
    data_dir: Path, split: str, size: int, use_covid: bool, equalize: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int], set[str]]:
    """Inputs (N, 1, S, S), allowed sets (N, 4, S, S) as float, a per-image "fully labelled"
    flag, image counts per source and the patient ids."""
    inputs, allowed, full = [], [], []
    cardiac = records_in(read_cardiac(data_dir), split)  # type: ignore[arg-type]
    for record in cardiac:
        pixels = read_pixels(data_dir / record.image)
        inputs.append(model_input(pixels, size, equalize=equalize)[0])
        allowed.append(cardiac_allowed(record, data_dir, size))
        full.append(True)
    covid = records_in(read_lung_masks(data_dir), split) if use_covid else []  # type: ignore[arg-type]
    for lung_record in covid:
        pixels = read_pixels(data_dir / lung_record.image)
        inputs.append(model_input(pixels, size, equalize=equalize)[0])
        allowed.append(lungs_only_allowed(_square(data_dir / lung_record.lung_mask, size)))
        full.append(False)
    patients = {r.patient_id for r in cardiac} | {r.patient_id for r in covid}
    counts = {"cardiac": len(cardiac), "covid": len(covid)}
    return (
        np.stack(inputs).astype(np.float32),
        np.stack(allowed).astype(np.float32),
        np.array(full, dtype=bool),
        counts,
        patients,
    )


def _augment(images: Any, allowed: Any, strength: float, generator: Any) -> tuple[Any, Any]:
    """Same random affine for the image and its allowed sets (nearest, so a set stays a set);
    intensity changes for the image only. Pixels moved in from outside are background."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = images.shape
    if strength <= 0:
        return images, allowed

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
    moved = F.grid_sample(images + 1, grid, align_corners=False) - 1
    sets = F.grid_sample(allowed, grid, mode="nearest", align_corners=False)
    outside = sets.sum(dim=1) == 0
    sets[:, BACKGROUND][outside] = 1.0
    unit = ((moved + 1) / 2).clamp(0, 1)
    gamma = torch.exp(uniform(-0.25, 0.25, n, 1, 1, 1) * strength)
    contrast = 1 + uniform(-0.15, 0.15, n, 1, 1, 1) * strength
    brightness = uniform(-0.1, 0.1, n, 1, 1, 1) * strength
    unit = ((unit**gamma - 0.5) * contrast + 0.5 + brightness).clamp(0, 1)
    return unit * 2 - 1, sets


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


def _soft_dice_loss(probability: Any, target: Any) -> Any:
    """1 - Dice over the whole batch (one score for the structure)."""
    overlap = (probability * target).sum()
    return 1 - (2 * overlap + 1) / (probability.sum() + target.sum() + 1)


def partial_label_loss(logits: Any, allowed: Any, full: Any) -> Any:
    """Marginal cross-entropy over each pixel's allowed classes, plus Dice of the heart and
    each lung on the fully labelled images and of both lungs on all images."""
    import torch

    log_p = torch.log_softmax(logits, dim=1)
    masked = log_p.masked_fill(allowed < 0.5, float("-inf"))
    cross_entropy = -torch.logsumexp(masked, dim=1).mean()
    p = log_p.exp()
    dices = [_soft_dice_loss(p[:, RIGHT_LUNG] + p[:, LEFT_LUNG], allowed[:, RIGHT_LUNG])]
    if bool(full.any()):
        structures = (HEART, RIGHT_LUNG, LEFT_LUNG)
        dices += [_soft_dice_loss(p[full, c], allowed[full, c]) for c in structures]
    return cross_entropy + torch.stack(dices).mean()


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    total = int(prediction.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((prediction & truth).sum()) / total


def _validate(
    model: Any, inputs: np.ndarray, allowed: np.ndarray, full: np.ndarray, batch_size: int
) -> tuple[float, float, float | None]:
    """(heart Dice, lung Dice) on fully labelled images and both-lung Dice on COVID images,
    per image at the model's resolution (cheap; used only to pick the epoch)."""
    import torch

    model.eval()
    heart, lungs, covid = [], [], []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            labels = model(torch.from_numpy(inputs[start : start + batch_size])).argmax(1).numpy()
            for label, sets, is_full in zip(
                labels,
                allowed[start : start + batch_size] > 0.5,
                full[start : start + batch_size],
                strict=True,
            ):
                if is_full:
                    heart.append(_dice(label == HEART, sets[HEART]))
                    sides = [_dice(label == c, sets[c]) for c in (RIGHT_LUNG, LEFT_LUNG)]
                    lungs.append(float(np.mean(sides)))
                else:
                    either = (label == RIGHT_LUNG) | (label == LEFT_LUNG)
                    covid.append(_dice(either, sets[RIGHT_LUNG]))
    return float(np.mean(heart)), float(np.mean(lungs)), float(np.mean(covid)) if covid else None


def train_anatomy(
    data_dir: Path,
    recipe: AnatomyRecipe,
    *,
    progress: Callable[[str], None] = print,
) -> tuple[Any, TrainedAnatomy]:
    """Train on the training patients; returns the model (best validation epoch) and a log."""
    import torch

    started = time.perf_counter()
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    options = (recipe.input_size, recipe.use_covid_lungs, recipe.equalize)
    train_x, train_sets, train_full, train_counts, train_patients = load_training_set(
        data_dir, "train", *options
    )
    val_x, val_sets, val_full, val_counts, val_patients = load_training_set(
        data_dir, "val", *options
    )
    progress(
        f"loaded {train_counts} training images ({len(train_patients)} patients) and "
        f"{val_counts} validation images ({len(val_patients)} patients)"
    )
    images, sets, flags = (torch.from_numpy(a) for a in (train_x, train_sets, train_full))
    model = build_unet(recipe.network)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay
    )
    steps = recipe.epochs * int(np.ceil(len(images) / recipe.batch_size))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, _warmup_cosine(steps))
    history: list[AnatomyEpochLog] = []
    best_state, best_score, best_epoch = None, -1.0, 0
    stopped_early = False
    for epoch in range(1, recipe.epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        order = torch.randperm(len(images), generator=generator)
        losses = []
        for start in range(0, len(images), recipe.batch_size):
            index = order[start : start + recipe.batch_size]
            batch, allowed = _augment(images[index], sets[index], recipe.augmentation, generator)
            loss = partial_label_loss(model(batch), allowed, flags[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
        heart, lungs, covid_lungs = _validate(model, val_x, val_sets, val_full, recipe.batch_size)
        parts = [heart, lungs] + ([covid_lungs] if covid_lungs is not None else [])
        score = float(np.mean(parts))
        entry = AnatomyEpochLog(
            epoch=epoch, train_loss=float(np.mean(losses)), val_heart_dice=heart,
            val_lung_dice=lungs, val_covid_lung_dice=covid_lungs, val_score=score,
            seconds=time.perf_counter() - epoch_started,
        )  # fmt: skip
        history.append(entry)
        elapsed = time.perf_counter() - started
        covid_text = "" if covid_lungs is None else f", COVID lungs {covid_lungs:.4f}"
        progress(
            f"epoch {epoch}/{recipe.epochs}: loss {entry.train_loss:.4f}, validation Dice heart "
            f"{heart:.4f}, lungs {lungs:.4f}{covid_text} ({entry.seconds:.0f} s, "
            f"{elapsed / 60:.1f} min in all)"
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
    return model, TrainedAnatomy(
        recipe=recipe,
        best_epoch=best_epoch,
        best_val_score=best_score,
        history=history,
        train_images=train_counts,
        train_patients=len(train_patients),
        val_images=val_counts,
        val_patients=len(val_patients),
        wall_seconds=time.perf_counter() - started,
        stopped_early=stopped_early,
    )

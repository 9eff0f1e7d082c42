"""Packaging and held-out evaluation of the starter box detector: fp16 weights,
`metadata.json` (read by `StarterDetector`) and a Markdown model card that puts the detector and
Grad-CAM side by side on the test patients' radiologist boxes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from radpilot import __version__
from radpilot.core.contracts import ModelCard
from radpilot.core.findings import BOX_FINDINGS
from radpilot.data.devdata import NihRecord, read_nih, records_in
from radpilot.tools.imaging import read_pixels
from radpilot.tools.models.catalog import CATALOG
from radpilot.tools.models.detector import Detector, StarterDetector
from radpilot.tools.models.findings import FindingsModel, StarterFindingsModel
from radpilot.training.evaluate import (
    LocalizationMetrics,
    evaluate_localization,
    grad_cam_localizer,
)
from radpilot.training.starter_bundle import (
    SPLIT_RULE,
    bundle_header,
    card_opening,
    data_licence,
)
from radpilot.training.train_classifier import save_state
from radpilot.training.train_detector import TrainedDetector, detector_localizer

# Wang et al. 2017 (ChestX-ray8), T(IoBB>0.1) per class: the published reference.
WANG_2017_T_IOBB = {
    "Atelectasis": 0.72, "Cardiomegaly": 0.99, "Effusion": 0.87, "Infiltration": 0.65,
    "Mass": 0.69, "Nodule": 0.38, "Pneumonia": 0.63, "Pneumothorax": 0.48,
}  # fmt: skip
DETECTOR_LIMITATIONS = [
    "Trained on about 400 radiologist boxes of the NIH ChestX-ray14 box subset: few examples "
    "per finding (28-80); boxes are approximate and small findings (nodules) are often missed.",
    "Used by `localize_finding` only for the findings where it beat Grad-CAM on the validation "
    "patients; elsewhere Grad-CAM is used.",
    "Frontal (PA/AP) adult radiographs only. Not for diagnosis: boxes show where to look.",
]


class DetectorEvaluation(BaseModel):
    images: int
    patients: int
    detector: list[LocalizationMetrics]
    grad_cam: list[LocalizationMetrics]


def evaluate_detector(
    detector: Detector,
    classifier: FindingsModel,
    records: list[NihRecord],
    data_dir: Path,
    *,
    progress: Callable[[str], None] = print,
) -> DetectorEvaluation:
    """Both localizers on the same images' boxes (images without boxes are skipped)."""
    boxed = [record for record in records if record.boxes]
    pixels = [read_pixels(data_dir / r.image) for r in boxed]
    progress(f"detector on {sum(len(r.boxes) for r in boxed)} boxes of {len(boxed)} images")
    detected = evaluate_localization(
        detector_localizer(detector), list(BOX_FINDINGS), boxed, pixels
    )
    progress("Grad-CAM of the findings classifier on the same boxes")
    grad_cam = evaluate_localization(
        grad_cam_localizer(classifier), list(BOX_FINDINGS), boxed, pixels
    )
    return DetectorEvaluation(
        images=len(boxed),
        patients=len({r.patient_id for r in boxed}),
        detector=detected,
        grad_cam=grad_cam,
    )


def write_detector_bundle(
    model: Any,
    trained: TrainedDetector,
    data_dir: Path,
    folder: Path,
    *,
    progress: Callable[[str], None] = print,
) -> DetectorEvaluation:
    weights = CATALOG["starter-detector"]
    sha256 = save_state(model, folder / weights.filename)
    card = ModelCard(
        name=weights.name,
        version=__version__,
        architecture=weights.architecture,
        source="trained by the radpilot project: `radpilot models train detector`",
        licence="Weights: Apache-2.0. " + data_licence("efficientnet-lite0"),
        sha256=sha256,
        intended_use=weights.intended_use,
        limitations=DETECTOR_LIMITATIONS,
        training_data=f"{trained.train_boxes} boxes on {trained.train_images} NIH images "
        f"(training patients); {trained.val_images} images for epoch and localizer selection",
    )
    metadata: dict[str, Any] = {
        **bundle_header(weights, sha256, trained.recipe.input_size),
        "head_convs": trained.recipe.head_convs,
        "localizes": trained.localizes,
        "training": trained.model_dump(mode="json"),
        "split": SPLIT_RULE,
        "card": card.model_dump(mode="json"),
    }
    _write(folder / "metadata.json", metadata)
    progress("evaluating the saved (fp16) detector and Grad-CAM on the held-out test patients")
    test = records_in(read_nih(data_dir), "test")
    evaluation = evaluate_detector(
        StarterDetector(folder), StarterFindingsModel(), test, data_dir, progress=progress
    )
    card.metrics = {f"test_t_iobb_{m.finding}": m.t_iobb_0_1 for m in evaluation.detector}
    metadata["card"] = card.model_dump(mode="json")
    metadata["evaluation"] = evaluation.model_dump(mode="json")
    _write(folder / "metadata.json", metadata)
    (folder / "README.md").write_text(render_detector_card(metadata))
    return evaluation


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def localization_table(evaluation: DetectorEvaluation) -> list[str]:
    """Markdown rows: each finding's boxes, both localizers' T(IoBB>0.1) and pointing game,
    and Wang et al. 2017's T(IoBB>0.1)."""
    cam = {m.finding: m for m in evaluation.grad_cam}
    lines = [
        "| finding | boxes | detector T(IoBB>0.1) | Grad-CAM T(IoBB>0.1) | detector pointing "
        "| Grad-CAM pointing | Wang et al. 2017 T(IoBB>0.1) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in evaluation.detector:
        other = cam[m.finding]
        lines.append(
            f"| {m.finding} | {m.boxes} | {m.t_iobb_0_1:.2f} | {other.t_iobb_0_1:.2f} | "
            f"{m.pointing_game:.2f} | {other.pointing_game:.2f} | "
            f"{WANG_2017_T_IOBB[m.finding]:.2f} |"
        )
    return lines


def render_detector_card(metadata: dict[str, Any]) -> str:
    card, training = metadata["card"], metadata["training"]
    evaluation = DetectorEvaluation.model_validate(metadata["evaluation"])
    history = ", ".join(f"{e['val_mean_t_iobb']:.3f}" for e in training["history"])
    lines = [
        *card_opening(
            card,
            "fp16, run in fp32",
            "> **Not for diagnosis.** Decision support: boxes show where to look.",
        ),
        f"Split {metadata['split']}. Training: {card['training_data']}. Test: "
        f"{evaluation.images} images of {evaluation.patients} patients never used in training "
        "or selection (neither by this detector nor by the classifier it starts from).",
        "",
        "## Recipe",
        f"`{json.dumps(training['recipe'])}`; trained in {training['wall_seconds'] / 60:.1f} "
        f"min on the machine that built it. Validation mean T(IoBB>0.1) per epoch: {history}; "
        f"best epoch {training['best_epoch']}. Findings where the detector beat Grad-CAM on the "
        f"validation boxes, so `localize_finding` uses it: "
        f"{', '.join(metadata['localizes']) or 'none'}.",
        "",
        "## Held-out localization (test patients), detector and Grad-CAM side by side",
        "",
        *localization_table(evaluation),
        "",
        "T(IoBB>0.1): share of radiologist boxes that one of the localizer's (at most 3) boxes "
        "overlaps by more than 10% of its own area; pointing game: share of boxes containing "
        "the localizer's single point (the strongest box's centre, or Grad-CAM's hottest "
        "pixel). Wang et al. 2017 trained on the full NIH set (~112k images).",
        "",
        "Reproduce: `radpilot models evaluate starter-detector --data ../shared/data/cxr "
        "--split test`.",
        "",
    ]
    return "\n".join(lines)

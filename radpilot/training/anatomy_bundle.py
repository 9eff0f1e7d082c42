"""Packaging and held-out evaluation of the starter anatomy segmenter: fp16 weights,
`metadata.json` (read by `AnatomySegmenter`) and a Markdown model card with the test patients'
Dice and HD95 per structure, the CTR against the reference CTR and against NIH Cardiomegaly
labels."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from radpilot import __version__
from radpilot.core.contracts import ModelCard
from radpilot.data.devdata import read_cardiac, read_lung_masks, records_in
from radpilot.tools.models.anatomy_model import CLASSES, NAME, AnatomySegmenter
from radpilot.tools.models.catalog import CATALOG
from radpilot.training.evaluate_anatomy import AnatomyEvaluation, evaluate_anatomy
from radpilot.training.evaluate_ctr import evaluate_ctr
from radpilot.training.starter_bundle import SPLIT_RULE, bundle_header, card_opening
from radpilot.training.train_anatomy import TrainedAnatomy
from radpilot.training.train_classifier import save_state

ANATOMY_LICENCE = (
    "NON-COMMERCIAL USE ONLY, research and education. The weights were trained on: JSRT "
    "radiographs (Japanese Society of Radiological Technology) with the SCR heart and lung "
    "masks: research and education use; cite Shiraishi et al., AJR 2000 and van Ginneken et "
    "al., Medical Image Analysis 2006. Wingspan CTR images and masks (Dong et al., MICCAI 2018, "
    "repository under MIT). COVID-19 image data collection images (Cohen et al.), each under "
    "its own licence, including CC BY-NC-SA (non-commercial, share-alike), with V7 Labs lung "
    "masks as shipped in the torchxrayvision package (V7 Labs' terms apply). These weights "
    "must not be used commercially."
)
ANATOMY_LIMITATIONS = [
    "Adult frontal (PA/AP) chest radiographs only; the heart was learned from PA films of two "
    "sources (JSRT, Wingspan), so AP, supine, paediatric or post-processed films are outside "
    "what it was shown.",
    "The SCR convention: the heart's outline includes the part projected over the lungs and the "
    "lungs exclude it; a large effusion, dense consolidation, a collapsed lung or devices can "
    "make a mask miss or overreach.",
    "The cardiothoracic ratio from its masks is an aid to the reader, not a diagnosis of "
    "cardiomegaly; the ratio over-estimates the heart on AP films.",
    "Not for diagnosis: an anatomical aid for measurements that a clinician reviews.",
]


def save_anatomy_model(
    model: Any, trained: TrainedAnatomy, folder: Path, *, licences: dict[str, int]
) -> dict[str, Any]:
    """Weights and `metadata.json` in the bundle format `AnatomySegmenter` loads (no
    evaluation yet: `write_anatomy_bundle` adds it)."""
    weights = CATALOG[NAME]
    sha256 = save_state(model, folder / weights.filename)
    sources = ", ".join(f"{count} {source}" for source, count in trained.train_images.items())
    card = ModelCard(
        name=weights.name,
        version=__version__,
        architecture=weights.architecture,
        source="trained by the radpilot project: `radpilot models train anatomy`",
        licence=ANATOMY_LICENCE,
        sha256=sha256,
        intended_use="Offline default segmentation of the heart and of each lung on adult "
        "frontal chest radiographs, for the cardiothoracic ratio and lung areas that a "
        "clinician reviews.",
        limitations=[
            f"Starter model trained on {sum(trained.train_images.values())} images "
            f"({sources}; {trained.train_patients} patients): a small sample.",
            *ANATOMY_LIMITATIONS,
        ],
        training_data=f"{sources} training images ({trained.train_patients} patients); "
        f"validation {trained.val_images} ({trained.val_patients} patients) for epoch "
        "selection. `cardiac/` images carry heart, right- and left-lung masks; COVID images "
        "only a both-lung mask (a partial-label loss: no heart label is assumed)",
    )
    header = bundle_header(weights, sha256, trained.recipe.input_size)
    header["input"]["equalize"] = trained.recipe.equalize
    metadata: dict[str, Any] = {
        **header,
        "network": trained.recipe.network.model_dump(mode="json"),
        "classes": list(CLASSES),
        "postprocessing": "letterbox to the input size and back; per pixel the most probable "
        "class; each structure's largest component, holes filled",
        "training": trained.model_dump(mode="json"),
        "training_wall_minutes": round(trained.wall_seconds / 60, 1),
        "training_image_licences": licences,
        "split": SPLIT_RULE,
        "card": card.model_dump(mode="json"),
    }
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "metadata.json", metadata)
    return metadata


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_anatomy_bundle(
    model: Any,
    trained: TrainedAnatomy,
    data_dir: Path,
    folder: Path,
    *,
    progress: Callable[[str], None] = print,
) -> AnatomyEvaluation:
    cardiac = read_cardiac(data_dir)
    covid = read_lung_masks(data_dir) if trained.recipe.use_covid_lungs else []
    licences = Counter(
        [r.license or "unknown" for split in ("train", "val") for r in records_in(cardiac, split)]
        + [r.license or "unknown" for split in ("train", "val") for r in records_in(covid, split)]
    )
    metadata = save_anatomy_model(model, trained, folder, licences=dict(licences.most_common()))
    progress("evaluating the saved (fp16) model on the held-out test patients")
    segmenter = AnatomySegmenter(folder)
    evaluation = evaluate_anatomy(segmenter, data_dir, split="test", progress=progress)
    ctr = evaluate_ctr(segmenter, data_dir, "test", progress=progress)
    card = ModelCard.model_validate(metadata["card"])
    by_name = {s.structure: s for s in evaluation.structures}
    mask_auroc = next(c.auroc for c in ctr.cardiomegaly if c.method == "heart mask")
    card.metrics = {
        key: value
        for key, value in {
            "test_heart_dice": by_name["heart"].dice_mean,
            "test_lung_dice": by_name["lungs"].dice_mean,
            "test_heart_hd95_px": by_name["heart"].hd95_mean,
            "test_ctr_mae": ctr.reference.mean_absolute_error,
            "test_ctr_pearson_r": ctr.reference.pearson_r,
            "test_nih_cardiomegaly_auroc": mask_auroc,
        }.items()
        if value is not None
    }
    metadata["card"] = card.model_dump(mode="json")
    metadata["evaluation"] = evaluation.model_dump(mode="json", exclude={"per_image"})
    metadata["ctr_evaluation"] = ctr.model_dump(mode="json")
    _write(folder / "metadata.json", metadata)
    (folder / "README.md").write_text(render_anatomy_card(metadata))
    return evaluation


def render_anatomy_card(metadata: dict[str, Any]) -> str:
    card, training = metadata["card"], metadata["training"]
    evaluation, ctr = metadata["evaluation"], metadata["ctr_evaluation"]
    licences = ", ".join(f"{k}: {v}" for k, v in metadata["training_image_licences"].items())
    reference = ctr["reference"]
    lines = [
        *card_opening(card, "fp16, run in fp32",
                      "> **Non-commercial use only** (research and education). "
                      "**Not for diagnosis.**"),  # fmt: skip
        f"Licences of the training and validation images: {licences}.",
        "",
        f"Split {metadata['split']} (the same rule as every radpilot data set). Training: "
        f"{training['train_images']} images ({training['train_patients']} patients); "
        f"validation: {training['val_images']} ({training['val_patients']} patients), for "
        "epoch selection only; test patients: this card only.",
        "",
        "**Input/output**: grey image in [0, 1] of any size, letterboxed (aspect kept) to "
        f"{metadata['input']['size']}×{metadata['input']['size']}; four softmax classes "
        f"({', '.join(metadata['classes'])}; right/left are the patient's), resized back; "
        f"{metadata['postprocessing']}.",
        "",
        "## Recipe",
        f"`{json.dumps(training['recipe'])}`",
        "",
        "Partial-label training: each pixel carries the set of classes its labels allow (a COVID "
        "lung pixel is 'right or left lung', a COVID non-lung pixel 'background or heart'), the "
        "cross-entropy is the marginal likelihood of that set, and Dice terms are taken only "
        "over images that label the structure. Each image is histogram-equalized before the "
        "network, in training and in use: without it the heart masks did not carry over to "
        "NIH films (Cardiomegaly AUROC of the CTR 0.484 against 0.758 with it, same data and "
        "recipe otherwise). AdamW, warm-up then cosine decay, light "
        "augmentation (rotation, scale, shift, gamma, brightness, contrast; no flips). Best "
        f"epoch {training['best_epoch']} of {len(training['history'])} by validation score "
        f"({training['best_val_score']:.4f}: mean of heart, lung and COVID-lung Dice at the "
        f"model's resolution). Training wall time {metadata['training_wall_minutes']} min on "
        "the CPU threads the recipe states.",
        "",
        f"## Held-out segmentation ({evaluation['images']} test patients of `cardiac/`, at the "
        "masks' 512-px resolution)",
        "",
        "| structure | Dice mean | median | min | HD95 mean (px) | median | max |",
        "|---|---|---|---|---|---|---|",
    ]
    covid = [evaluation["covid_lungs"]] if evaluation.get("covid_lungs") else []
    for s in [*evaluation["structures"], *covid]:
        lines.append(
            f"| {s['structure']} ({s['images']} images) | {s['dice_mean']:.4f} | "
            f"{s['dice_median']:.4f} | {s['dice_min']:.4f} | {s['hd95_mean']:.1f} | "
            f"{s['hd95_median']:.1f} | {s['hd95_max']:.1f} |"
        )
    lines += [
        "",
        "`lungs` is both lungs as one structure; the last row is the COVID test images' V7 "
        "masks, another annotation convention than SCR's (lower agreement there partly reflects "
        "the convention, not only errors). HD95 is MONAI's 95th-percentile symmetric Hausdorff "
        "distance.",
        "",
        "## Cardiothoracic ratio from the masks",
        "",
        f"Against the reference CTR of {reference['images']} Wingspan test images: mean "
        f"absolute error **{reference['mean_absolute_error']}**, largest "
        f"{reference['max_absolute_error']}, Pearson r **{reference['pearson_r']}** (mean "
        f"reference {reference['mean_reference']}, mean measured {reference['mean_measured']}; "
        f"{reference['failed']} not measured).",
        "",
        "As a score for the NIH Cardiomegaly label (test patients; labels NLP-mined from "
        "reports), both ways of finding the heart on the same lungs, in one run:",
        "",
        "| heart from | images | positives | AUROC | PA | AP | median CTR, Cardiomegaly / other |",
        "|---|---|---|---|---|---|---|",
        *[f"| {c['method']} | {c['images']} | {c['positives']} | {c['auroc']} | "
          f"{c['by_view']['PA']} | {c['by_view']['AP']} | {c['median_ctr_cardiomegaly']} / "
          f"{c['median_ctr_other']} |" for c in ctr["cardiomegaly"]],
        "",
        "Reproduce: `radpilot models evaluate anatomy --data ../shared/data/cxr` and "
        "`radpilot models evaluate ctr --data ../shared/data/cxr`.",
        "",
    ]  # fmt: skip
    return "\n".join(lines)

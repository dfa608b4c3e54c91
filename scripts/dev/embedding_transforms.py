"""Issue 20: a linear transform of the embeddings, learned on lfw-dev, before the distance.

The brief's "verification as logistic regression" family on the whole embedding: instead
of the plain Euclidean distance between L2-normalised embeddings, map every embedding
first, then normalise again. Fitted on lfw-dev identities only, measured where they are
not:
  none    the shipped distance
  center  subtract lfw-dev's mean embedding
  pca     PCA whitening of lfw-dev's embeddings (eigenvalues shrunk by alpha to their mean)
  wccn    whitening of the within-identity covariance (identities with 2+ images), the
          linear part of LDA / joint-Bayesian style metrics

Scores, all on the shipped pipeline's int8 embeddings (``augment_enroll.py embed``, view 0):
  celeba-dev one-shot rank-1 (first image enrolled, 666 probes) and DIR at FPIR 1% / 0.1%
  against strangers from the lfw-dev identities the transform was not fitted on (a seeded
  half of them: the transform is fitted on the other half);
  lfw-dev 10-fold, each fold scored with a transform fitted on the identities that fold's
  pairs do not name (LFW folds share identities, so "the other nine folds" would leak).

    .venv/bin/python scripts/dev/augment_enroll.py embed ../shared/datasets/celeba-dev /tmp/aug/celeba.npz
    .venv/bin/python scripts/dev/augment_enroll.py embed ../shared/datasets/lfw-dev /tmp/aug/lfw.npz
    .venv/bin/python scripts/dev/augment_enroll.py embed ../shared/datasets/lfw-dev /tmp/aug/lfwpairs.npz \\
        --pairs ../shared/datasets/lfw-dev/pairs-dev.txt
    .venv/bin/python scripts/dev/embedding_transforms.py /tmp/aug > docs/results/embedding-transforms.txt
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Callable

import numpy as np

from facegate.convert.evaluate import parse_pairs
from facegate.convert.identify import group_by_identity, identification_metrics, stranger_pool_metrics
from facegate.convert.metrics import ten_fold
from facegate.decide import OperatingPoint
from facegate.encoder import Encoder
from facegate.modelcard import MODELS_DIR

PAIRS = pathlib.Path("../shared/datasets/lfw-dev/pairs-dev.txt")
KINDS = (
    ("none", 0.0),
    ("center", 0.0),
    ("pca", 0.1),
    ("pca", 0.5),
    ("wccn", 0.1),
    ("wccn", 0.3),
    ("wccn", 0.6),
)
Transform = Callable[[np.ndarray], np.ndarray]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def plain(path: pathlib.Path) -> dict[str, np.ndarray]:
    data = np.load(path)
    return dict(zip(data["paths"].tolist(), data["views"][:, 0].astype(np.float64)))


def whitener(covariance: np.ndarray, alpha: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(covariance)
    values = (1 - alpha) * values + alpha * values.mean()
    return vectors / np.sqrt(values)


def fit(emb: dict[str, np.ndarray], kind: str, alpha: float) -> Transform:
    keys = sorted(emb)
    x = unit(np.stack([emb[k] for k in keys]))
    mean = x.mean(axis=0)
    if kind == "none":
        return unit
    if kind == "center":
        return lambda v: unit(unit(v) - mean)
    if kind == "pca":
        w = whitener(np.cov((x - mean).T), alpha)
    elif kind == "wccn":
        row = {k: i for i, k in enumerate(keys)}
        scatter, dof = np.zeros((x.shape[1], x.shape[1])), 0
        for members in group_by_identity(keys).values():
            if len(members) >= 2:
                y = x[[row[k] for k in members]]
                y = y - y.mean(axis=0)
                scatter += y.T @ y
                dof += len(members) - 1
        w = whitener(scatter / dof, alpha)
    else:
        raise ValueError(kind)
    return lambda v: unit((unit(v) - mean) @ w)


def apply(t: Transform, emb: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    keys = sorted(emb)
    return dict(zip(keys, t(np.stack([emb[k] for k in keys]))))


def figure(point: dict[str, object]) -> str:
    low, high = point["ci95"]  # type: ignore[misc]
    return f"{point['value']:.1%} [{low:.1%}, {high:.1%}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=pathlib.Path, help="celeba.npz, lfw.npz and lfwpairs.npz")
    args = parser.parse_args()
    celeba = plain(args.folder / "celeba.npz")
    lfw = {**plain(args.folder / "lfwpairs.npz"), **plain(args.folder / "lfw.npz")}
    op = OperatingPoint.from_card(Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite").card, 1e-3)
    folders = {k: v for k, v in group_by_identity(celeba).items() if len(v) >= 2}
    people = sorted({k.split("/")[0] for k in lfw})
    half = set(np.random.default_rng(0).permutation(people)[: len(people) // 2].tolist())
    fit_half = {k: v for k, v in lfw.items() if k.split("/")[0] in half}
    strangers = {k: v for k, v in lfw.items() if k.split("/")[0] not in half}
    pairs = [p for p in parse_pairs(PAIRS) if p.a in lfw and p.b in lfw]
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    print(f"celeba-dev: {len(celeba)} images with a face; lfw-dev: {len(lfw)} images, {len(pairs)} pairs")
    print(f"open set: transform fitted on {len(fit_half)} images of {len(half)} lfw-dev identities;")
    print(f"          {len(strangers)} images of the other {len(people) - len(half)} are the strangers")
    print("kind    alpha  celeba rank-1  DIR@FPIR1% [95%]      DIR@FPIR0.1% [95%]    lfw-dev 10-fold")
    for kind, alpha in KINDS:
        t = fit(fit_half, kind, alpha)
        rank1 = identification_metrics(folders, apply(t, celeba), op)["rank1"]
        pool = stranger_pool_metrics(folders, apply(t, celeba), apply(t, strangers), op, rounds=300)
        dist = np.full(len(pairs), np.inf)
        for fold in range(10):
            named = {n.split("/")[0] for p in pairs if p.fold == fold for n in (p.a, p.b)}
            tf = fit({k: v for k, v in lfw.items() if k.split("/")[0] not in named}, kind, alpha)
            for i, p in enumerate(pairs):
                if p.fold == fold:
                    a, b = tf(np.stack([lfw[p.a], lfw[p.b]]))
                    dist[i] = np.linalg.norm(a - b)
        accuracy = ten_fold(dist, same, folds)["accuracy"]
        d1, d01 = (figure(pool["dir_at_fpir"][f]) for f in ("0.01", "0.001"))
        print(f"{kind:7s} {alpha:5.1f}  {rank1:12.2%}  {d1:20s}  {d01:20s}  {accuracy:8.2%}", flush=True)


if __name__ == "__main__":
    main()

"""Issue 20: adaptive score normalisation against a cohort of other faces, before the decision.

Speaker and face verification systems often normalise a score by how the two faces score
against a cohort of unrelated people: a face that looks like many strangers gets its scores
lowered. Scores here are cosine similarities of L2-normalised embeddings (the shipped
Euclidean distance is a monotone function of them); for a probe p and template g:
  raw     s(p, g)
  z       (s - mu_g) / sd_g, mu_g and sd_g over g's k closest cohort faces (all if k is 0):
          the gallery-side normalisation, the only one that can change rank-1
  s       the mean of z and of the same normalisation on the probe's side (AS-norm)

Splits as ``embedding_transforms.py``: the cohort is half of the lfw-dev identities, the other
half are celeba-dev's strangers; for lfw-dev 10-fold, a fold's cohort is the lfw-dev
identities its pairs do not name. Figures are point estimates (the intervals of the transform
table apply: rank-1 is 666 probes, so 0.15 points a probe).

    .venv/bin/python scripts/dev/score_norm.py /tmp/aug > docs/results/score-norm.txt
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
from embedding_transforms import PAIRS, plain, unit  # scripts/dev is on sys.path when run

from facegate.convert.evaluate import parse_pairs
from facegate.convert.identify import dir_at_fpir, group_by_identity
from facegate.convert.metrics import ten_fold

RUNS = (("raw", 0), ("z", 0), ("s", 0), ("z", 100), ("s", 50), ("s", 100), ("s", 200), ("s", 400))


def cohort_stats(x: np.ndarray, cohort: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = x @ cohort.T
    if k:
        s = np.partition(s, -k, axis=1)[:, -k:]
    return s.mean(axis=1), s.std(axis=1)


def normalised(p: np.ndarray, g: np.ndarray, cohort: np.ndarray, mode: str, k: int) -> np.ndarray:
    """Scores of every probe row of ``p`` against every template row of ``g`` (higher: nearer)."""
    raw = p @ g.T
    if mode == "raw":
        return raw
    mg, sg = cohort_stats(g, cohort, k)
    z = (raw - mg[None]) / sg[None]
    if mode == "z":
        return z
    mp, sp = cohort_stats(p, cohort, k)
    return (z + (raw - mp[:, None]) / sp[:, None]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=pathlib.Path, help="celeba.npz, lfw.npz and lfwpairs.npz")
    args = parser.parse_args()
    celeba = {k: unit(v) for k, v in plain(args.folder / "celeba.npz").items()}
    both = {**plain(args.folder / "lfwpairs.npz"), **plain(args.folder / "lfw.npz")}
    lfw = {k: unit(v) for k, v in both.items()}
    folders = {k: v for k, v in group_by_identity(celeba).items() if len(v) >= 2}
    names = sorted(folders)
    gallery = np.stack([celeba[folders[n][0]] for n in names])
    probes = [(i, p) for i, n in enumerate(names) for p in folders[n][1:]]
    truth = np.array([i for i, _ in probes])
    probe = np.stack([celeba[p] for _, p in probes])
    people = sorted({k.split("/")[0] for k in lfw})
    half = set(np.random.default_rng(0).permutation(people)[: len(people) // 2].tolist())
    cohort = np.stack([v for k, v in sorted(lfw.items()) if k.split("/")[0] in half])
    strangers = np.stack([v for k, v in sorted(lfw.items()) if k.split("/")[0] not in half])
    pairs = [p for p in parse_pairs(PAIRS) if p.a in lfw and p.b in lfw]
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    fold_cohorts = []
    for fold in range(10):
        named = {n.split("/")[0] for p in pairs if p.fold == fold for n in (p.a, p.b)}
        fold_cohorts.append(np.stack([v for k, v in sorted(lfw.items()) if k.split("/")[0] not in named]))
    print(f"celeba-dev: {len(names)} enrolled, {len(probes)} probes; cohort {len(cohort)} lfw-dev images,")
    print(f"strangers {len(strangers)} images of the other lfw-dev identities; lfw-dev {len(pairs)} pairs")
    print("mode    k  celeba rank-1  DIR@FPIR1%  DIR@FPIR0.1%  lfw-dev 10-fold")
    for mode, k in RUNS:
        scores = normalised(probe, gallery, cohort, mode, k)
        best = scores.argmax(axis=1)
        correct = best == truth
        stranger_best = normalised(strangers, gallery, cohort, mode, k).max(axis=1)
        dirs = [dir_at_fpir(-scores.max(axis=1), correct, -stranger_best, f)[0] for f in (1e-2, 1e-3)]
        dist = np.full(len(pairs), np.inf)
        for i, p in enumerate(pairs):
            a, b = lfw[p.a][None], lfw[p.b][None]
            dist[i] = -normalised(a, b, fold_cohorts[p.fold], mode, k)[0, 0]
        accuracy = ten_fold(dist, same, folds)["accuracy"]
        figures = f"{correct.mean():12.2%}  {dirs[0]:10.1%}  {dirs[1]:12.1%}  {accuracy:14.2%}"
        print(f"{mode:4s} {k:4d}  {figures}", flush=True)


if __name__ == "__main__":
    main()

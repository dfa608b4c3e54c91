"""Issue 20: score the variants that ``stage_swap.py`` embedded, like for like, with the
protocols of ``facegate evaluate identify`` (``facegate.convert.identify``):

- celeba-dev one-shot, closed set (rank-1) and the old half-left-out open set;
- celeba-dev gallery against every lfw-dev image as a stranger, and the reverse (lfw-dev
  identities with 2+ images enrolled, every celeba-dev image a stranger), with 95%
  bootstrap intervals over identities.

Only images that every variant could use count (dlib's HOG misses some), so each row
is on the same probes. facegate's variants are decided at the int8 card's threshold,
face_recognition's (D) at its own tolerance 0.6.

    .venv/bin/python scripts/dev/open_set.py /tmp/swap > docs/results/stage-swap.json
    .venv/bin/python scripts/dev/open_set.py --flips /tmp/swap ../shared/datasets/celeba-dev \
        > docs/results/stage-swap-flips.txt
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from facegate.bench.compare_face_recognition import at_fr_tolerance
from facegate.convert.identify import group_by_identity, identification_metrics, stranger_pool_metrics
from facegate.decide import OperatingPoint
from facegate.encoder import Encoder
from facegate.modelcard import MODELS_DIR


def load(path: pathlib.Path) -> dict[str, np.ndarray]:
    data = np.load(path)
    return dict(zip(data["paths"].tolist(), data["embeddings"]))


def folders_of(keys: set[str]) -> dict[str, list[str]]:
    return {n: v for n, v in group_by_identity(keys).items() if len(v) >= 2}


def main(folder: pathlib.Path) -> None:
    op = OperatingPoint.from_card(Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite").card, 1e-3)
    variants = sorted(p.stem for p in (folder / "celeba").glob("*.npz"))
    celeba = {v: load(folder / "celeba" / f"{v}.npz") for v in variants}
    lfw = {v: load(folder / "lfw" / f"{v}.npz") for v in variants}
    c_keys = set.intersection(*(set(e) for e in celeba.values()))
    l_keys = set.intersection(*(set(e) for e in lfw.values()))
    out: dict[str, object] = {"celeba_images": len(c_keys), "lfw_images": len(l_keys)}
    for v in variants:
        decide = at_fr_tolerance if v == "D" else None
        c = {k: celeba[v][k] for k in c_keys}
        f = {k: lfw[v][k] for k in l_keys}
        half = identification_metrics(folders_of(c_keys), c, op, decide=decide)
        a = stranger_pool_metrics(folders_of(c_keys), c, f, op, decide=decide)
        b = stranger_pool_metrics(folders_of(l_keys), f, c, op, decide=decide)
        out[v] = {
            "celeba_rank1": half["rank1"],
            "celeba_half_open": {
                "dir_at_fpir_0.01": half["dir_at_fpir"]["0.01"],
                "stranger_probes": half["stranger_probes"],
                "operating_point": half["operating_point"],
            },
            "celeba_gallery_lfw_strangers": a,
            "lfw_gallery_celeba_strangers": b,
        }
        print(
            v,
            f"rank1 {half['rank1']:.4f}",
            "| celeba vs lfw: DIR@1%",
            a["dir_at_fpir"]["0.01"],
            "DIR@0.1%",
            a["dir_at_fpir"]["0.001"],
            "| lfw vs celeba: rank1",
            b["rank1"],
            "DIR@1%",
            b["dir_at_fpir"]["0.01"],
            file=sys.stderr,
            flush=True,
        )
    print(json.dumps(out, indent=1))


def flips(folder: pathlib.Path, root: pathlib.Path) -> None:
    """Which celeba-dev probes only facegate's start box (E) or only dlib's (C) names right,
    closed set, and how large those faces are in BlazeFace's 128 px input."""
    from facegate.images import load_rgb
    from facegate.perception import Perception

    e, c = load(folder / "celeba" / "E.npz"), load(folder / "celeba" / "C.npz")
    folders = folders_of(set(e) & set(c))

    def right(embeddings: dict[str, np.ndarray]) -> dict[str, bool]:
        names = list(folders)
        gallery = np.stack([embeddings[folders[n][0]] for n in names])
        return {
            p: names[int(np.argmin(np.linalg.norm(gallery - embeddings[p], axis=1)))] == n
            for n in names
            for p in folders[n][1:]
        }

    r_e, r_c = right(e), right(c)
    perception = Perception()

    def small(p: str) -> bool:
        rgb = load_rgb(root / p)
        width = max(d.width for d in perception.detect(rgb))
        return width * perception.detector.size / max(rgb.shape[:2]) < perception.refine_below

    for label, chosen in (
        ("only C (dlib's box) right", [p for p in r_e if r_c[p] and not r_e[p]]),
        ("only E (facegate's box) right", [p for p in r_e if r_e[p] and not r_c[p]]),
        ("every probe", list(r_e)),
    ):
        print(f"{label}: {len(chosen)}, under 48 px in the detector input: {sum(map(small, chosen))}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--flips":  # open_set.py --flips FOLDER CELEBA_ROOT
        flips(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]))
    else:
        main(pathlib.Path(sys.argv[1]))

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
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from facegate.convert.identify import identification_metrics, stranger_pool_metrics
from facegate.decide import OperatingPoint
from facegate.encoder import Encoder
from facegate.gallery import Templates
from facegate.modelcard import MODELS_DIR


def load(path: pathlib.Path) -> dict[str, np.ndarray]:
    data = np.load(path)
    return dict(zip(data["paths"].tolist(), data["embeddings"]))


def folders_of(keys: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k in sorted(keys):
        out.setdefault(k.split("/")[0], []).append(k)
    return {n: v for n, v in out.items() if len(v) >= 2}


def raw_06(templates: Templates, probe: np.ndarray) -> str | None:
    d = np.linalg.norm(templates.matrix - probe, axis=1)
    best = int(np.argmin(d))
    return templates.names[best] if d[best] < 0.6 else None


def main(folder: pathlib.Path) -> None:
    op = OperatingPoint.from_card(Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite").card, 1e-3)
    variants = sorted(p.stem for p in (folder / "celeba").glob("*.npz"))
    celeba = {v: load(folder / "celeba" / f"{v}.npz") for v in variants}
    lfw = {v: load(folder / "lfw" / f"{v}.npz") for v in variants}
    c_keys = set.intersection(*(set(e) for e in celeba.values()))
    l_keys = set.intersection(*(set(e) for e in lfw.values()))
    out: dict[str, object] = {"celeba_images": len(c_keys), "lfw_images": len(l_keys)}
    for v in variants:
        decide = raw_06 if v == "D" else None
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


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))

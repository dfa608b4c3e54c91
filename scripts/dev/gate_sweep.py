"""DEV: what the blur gate costs and buys on lfw-dev pairs.

Embeds every image of pairs-dev once with the device pipeline and no gates
(central face), keeps each face's sharpness, then scores the 10-fold protocol
with images below each ``min_sharpness`` refused (a refused image makes its
pairs wrong answers, as in ``facegate evaluate pairs``). It also reports how
the pairs that hold a refused image fare when they are not refused.

    python scripts/dev/gate_sweep.py [--cache /tmp/lfw-nogates.npz]
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

from facegate.convert.evaluate import DetectAlign, parse_pairs
from facegate.convert.metrics import ten_fold
from facegate.convert.reference import shared_root
from facegate.encoder import Encoder
from facegate.images import load_rgb
from facegate.landmarks import to_grey
from facegate.modelcard import MODELS_DIR
from facegate.perception import Gates, Perception, sharpness
from facegate.progress import progress


def embed_all(cache: pathlib.Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    if cache.exists():
        with np.load(cache) as data:
            return [str(p) for p in data["paths"]], data["embeddings"], data["sharpness"]
    lfw = shared_root() / "datasets" / "lfw-dev"
    pairs = parse_pairs(lfw / "pairs-dev.txt")
    paths = sorted({p for pair in pairs for p in (pair.a, pair.b)})
    encoder = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite")
    source = DetectAlign(Perception(gates=Gates(0.0, float("inf"), 0.0)))
    embeddings = np.full((len(paths), encoder.card.embedding_size), np.nan, np.float32)
    sharp = np.full(len(paths), np.nan)
    for i, rel in enumerate(progress(paths, "embedding")):
        chip = source.chips(load_rgb(lfw / rel), rel)
        if chip is not None:
            embeddings[i] = encoder.embed(chip)[0]
            sharp[i] = sharpness(to_grey(chip))
    np.savez(cache, paths=np.array(paths), embeddings=embeddings, sharpness=sharp)
    return paths, embeddings, sharp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=pathlib.Path, default=pathlib.Path("/tmp/lfw-dev-nogates.npz"))
    args = parser.parse_args()
    paths, emb, sharp = embed_all(args.cache)
    index = {p: i for i, p in enumerate(paths)}
    pairs = parse_pairs(shared_root() / "datasets" / "lfw-dev" / "pairs-dev.txt")
    a = np.array([index[p.a] for p in pairs])
    b = np.array([index[p.b] for p in pairs])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    raw = np.linalg.norm(emb[a] - emb[b], axis=1)
    raw[np.isnan(raw)] = np.inf
    low, p5 = np.nanpercentile(sharp, [0.5, 5])
    print(f"images {len(paths)}, sharpness p0.5 {low:.1f}, p5 {p5:.1f}")
    for gate in (0.0, 2.0, 4.0, 6.0, 8.0, 10.0):
        refused = sharp < gate
        d = np.where(refused[a] | refused[b], np.inf, raw)
        hit = refused[a] | refused[b]
        result = ten_fold(d, same, folds)
        ungated = ten_fold(raw, same, folds)
        # Of the pairs this gate refuses: how many would the ungated run get right?
        t = float(ungated["threshold_mean"])
        right = int(((raw[hit] < t) == same[hit]).sum())
        print(
            f"min_sharpness {gate:4.1f}: refused images {int(refused.sum()):3d}, "
            f"pairs touched {int(hit.sum()):3d} "
            f"(ungated right on {right}), 10-fold accuracy {100 * float(result['accuracy']):.2f}%"
        )


if __name__ == "__main__":
    main()

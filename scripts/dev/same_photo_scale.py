"""How long ``Gallery.add`` takes to leave out photos a person already has, at scale.

    .venv/bin/python scripts/dev/same_photo_scale.py [--sizes 1000 4000]

For each size N: a person enrolled with N/2 random unit embeddings, then all N added again,
one in seven of them a copy of an earlier one moved by about ``SAME_PHOTO`` (0.3x to 1.7x,
so some are the same photo and some are not). Prints the time of that second ``add`` and the
embeddings the person ends with; run it on two commits to compare (the count must not change).
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import numpy as np

from facegate.gallery import SAME_PHOTO, Gallery, ModelFingerprint, Sample
from facegate.modelcard import MODELS_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    args = parser.parse_args()
    from facegate.encoder import Encoder
    from facegate.enroll import fingerprint

    model: ModelFingerprint = fingerprint(Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite"))
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            v = rng.normal(size=(n, 128)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            for i in range(7, n, 7):
                step = rng.uniform(0.3, 1.7) * SAME_PHOTO / np.sqrt(128)
                v[i] = v[i - 5] + rng.normal(size=128).astype(np.float32) * step
            with Gallery.open(pathlib.Path(folder) / f"g{n}.db", model) as gallery:
                gallery.add("x", [Sample(x, "half") for x in v[: n // 2]])
                start = time.perf_counter()
                person = gallery.add("x", [Sample(x, "all") for x in v])
                seconds = time.perf_counter() - start
            print(f"N={n}: second add {seconds:.2f} s, {person.embeddings} embeddings")


if __name__ == "__main__":
    main()

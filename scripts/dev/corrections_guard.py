"""The correction guard (``facegate.decide.CORRECTION_GUARD``) swept on identity folders with
``facegate.convert.corrections.replay``: false accepts and right names after honest
corrections, and right names after careless ones (BENCHMARKS.md, "Corrections").
Embeddings are cached in /tmp/facegate-corrections.

    .venv/bin/python scripts/dev/corrections_guard.py ../shared/datasets/celeba-dev ../shared/datasets/lfw-dev
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

from facegate import decide
from facegate.convert import corrections
from facegate.convert.evaluate import DetectAlign, embed_images
from facegate.convert.identify import identity_folders
from facegate.encoder import Encoder
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception

CACHE = pathlib.Path("/tmp/facegate-corrections")


def embeddings(encoder: Encoder, root: pathlib.Path, folders: dict[str, list[str]]) -> dict[str, np.ndarray]:
    cache = CACHE / f"{root.name}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return {k.replace("|", "/"): z[k] for k in z.files}
    source = DetectAlign(Perception.for_encoder(encoder.card), pick="largest")
    found, _ = embed_images(encoder, root, [p for v in folders.values() for p in v], source)
    CACHE.mkdir(exist_ok=True)
    np.savez(cache, **{k.replace("/", "|"): v for k, v in found.items()})
    return found


def main(roots: list[str]) -> None:
    encoder = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite")
    op = decide.OperatingPoint.from_card(encoder.card, 1e-3)
    for name in roots:
        root = pathlib.Path(name)
        folders = identity_folders(root)
        found = embeddings(encoder, root, folders)
        for guard in (0.75, 0.85, 0.9, 0.95):
            decide.CORRECTION_GUARD = guard
            r = corrections.replay(folders, found, op)
            after = r["after"]
            before, honest = after["no corrections"], after["corrections"]
            careless = after["corrections + 0.1 careless"]
            asked = r["review"]["wrong_names_corrected"] + r["review"]["right_names_wrongly_corrected"]
            print(
                f"{root.name} guard {guard}: false accepts {before['false_accepts']} -> "
                f"{honest['false_accepts']}, right {before['right']} -> {honest['right']} | careless: "
                f"right {careless['right']}, false accepts {careless['false_accepts']}, "
                f"refused {careless['refused']} of {asked}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])

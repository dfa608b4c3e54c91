"""How far apart two embeddings of one photo can be: the basis of ``facegate.gallery.SAME_PHOTO``.

    .venv/bin/python scripts/dev/same_photo.py [--images 20]

For every 20th image of the first 400 of ``../shared/datasets/lfw-dev`` (or
``$FACEGATE_SHARED``), with each shipped encoder:

- the same file embedded with 1 and with 2 threads (the CLI and the service may differ);
- the same pixels saved again as JPEG at quality 95;
- the same pixels with uniform noise of +-2 grey levels.

Prints the largest distance of the first (what "the same photo" must take in) and the
smallest and median of the other two (what must stay a new photo).
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib

import numpy as np
from PIL import Image

from facegate.encoder import Encoder
from facegate.enroll import Enroller, RefusedError
from facegate.gallery import SAME_PHOTO
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception

SHARED = pathlib.Path(
    os.environ.get("FACEGATE_SHARED", pathlib.Path(__file__).resolve().parents[3] / "shared")
)


def enroller(model: pathlib.Path, threads: int) -> Enroller:
    encoder = Encoder(model, num_threads=threads)
    return Enroller(Perception.for_encoder(encoder.card, threads=threads), encoder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()
    root = SHARED / "datasets" / "lfw-dev"
    files = sorted(root.glob("*/*.jpg"))[:400:20][: args.images]
    if not files:
        raise SystemExit(f"no images under {root}")
    noise = np.random.default_rng(0)
    for name in ("dlib_resnet_v1_int8.tflite", "dlib_resnet_v1_float32.tflite"):
        one, two = enroller(MODELS_DIR / name, 1), enroller(MODELS_DIR / name, 2)
        threads, resaved, noisy = [], [], []
        for path in files:
            try:
                a = one.sample(path).vector
            except RefusedError:
                continue
            threads.append(np.linalg.norm(a - two.sample(path).vector))
            rgb = np.asarray(Image.open(path).convert("RGB"))
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, "JPEG", quality=95)
            again = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            resaved.append(np.linalg.norm(a - one.sample_from_rgb(again, "resaved").vector))
            shaken = np.clip(rgb.astype(np.int16) + noise.integers(-2, 3, rgb.shape), 0, 255).astype(np.uint8)
            noisy.append(np.linalg.norm(a - one.sample_from_rgb(shaken, "noisy").vector))
        print(
            f"{name}: {len(threads)} photos; same file, 1 vs 2 threads: max {max(threads):.2g}; "
            f"JPEG q95 re-save: min {min(resaved):.3f}, median {np.median(resaved):.3f}; "
            f"noise +-2: min {min(noisy):.3f}, median {np.median(noisy):.3f} (SAME_PHOTO {SAME_PHOTO:g})"
        )


if __name__ == "__main__":
    main()

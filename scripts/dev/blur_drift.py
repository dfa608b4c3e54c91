"""DEV: how blur moves the embedding, and where the sharpness gate sits.

For 200 lfw-dev reference chips (dlib's landmarks, our warp): Gaussian blur
of growing radius, the chip's sharpness (``facegate.perception.sharpness``) and
the distance of its embedding to the sharp chip's (the FAR 1e-3 threshold
is ~0.38, so a drift near it makes a face unrecognisable).

    python scripts/dev/blur_drift.py
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from facegate.align import align_face
from facegate.convert.reference import load_reference, shared_root
from facegate.encoder import Encoder
from facegate.images import load_rgb
from facegate.landmarks import to_grey
from facegate.modelcard import MODELS_DIR
from facegate.perception import sharpness


def main() -> None:
    lfw = shared_root() / "datasets" / "lfw-dev"
    ref = load_reference()
    encoder = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite")
    chips = [align_face(load_rgb(lfw / p), m) for p, m in zip(ref.paths[:200], ref.landmarks[:200])]
    sharp = encoder.embed(np.stack(chips))
    print("radius  sharpness p50  p95   drift p50  p95")
    for radius in (0.0, 0.75, 1.0, 1.5, 2.0, 3.0):
        blurred = [np.asarray(Image.fromarray(c).filter(ImageFilter.GaussianBlur(radius))) for c in chips]
        s = np.array([sharpness(to_grey(c)) for c in blurred])
        drift = np.linalg.norm(encoder.embed(np.stack(blurred)) - sharp, axis=1)
        print(
            f"{radius:6.2f}  {np.median(s):13.1f} {np.percentile(s, 95):5.1f}"
            f"   {np.median(drift):9.3f} {np.percentile(drift, 95):5.3f}"
        )


if __name__ == "__main__":
    main()

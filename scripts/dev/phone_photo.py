"""A phone photo stored turned, with its EXIF Orientation tag: read with the tag and without.

    .venv/bin/python scripts/dev/phone_photo.py

obama2.jpg is stored as a phone would for each turn (Orientation 3: upside down; 6 and 8:
on its side) and embedded twice: through ``load_rgb``, which turns it upright by the tag,
and from the pixels as stored, which is what ``load_rgb`` read before it read the tag. Each
is compared with obama.jpg's embedding at the shipped threshold (FAR 1e-3).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from facegate.decide import OperatingPoint
from facegate.demo import PHOTOS
from facegate.encoder import Encoder
from facegate.enroll import Enroller, RefusedError
from facegate.images import load_rgb
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception

# Orientation -> how a camera stores the pixels of an upright picture
STORED = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def main() -> int:
    enroller = Enroller(Perception(), Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite"))
    threshold = OperatingPoint.from_card(enroller.encoder.card, 1e-3).threshold
    enrolled = enroller.sample_from_rgb(load_rgb(PHOTOS / "obama.jpg"), "obama.jpg").vector
    photo = Image.open(PHOTOS / "obama2.jpg").convert("RGB")
    print(f"distance to obama.jpg (threshold {threshold:.3f}; over it: not recognised)")
    for orientation, turn in STORED.items():
        tags = Image.Exif()
        tags[0x0112] = orientation
        out = io.BytesIO()
        photo.transpose(turn).save(out, "JPEG", quality=95, exif=tags.tobytes())
        data = out.getvalue()
        row = []
        for how, rgb in (
            ("tag read", load_rgb(io.BytesIO(data))),
            ("tag ignored", np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))),
        ):
            try:
                vector = enroller.sample_from_rgb(rgb, how).vector
                row.append(f"{how} {float(np.linalg.norm(vector - enrolled)):.3f}")
            except RefusedError as exc:
                row.append(f"{how}: {exc}")
        print(f"Orientation {orientation}: " + ", ".join(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

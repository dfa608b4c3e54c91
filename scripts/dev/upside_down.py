"""A photo enrolled on its side or upside down (its EXIF turn lost), before and after
``Perception.photo_faces`` read it both ways up.

    .venv/bin/python scripts/dev/upside_down.py [--photos 60]

For the first PHOTOS of ``../shared/datasets/celeba-dev`` (or ``$FACEGATE_SHARED``) and the
bundled photos: each turned by 0, 90, 180 and 270 degrees, embedded as enrollment embeds it
(``Enroller.sample_from_rgb``), once as the photo stands (``Perception._photo_faces``, what
enrollment did before) and once by ``photo_faces``. Compared with the same photo's upright
embedding: "same" within 0.15 (the same face, a little differently cut), "wrong" further
(an embedding of no one, enrolled under the person's name), or refused.
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib

import numpy as np

from facegate.demo import PHOTOS
from facegate.encoder import Encoder
from facegate.enroll import Enroller, RefusedError
from facegate.images import load_rgb
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=60)
    args = parser.parse_args()
    shared = pathlib.Path(os.environ.get("FACEGATE_SHARED", "../shared"))
    files = sorted((shared / "datasets" / "celeba-dev").rglob("*.jpg"))[: args.photos]
    files += sorted(PHOTOS.glob("*.jpg"))
    encoder = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite")
    enroller = Enroller(Perception.for_encoder(encoder.card), encoder)
    both_ways = enroller.perception.photo_faces
    counts: dict[tuple[str, int], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for path in files:
        rgb = load_rgb(path)
        try:
            upright = enroller.sample_from_rgb(rgb, str(path)).vector
        except RefusedError:
            continue
        for way in ("as it stands", "both ways up"):
            enroller.perception.photo_faces = (  # type: ignore[method-assign]
                enroller.perception._photo_faces if way == "as it stands" else both_ways
            )
            for turn in (0, 90, 180, 270):
                image = np.ascontiguousarray(np.rot90(rgb, turn // 90))
                try:
                    distance = float(np.linalg.norm(enroller.sample_from_rgb(image, "x").vector - upright))
                    counts[way, turn]["same" if distance < 0.15 else "wrong"] += 1
                except RefusedError:
                    counts[way, turn]["refused"] += 1
    print(f"{len(files)} photos; each cell: same / wrong / refused")
    print(f"{'':>14}" + "".join(f"{t:>18}" for t in (0, 90, 180, 270)))
    for way in ("as it stands", "both ways up"):
        cells = [counts[way, t] for t in (0, 90, 180, 270)]
        print(f"{way:>14}" + "".join(f"{c['same']:>8} / {c['wrong']:>2} / {c['refused']:>2}" for c in cells))


if __name__ == "__main__":
    main()

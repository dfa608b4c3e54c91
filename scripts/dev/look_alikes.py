"""How often ``facegate.enroll.look_alikes`` warns, on lfw-dev: for mix-ups, and for nobody.

    .venv/bin/python scripts/dev/look_alikes.py [--people 300]

One photo each of the first PEOPLE identities of ``../shared/datasets/lfw-dev`` (or
``$FACEGATE_SHARED``) with two photos or more is enrolled in turn, each checked against the
people before it (the shipped int8 encoder, FAR 1e-3):

- **strangers**: how many of those enrollments warned (a new person taken for someone
  already there: the door would confuse the two);
- **mix-ups**: each person's second photo, enrolled under a new name, as a photo put in the
  wrong folder would be: how many warned.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import tempfile

from facegate.decide import OperatingPoint
from facegate.encoder import Encoder
from facegate.enroll import Enroller, RefusedError, fingerprint, look_alikes
from facegate.gallery import Gallery, Sample
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception

SHARED = pathlib.Path(
    os.environ.get("FACEGATE_SHARED", pathlib.Path(__file__).resolve().parents[3] / "shared")
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=300)
    args = parser.parse_args()
    root = SHARED / "datasets" / "lfw-dev"
    encoder = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite", num_threads=2)
    enroller = Enroller(Perception.for_encoder(encoder.card, threads=2), encoder)
    op = OperatingPoint.from_card(encoder.card, 1e-3)
    pairs: list[tuple[str, Sample, Sample]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        if len(photos) < 2:
            continue
        try:
            pairs.append((folder.name, enroller.sample(photos[0]), enroller.sample(photos[1])))
        except RefusedError:
            continue
        if len(pairs) == args.people:
            break
    with tempfile.TemporaryDirectory() as tmp:
        gallery = Gallery.open(pathlib.Path(tmp) / "g.db", fingerprint(encoder), create=True)
        strangers = 0
        for name, first, _ in pairs:
            strangers += bool(look_alikes(gallery.templates(), name, [first], op))
            gallery.add(name, [first])
        mixups = sum(
            bool(look_alikes(gallery.templates(), f"new-{i}", [second], op))
            for i, (_, _, second) in enumerate(pairs)
        )
        gallery.close()
    n = len(pairs)
    print(
        f"{n} people, threshold {op.threshold:.3f} (FAR 1e-3): strangers warned {strangers} of {n} "
        f"({strangers / n:.1%}, each against the people before it, {n // 2} on average); "
        f"mix-ups warned {mixups} of {n} ({mixups / n:.1%}, against all {n})"
    )


if __name__ == "__main__":
    main()

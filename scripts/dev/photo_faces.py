"""Enrolling from a large photo whose face is small in it (a phone photo taken from a few metres).

    .venv/bin/python scripts/dev/photo_faces.py [--jpeg]

Each bundled photo of obama (and biden's, a stranger) is set into a photo of each size with
its face FACE px wide (``facegate.demo.scene``), and embedded as an enrollment would
(``Enroller.sample_from_rgb``), two ways: with the camera's pipeline (``Perception.faces``,
short-range BlazeFace; what enrollment used before) and with ``Perception.photo_faces``
(the same, unless no usable face was found large or placed by refinement: then the
full-range model finds the faces and the short-range one places them). Prints the distance
to obama.jpg's embedding, or why the photo was refused. obama's should be under the shipped
threshold (0.385), biden's well over it; a distance of 0.5 or more for obama is an
embedding of no one, enrolled as him. ``--jpeg``: each photo saved as a JPEG (quality 90)
and enrolled from the file, so a phone-sized one is decoded at reduced scale as enrollment
decodes it (``facegate.images``).
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

import numpy as np
from PIL import Image

from facegate.demo import PHOTOS, scene
from facegate.encoder import Encoder
from facegate.enroll import Enroller, RefusedError
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception

SIZES = [(4032, 3024), (3024, 4032), (1920, 1080), (640, 480)]
FACES = [60, 90, 120, 200, 300, 500, 800]
PEOPLE = ["obama2.jpg", "obama3.jpg", "biden.jpg"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jpeg", action="store_true", help="enroll each photo from a JPEG file")
    args = parser.parse_args()
    saved = pathlib.Path(tempfile.mkdtemp()) / "photo.jpg"
    encoder = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite")
    enroller = Enroller(Perception.for_encoder(encoder.card), encoder)
    reference = enroller.sample(PHOTOS / "obama.jpg").vector
    camera_way = enroller.perception.faces
    print(f"{'photo':>10} {'face':>5}  " + "  ".join(f"{p:>26}" for p in PEOPLE))
    for width, height in SIZES:
        for face in FACES:
            if face > 0.6 * width:
                continue
            cells = []
            for photo in PEOPLE:
                image = scene(
                    PHOTOS / photo,
                    face_width=float(face),
                    centre=(width / 2, height / 2.5),
                    size=(width, height),
                )
                said = []
                for way in ("faces", "photo_faces"):
                    enroller.perception.photo_faces = (
                        camera_way if way == "faces" else Perception.photo_faces.__get__(enroller.perception)
                    )  # type: ignore[method-assign]
                    try:
                        if args.jpeg:
                            Image.fromarray(image).save(saved, quality=90)
                            vector = enroller.sample(saved).vector
                        else:
                            vector = enroller.sample_from_rgb(image, "x").vector
                        said.append(f"{np.linalg.norm(vector - reference):.2f}")
                    except RefusedError as exc:
                        said.append("no face" if "no face" in str(exc) else str(exc).split(": ", 1)[1][:10])
                cells.append(f"{said[0]:>12} -> {said[1]:<10}")
            print(f"{width:>5}x{height:<4} {face:>5}  " + "  ".join(cells))


if __name__ == "__main__":
    main()

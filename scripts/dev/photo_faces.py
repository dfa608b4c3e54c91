"""Enrolling from a large photo whose face is small in it (a phone photo taken from a few metres).

    .venv/bin/python scripts/dev/photo_faces.py

Each bundled photo of obama (and biden's, a stranger) is set into a photo of each size with
its face FACE px wide (``facegate.demo.scene``), and embedded as an enrollment would
(``Enroller.sample_from_rgb``), two ways: with the camera's pipeline (``Perception.faces``,
short-range BlazeFace; what enrollment used before) and with ``Perception.photo_faces``
(the same, unless no usable face was found large or placed by refinement: then the
full-range model finds the faces and the short-range one places them). Prints the distance
to obama.jpg's embedding, or why the photo was refused. obama's should be under the shipped
threshold (0.385), biden's well over it; a distance of 0.5 or more for obama is an
embedding of no one, enrolled as him.
"""

from __future__ import annotations

import numpy as np

from facegate.demo import PHOTOS, scene
from facegate.encoder import Encoder
from facegate.enroll import Enroller, RefusedError
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception

SIZES = [(4032, 3024), (3024, 4032), (1920, 1080), (640, 480)]
FACES = [60, 90, 120, 200, 300, 500, 800]
PEOPLE = ["obama2.jpg", "obama3.jpg", "biden.jpg"]


def main() -> None:
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
                        said.append(
                            f"{np.linalg.norm(enroller.sample_from_rgb(image, 'x').vector - reference):.2f}"
                        )
                    except RefusedError as exc:
                        said.append("no face" if "no face" in str(exc) else str(exc).split(": ", 1)[1][:10])
                cells.append(f"{said[0]:>12} -> {said[1]:<10}")
            print(f"{width:>5}x{height:<4} {face:>5}  " + "  ".join(cells))


if __name__ == "__main__":
    main()

"""The narrowest face each detector finds at the camera, by frame size.

    .venv/bin/python scripts/dev/frame_reach.py

Each bundled photo of obama (``facegate.demo.scene``) is set into frames of each size with its
face N px wide, N from 24 px up in steps of 8%, and read by the camera's pipeline
(``Perception.faces``, refinement on) with each detector. Prints, per frame size and detector,
the narrowest face found usable in every photo, in px and as a fraction of the frame's longer
side: the basis of the daemon's warning about large frames (``facegate.daemon``).
"""

from __future__ import annotations

from facegate.demo import PHOTOS, scene
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception

SIZES = [(640, 480), (1280, 720), (1920, 1080), (2592, 1944)]
PHOTOS_USED = ["obama.jpg", "obama2.jpg", "obama3.jpg"]


def main() -> None:
    widths = [24.0]
    while widths[-1] < 700:
        widths.append(widths[-1] * 1.08)
    for detector in ("short", "full"):
        perception = Perception(detector=MODELS_DIR / f"face_detection_{detector}_range.tflite")
        for width, height in SIZES:
            found = None
            for face in widths:
                if face > 0.5 * height:
                    break
                frames = [
                    scene(PHOTOS / p, face_width=face, centre=(width / 2, height / 2), size=(width, height))
                    for p in PHOTOS_USED
                ]
                if all(any(f.rejected is None for f in perception.faces(x, "RGB")) for x in frames):
                    found = face
                    break
            side = max(width, height)
            said = "none up to half the frame" if found is None else f"{found:.0f} px (1/{side / found:.0f})"
            print(f"{detector:>5} {width}x{height}: every photo found from {said}")


if __name__ == "__main__":
    main()

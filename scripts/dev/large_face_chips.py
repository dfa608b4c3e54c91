"""DEV: make tests/fixtures/dlib_large_face_chips.npz, dlib's own chips of faces large enough
for its image pyramid (1 and 2 levels, rotated, near the frame's edges), cut from a
synthetic pattern that the test rebuilds from the same formula. Needs dlib:

    .venv-dlib/bin/python scripts/dev/large_face_chips.py
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
# (centre x, centre y, image pixels per chip pixel, angle): 1 and 2 pyramid levels, two near edges
CASES = [
    (640.0, 480.0, 2.2, 0.0),
    (300.0, 300.0, 5.1, -0.2),
    (120.0, 110.0, 2.5, 0.1),
    (1180.0, 880.0, 4.2, 0.5),
]


def main() -> None:
    import dlib

    sys.path.insert(0, str(ROOT))
    from facegate import align
    from tests.test_align import pattern

    image = pattern(960, 1280)
    template = align.template_points(150, 0.25)
    marks, chips = [], []
    for cx, cy, scale, angle in CASES:
        c, s = np.cos(angle) * scale, np.sin(angle) * scale
        points = np.rint((template - 75) @ np.array([[c, s], [-s, c]]) + [cx, cy])
        shape = dlib.full_object_detection(
            dlib.rectangle(0, 0, 10, 10), [dlib.point(int(x), int(y)) for x, y in points]
        )
        chip = np.asarray(dlib.get_face_chip(image, shape, size=150, padding=0.25))
        same = (align.align_face(image, points) == chip).mean()
        print(f"({cx}, {cy}) x{scale}: facegate's chip identical on {same:.4f}")
        marks.append(points)
        chips.append(chip)
    out = ROOT / "tests" / "fixtures" / "dlib_large_face_chips.npz"
    np.savez_compressed(out, landmarks=np.array(marks), chips=np.array(chips))


if __name__ == "__main__":
    main()

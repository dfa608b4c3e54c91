"""How often ``Perception.photo_faces`` leaves the camera's path, on the shared datasets.

    .venv/bin/python scripts/dev/photo_paths.py

- For lfw-dev and celeba-dev (``../shared`` or ``$FACEGATE_SHARED``): the images with no usable
  face that the camera's path places (``Face.unplaced``), which the full-range finder reads.
- For celeba-dev: each photo read upright and turned half round. The percentage of upside-down
  photos whose upright reading the detector is surer of by more than each margin, and of
  upright photos that a margin would turn (``TURN_MARGIN``).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from facegate.images import load_rgb
from facegate.perception import Perception, _surest


def main() -> None:
    shared = pathlib.Path(os.environ.get("FACEGATE_SHARED", "../shared")) / "datasets"
    perception = Perception()
    for name in ("lfw-dev", "celeba-dev"):
        files = sorted((shared / name).rglob("*.jpg"))
        finder = sum(
            not any(f.rejected is None and not f.unplaced for f in perception.faces(load_rgb(p), "RGB"))
            for p in files
        )
        print(f"{name}: {finder} of {len(files)} images take the finder's path")
    gaps = []
    for path in sorted((shared / "celeba-dev").rglob("*.jpg")):
        rgb = load_rgb(path)
        upright = _surest(perception._photo_faces(rgb))
        turned = _surest(perception._photo_faces(np.ascontiguousarray(rgb[::-1, ::-1])))
        gaps.append(upright - turned)
    g = np.array(gaps)
    for margin in (0.0, 0.05, 0.1, 0.15, 0.2):
        print(
            f"margin {margin}: upside down, upright surer by more: {np.mean(g > margin) * 100:.1f}%; "
            f"upright, turned: {np.mean(-g > margin) * 100:.2f}% ({int(np.sum(-g > margin))} of {len(g)})"
        )


if __name__ == "__main__":
    main()

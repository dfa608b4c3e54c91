"""Pillow's ``reducing_gap`` for the detector's letterbox (``facegate.detect.REDUCING_GAP``).

    .venv/bin/python scripts/dev/letterbox_gap.py time              # resize ms from 640x480, per gap
    .venv/bin/python scripts/dev/letterbox_gap.py count             # faces 40-64 px found, per gap
    .venv/bin/python scripts/dev/letterbox_gap.py cli GAP evaluate identify --root ... --json
                                                                    # any facegate command at that gap

``count`` pastes each bundled photo's face 40-64 px wide into 640x480 frames at three
places (``facegate.demo.scene``) and counts the frames where the whole-frame detector
finds it: the edge of the short-range model's reach, where resampling decides.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from PIL import Image

import facegate.detect
from facegate.demo import PHOTOS, scene
from facegate.perception import Perception

GAPS = (2.0, 1.5, 1.2)
WIDTHS = (40, 44, 48, 52, 56, 60, 64)
PLACES = ((320.0, 240.0), (120.0, 100.0), (520.0, 380.0))


def cmd_time() -> None:
    image = Image.fromarray(scene(PHOTOS / "obama2.jpg", perception=Perception()))
    for gap in GAPS:
        times = []
        for _ in range(400):
            t0 = time.perf_counter()
            image.resize((128, 96), Image.Resampling.BILINEAR, reducing_gap=gap)
            times.append(time.perf_counter() - t0)
        print(f"reducing_gap {gap}: resize 640x480 -> 128x96 median {np.median(times) * 1e3:.3f} ms")


def cmd_count() -> None:
    p = Perception()
    frames = {
        (photo.name, width, place): scene(photo, face_width=float(width), centre=place, perception=p)
        for photo in sorted(PHOTOS.glob("*.jpg"))
        for width in WIDTHS
        for place in PLACES
    }
    for gap in GAPS:
        facegate.detect.REDUCING_GAP = gap
        found = {key: bool(p.detector.detect(frame)) for key, frame in frames.items()}
        by_width = {w: sum(v for k, v in found.items() if k[1] == w) for w in WIDTHS}
        total = sum(found.values())
        print(f"reducing_gap {gap}: found in {total} of {len(found)} frames; by width: {by_width}")


def main() -> int:
    if len(sys.argv) >= 2 and sys.argv[1] == "time":
        cmd_time()
    elif len(sys.argv) >= 2 and sys.argv[1] == "count":
        cmd_count()
    elif len(sys.argv) >= 4 and sys.argv[1] == "cli":
        from facegate.cli import main as cli

        facegate.detect.REDUCING_GAP = float(sys.argv[2])
        sys.argv = ["facegate", *sys.argv[3:]]
        return cli()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

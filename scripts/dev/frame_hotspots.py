"""Where a frame's time goes inside the stages that are compiled code (issue 19): the
letterbox resize and BlazeFace's invoke of detection, and Pillow's affine warp of the chip,
with nearest-neighbour sampling beside it as the floor of that call.

    .venv/bin/python scripts/dev/frame_hotspots.py [--runs 500]

One 640x480 frame with one face (the bundled obama2 photo), 1 thread, mean of
``--runs`` calls after one warm-up; ms per call.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from facegate.align import chip_transform, extract_chip
from facegate.demo import PHOTOS, scene
from facegate.detect import REDUCING_GAP
from facegate.perception import Perception, frame_image


def per_call_ms(call: Callable[[], object], runs: int) -> float:
    call()
    start = time.perf_counter()
    for _ in range(runs):
        call()
    return (time.perf_counter() - start) / runs * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    runs = parser.parse_args().runs
    perception = Perception()
    detector = perception.detector
    rgb = scene(PHOTOS / "obama2.jpg", perception=perception)
    xbgr = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    image = frame_image(xbgr, "RGBX")
    (det,) = perception.detect(rgb)
    refined = detector.refine(rgb, det)
    points = perception.predictor.predict(rgb, perception.landmark_box(refined, True))
    transform = chip_transform(points, perception.chip_size, perception.padding)
    tensor = detector._letterbox(image, detector.size)[0]
    crop = Image.fromarray(rgb[100:300, 200:400])
    affine = (0.9, 0.1, 5.0, -0.1, 0.9, 8.0)
    size = (perception.chip_size, perception.chip_size)
    timings = {
        "detect, whole (XBGR8888 frame)": lambda: perception.detect_frame(xbgr, "RGBX"),
        "  letterbox resize 640x480 -> 128x96": lambda: image.resize(
            (128, 96), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP
        ),
        "  BlazeFace invoke at 128": lambda: detector._net.run(tensor),
        "refine (crop, 80 px invoke)": lambda: detector.refine(rgb, det),
        "landmarks (5-point cascade)": lambda: perception.predictor.predict(
            rgb, perception.landmark_box(refined, True)
        ),
        "chip (extract_chip)": lambda: extract_chip(rgb, transform, perception.chip_size),
        "  Pillow affine warp 150x150, bilinear": lambda: crop.transform(
            size, Image.Transform.AFFINE, affine, Image.Resampling.BILINEAR
        ),
        "  the same, nearest (the call's floor)": lambda: crop.transform(
            size, Image.Transform.AFFINE, affine, Image.Resampling.NEAREST
        ),
    }
    for name, call in timings.items():
        print(f"{name:42s} {per_call_ms(call, runs):7.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

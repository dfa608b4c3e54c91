"""Issue 19: what compiling the landmark cascade would buy (numba, which has wheels for the
Pi's Pythons; not a facegate dependency).

The same cascade as ``facegate.landmarks.ShapePredictor.predict`` (same arrays, float64 shape
arithmetic, dlib's grey, float32 split tests), written as loops for numba's JIT. Prints its
first-call cost, its parity with the shipped numpy code on jittered boxes over lfw-dev images,
and both timings alternated on one 640x480 frame (1 thread, ms per call).

    .venv/bin/pip install --target /tmp/nbpkgs numba
    PYTHONPATH=/tmp/nbpkgs NUMBA_CACHE_DIR=/tmp/nbcache .venv/bin/python scripts/dev/numba_cascade.py
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

from facegate.demo import PHOTOS, scene
from facegate.images import load_rgb
from facegate.landmarks import ShapePredictor
from facegate.perception import Perception

try:
    import numba
except ImportError:
    sys.exit("numba is not installed: see this script's docstring")

LFW = pathlib.Path("../shared/datasets/lfw-dev")


@numba.njit(cache=True, nogil=True)
def cascade(flat, w, h, shape0, placement, pair_a, pair_b, thresh, leaves, splits, depth, extent, origin):  # type: ignore[no-untyped-def]
    levels, rows, coords = placement.shape
    features = rows // 2
    trees = thresh.shape[1] // 16
    shape = shape0.copy()
    values = np.empty(features, np.float32)
    for level in range(levels):
        for f in range(features):
            x = 0.0
            y = 0.0
            for k in range(coords):
                x += placement[level, f, k] * shape[k]
                y += placement[level, features + f, k] * shape[k]
            px = np.rint(x * extent[0] + origin[0])
            py = np.rint(y * extent[1] + origin[1])
            if px < 0 or py < 0 or px >= w or py >= h:
                values[f] = 0.0  # dlib reads 0 outside the image
            else:
                at = int(px) + int(py) * w
                if flat.shape[1] == 1:
                    values[f] = np.float32(flat[at, 0])
                else:
                    total = np.uint16(flat[at, 0]) + np.uint16(flat[at, 1]) + np.uint16(flat[at, 2])
                    values[f] = np.float32(total // 3)
        for t in range(trees):
            node = 0
            for _ in range(depth):
                i = t * 16 + node
                if values[pair_a[level, i]] - values[pair_b[level, i]] > thresh[level, i]:
                    node = 2 * node + 1
                else:
                    node = 2 * node + 2
            leaf = t * (splits + 1) + node - splits
            for k in range(coords):
                shape[k] += leaves[level, leaf, k]
    return shape


def predict(sp: ShapePredictor, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    left, top, right, bottom = (float(v) for v in box)
    origin = np.array([left, top])
    extent = np.array([right - left, bottom - top])
    h, w = image.shape[:2]
    flat = np.ascontiguousarray(image).reshape(h * w, -1)[:, :3]
    args = (sp._placement, sp._pair_a, sp._pair_b, sp._flat_thresh, sp._flat_leaves, sp.splits, sp.depth)
    shape = cascade(flat, w, h, sp.initial.reshape(-1).copy(), *args, extent, origin)
    return np.asarray(shape.reshape(-1, 2) * extent + origin)


def main() -> None:
    perception = Perception(num_threads=1)
    sp = perception.predictor
    rgb = scene(PHOTOS / "obama2.jpg", perception=perception)
    (det,) = perception.detect(rgb)
    box = perception.landmark_box(perception.detector.refine(rgb, det), True)
    started = time.perf_counter()
    predict(sp, rgb, box)
    first = time.perf_counter() - started
    print(f"numba {numba.__version__}: first call (compile, or load from NUMBA_CACHE_DIR) {first:.2f} s")
    rng = np.random.default_rng(0)
    worst, boxes = 0.0, 0
    for path in sorted(LFW.glob("*/*.jpg"))[:300]:
        image = load_rgb(path)
        for _ in range(2):
            b = tuple(float(c + rng.normal() * 5) for c in (60, 60, 190, 190))
            worst = max(worst, float(np.abs(sp.predict(image, b) - predict(sp, image, b)).max()))
            boxes += 1
    print(f"parity: {boxes} boxes on lfw-dev images, largest difference {worst:.1e} px")
    runs = 2000
    for _ in range(3):
        for name, call in (("numpy (shipped)", sp.predict), ("numba", lambda i, b: predict(sp, i, b))):
            call(rgb, box)
            started = time.perf_counter()
            for _ in range(runs):
                call(rgb, box)
            print(f"{name:16s} {(time.perf_counter() - started) / runs * 1000:.3f} ms a face", flush=True)


if __name__ == "__main__":
    main()

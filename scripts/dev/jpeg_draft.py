"""Large JPEGs decoded at reduced scale (``facegate.images.JPEG_LONG_SIDE``): cost and effect.

    .venv/bin/python scripts/dev/jpeg_draft.py

- ``cost``: a bundled photo saved as a phone would (4032x3024, 12 MP; 8064x6048, 48 MP;
  JPEG quality 90), decoded by ``load_rgb`` in a fresh process, with the reduced-scale
  decoding off (``load_rgb(reduce=False)``) and on: milliseconds (median of 5)
  and the process's peak RSS over what it held once facegate.images was imported.
- ``effect``: every image of ``../shared/datasets`` whose long side is at least twice the
  limit, embedded from the full decoding and from the reduced one: the distance between the
  two embeddings of each, beside the shipped threshold.
"""

from __future__ import annotations

import io
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

from facegate.decide import OperatingPoint
from facegate.demo import PHOTOS
from facegate.encoder import Encoder
from facegate.enroll import Enroller, RefusedError
from facegate.images import JPEG_LONG_SIDE, load_rgb
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"

CHILD = """
import io, statistics, sys, time
import facegate.images as images
def hwm():  # this process's peak RSS in MB (VmHWM starts afresh at exec, unlike ru_maxrss)
    line = next(x for x in open("/proc/self/status") if x.startswith("VmHWM"))
    return int(line.split()[1]) / 1024
base = hwm()
reduce = sys.argv[2] == "on"
data = open(sys.argv[1], "rb").read()
times = []
for _ in range(5):
    t0 = time.perf_counter()
    rgb = images.load_rgb(io.BytesIO(data), reduce=reduce)
    times.append(time.perf_counter() - t0)
    del rgb
print(f"{statistics.median(times) * 1e3:.0f} {hwm() - base:.0f}")
"""


def cost() -> None:
    photo = Image.open(PHOTOS / "obama.jpg").convert("RGB")
    with tempfile.TemporaryDirectory() as tmp:
        for size in ((4032, 3024), (8064, 6048)):
            path = pathlib.Path(tmp) / f"{size[0]}.jpg"
            photo.resize(size).save(path, "JPEG", quality=90)
            row = []
            for mode in ("off", "on"):
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(path), mode], capture_output=True, text=True, check=True
                ).stdout.split()
                row.append(f"{mode}: {out[0]} ms, +{out[1]} MB peak RSS")
            print(f"{size[0]}x{size[1]} ({path.stat().st_size // 1024} KB): " + "; ".join(row))


def effect() -> None:
    limit = JPEG_LONG_SIDE
    large = []
    for path in sorted(DATASETS.rglob("*.jpg")):
        with Image.open(path) as image:
            if max(image.size) >= 2 * limit:
                large.append(path)
    enroller = Enroller(Perception(), Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite"))
    threshold = OperatingPoint.from_card(enroller.encoder.card, 1e-3).threshold
    distances = []
    for path in large:
        data = path.read_bytes()
        try:
            full = enroller.sample_from_rgb(load_rgb(io.BytesIO(data), reduce=False), str(path))
            reduced = enroller.sample_from_rgb(load_rgb(io.BytesIO(data)), str(path))
        except RefusedError as exc:
            print(f"{path.relative_to(DATASETS)}: {exc}")
            continue
        distances.append(float(np.linalg.norm(full.vector - reduced.vector)))
        print(f"{path.relative_to(DATASETS)}: distance {distances[-1]:.4f}")
    print(
        f"{len(large)} images with a long side of {2 * limit} px or more; embedding moved by median "
        f"{np.median(distances):.4f}, max {max(distances):.4f} (shipped threshold {threshold:.4f})"
    )


if __name__ == "__main__":
    cost()
    effect()

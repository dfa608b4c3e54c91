"""Odd camera frames through the pipeline: does anything escape as an exception?

    .venv/bin/python scripts/dev/fuzz_frames.py [--frames 600] [--seed 0]

A camera shows the world, and the world is not kind: faces cut by the frame edge, tiny
or huge, mirrored or turned, frames black, thresholded or drowned in noise, in every
layout a source gives (RGB, BGR, RGBX, grey) and sizes from 17x33 to 1920x1080. Each
frame goes through ``Perception.faces`` and the encoder, as the daemon's ``step`` does;
an exception there would end the daemon (systemd restarts it). Prints how many frames,
usable faces and failures (with the first three tracebacks).
"""

from __future__ import annotations

import argparse
import traceback

import numpy as np
from PIL import Image

from facegate.demo import PHOTOS
from facegate.encoder import Encoder
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception

SIZES = [(480, 640), (240, 320), (960, 1280), (100, 100), (17, 33), (1080, 1920)]
PHOTO_NAMES = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg")


def frame(rng: np.random.Generator, photos: list[np.ndarray]) -> tuple[np.ndarray, str]:
    h, w = SIZES[rng.integers(len(SIZES))]
    out = np.full((h, w, 3), rng.integers(256), np.uint8)
    photo = photos[rng.integers(len(photos))]
    scale = float(np.exp(rng.uniform(np.log(0.05), np.log(6))))
    size = (max(1, int(photo.shape[1] * scale)), max(1, int(photo.shape[0] * scale)))
    face = np.asarray(Image.fromarray(photo).resize(size))
    if rng.random() < 0.3:
        face = face[:, ::-1]
    if rng.random() < 0.3:
        face = np.ascontiguousarray(np.rot90(face, int(rng.integers(1, 4))))
    y, x = int(rng.integers(-face.shape[0], h)), int(rng.integers(-face.shape[1], w))
    y0, x0, y1, x1 = max(0, y), max(0, x), min(h, y + face.shape[0]), min(w, x + face.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = face[y0 - y : y1 - y, x0 - x : x1 - x]
    r = rng.random()
    if r < 0.1:
        out = (out > 128).astype(np.uint8) * 255
    elif r < 0.2:
        out = np.clip(out.astype(int) + rng.normal(0, 60, out.shape), 0, 255).astype(np.uint8)
    elif r < 0.25:
        out[:] = 0
    layout = ["RGB", "BGR"][rng.integers(2)]
    if rng.random() < 0.2:
        out, layout = np.dstack([out, np.full(out.shape[:2], 255, np.uint8)]), "RGBX"
    if rng.random() < 0.1:
        out = np.ascontiguousarray(out[..., 0])
    return out, layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    perception = Perception()
    encoder = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite")
    rng = np.random.default_rng(args.seed)
    photos = [np.asarray(Image.open(PHOTOS / name).convert("RGB")) for name in PHOTO_NAMES]
    failures = faces = 0
    for _ in range(args.frames):
        image, layout = frame(rng, photos)
        try:
            chips = [f.chip for f in perception.faces(image, layout) if f.rejected is None]
            faces += len(chips)
            if chips and not np.isfinite(encoder.embed(np.stack(chips))).all():
                raise ValueError("an embedding that is not finite")
        except Exception:
            failures += 1
            if failures <= 3:
                traceback.print_exc()
                print(f"frame {image.shape} {layout}")
    print(f"seed {args.seed}: {args.frames} frames, {faces} usable faces, {failures} failures")


if __name__ == "__main__":
    main()

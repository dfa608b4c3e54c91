"""DEV ONLY: dlib's own detection + 5-point landmarks for a list of images.

Runs in a separate environment with dlib (`pip install dlib`, ~6 min build),
never in facegate's. Writes an .npz of paths and landmarks; images where dlib's
HOG detector (upsampled once) finds no face get NaN landmarks. When several
faces are found, the one nearest the image centre is kept (LFW's protocol).

    python scripts/dev/dlib_landmarks.py --root DIR --pairs pairs.txt \
        --predictor .../shape_predictor_5_face_landmarks.dat --out dlib_landmarks.npz
"""

from __future__ import annotations

import argparse
import pathlib

import dlib  # type: ignore[import-not-found]
import numpy as np
from PIL import Image


def pair_images(pairs: pathlib.Path) -> list[str]:
    lines = [line.split() for line in pairs.read_text().splitlines()[1:] if line.strip()]
    out = set()
    for f in lines:
        if len(f) == 3:
            out |= {f"{f[0]}/{f[0]}_{int(f[1]):04d}.jpg", f"{f[0]}/{f[0]}_{int(f[2]):04d}.jpg"}
        else:
            out |= {f"{f[0]}/{f[0]}_{int(f[1]):04d}.jpg", f"{f[2]}/{f[2]}_{int(f[3]):04d}.jpg"}
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=pathlib.Path, required=True)
    parser.add_argument("--pairs", type=pathlib.Path, required=True)
    parser.add_argument("--predictor", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(args.predictor))
    paths = pair_images(args.pairs)
    marks = np.full((len(paths), 5, 2), np.nan)
    for i, rel in enumerate(paths):
        image = np.asarray(Image.open(args.root / rel).convert("RGB"))
        rects = detector(image, 1)
        if rects:
            cx, cy = image.shape[1] / 2, image.shape[0] / 2
            rect = min(
                rects,
                key=lambda r: ((r.left() + r.right()) / 2 - cx) ** 2 + ((r.top() + r.bottom()) / 2 - cy) ** 2,
            )
            shape = predictor(image, rect)
            marks[i] = [(shape.part(k).x, shape.part(k).y) for k in range(5)]
        if i % 500 == 0:
            print(f"{i}/{len(paths)}", flush=True)
    np.savez(args.out, paths=np.array(paths), landmarks5=marks)
    print(f"wrote {args.out}: {int(np.isnan(marks[:, 0, 0]).sum())} of {len(paths)} without a face")


if __name__ == "__main__":
    main()

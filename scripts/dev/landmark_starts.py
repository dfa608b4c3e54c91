"""Issue 20: the stage swap puts the rest of the gap to dlib in the box the landmark cascade
starts from. Does averaging the cascade's landmarks over several start boxes (the
shipped box scaled and moved a little) steady the chip?

``embed``: for every image (the shipped pipeline's face: largest, or central for lfw), the
landmarks from 9 start boxes (scale 0.9/1/1.1 x shifted up/none/down by 6% of the box)
and the int8 embeddings of the chips from the shipped start and from the mean landmarks
of several subsets of the starts. ``score``: celeba-dev rank-1, DIR against the lfw-dev
strangers, lfw-dev 10-fold; each subset used on both sides, and on the enrolled side only
(the camera path unchanged).

    .venv/bin/python scripts/dev/landmark_starts.py embed ../shared/datasets/celeba-dev /tmp/ls/celeba.npz
    .venv/bin/python scripts/dev/landmark_starts.py embed ../shared/datasets/lfw-dev /tmp/ls/lfw.npz \\
        --pairs ../shared/datasets/lfw-dev/pairs-dev.txt
    .venv/bin/python scripts/dev/landmark_starts.py score /tmp/ls
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import numpy as np
from augment_enroll import cli, load_views, setup  # scripts/dev is on sys.path when run

from facegate.align import chip_transform, extract_chip
from facegate.convert.evaluate import parse_pairs, pick_face
from facegate.convert.identify import identification_metrics, stranger_pool_metrics
from facegate.convert.metrics import ten_fold
from facegate.decide import OperatingPoint
from facegate.encoder import Encoder
from facegate.images import load_rgb
from facegate.modelcard import MODELS_DIR

STARTS = [(s, dy) for s in (0.9, 1.0, 1.1) for dy in (-0.06, 0.0, 0.06)]  # index 4: the shipped box
SUBSETS = {"shipped": [4], "scales3": [1, 4, 7], "cross5": [1, 3, 4, 5, 7], "all9": list(range(9))}


def embed(root: pathlib.Path, out: pathlib.Path, pairs: pathlib.Path | None) -> None:
    encoder, perception, pick, paths = setup(root, pairs)
    keys, vectors = [], []
    started = time.time()
    for n, rel in enumerate(paths):
        rgb = load_rgb(root / rel)
        detections = perception.detect(rgb)
        faces = [perception.face(rgb, d) for d in detections]
        if faces:
            i = pick_face(faces, rgb.shape, pick)
            face = faces[i]
            if face.rejected is None:
                small = detections[i].width * perception.detector.size / max(rgb.shape[:2])
                refined = perception.refine and small < perception.refine_below
                left, top, right, bottom = perception.landmark_box(face.detection, refined)
                cx, cy, half = (left + right) / 2, (top + bottom) / 2, (right - left) / 2
                points = []
                for scale, dy in STARTS:
                    h = half * scale
                    y = cy + dy * 2 * half
                    points.append(perception.predictor.predict(rgb, (cx - h, y - h, cx + h, y + h)))
                assert np.allclose(points[4], face.landmarks)
                chips = [
                    extract_chip(rgb, chip_transform(np.mean([points[j] for j in subset], axis=0)), 150)
                    for subset in SUBSETS.values()
                ]
                keys.append(rel)
                vectors.append(encoder.embed(np.stack(chips)))
        if (n + 1) % 500 == 0:
            left_min = (time.time() - started) / (n + 1) * (len(paths) - n - 1) / 60
            print(f"{n + 1}/{len(paths)} {left_min:.1f} min left", file=sys.stderr, flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, paths=np.array(keys), views=np.stack(vectors).astype(np.float32), subsets=list(SUBSETS))


def score(folder: pathlib.Path) -> None:
    op = OperatingPoint.from_card(Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite").card, 1e-3)
    c_views, l_views, folders = load_views(folder)
    pairs = parse_pairs(pathlib.Path("../shared/datasets/lfw-dev/pairs-dev.txt"))
    same = np.array([p.same for p in pairs])
    for j, name in enumerate(SUBSETS):
        for side in ("both", "enrolled"):
            probe = j if side == "both" else 0
            emb = {p: v[probe] for p, v in c_views.items()}
            for f in folders.values():
                emb[f[0]] = c_views[f[0]][j]
            closed = identification_metrics(folders, emb, op)
            strangers = {k: v[probe] for k, v in l_views.items()}
            pool = stranger_pool_metrics(folders, emb, strangers, op, rounds=300)
            d = np.array(
                [
                    float(np.linalg.norm(l_views[p.a][j] - l_views[p.b][probe]))
                    if p.a in l_views and p.b in l_views
                    else np.inf
                    for p in pairs
                ]
            )
            tf = ten_fold(d, same, np.array([p.fold for p in pairs]))
            row = {
                "celeba_rank1": round(closed["rank1"], 4),
                "dir_fpir_1%": pool["dir_at_fpir"]["0.01"],
                "dir_fpir_0.1%": pool["dir_at_fpir"]["0.001"],
                "fpir_at_threshold": pool["operating_point"]["fpir"]["value"],
                "lfw_10fold": round(tf["accuracy"], 4),
                "lfw_far": float(np.mean(d[~same] < op.threshold)),
                "lfw_tar": float(np.mean(d[same] < op.threshold)),
            }
            print(name, side, json.dumps(row), flush=True)


if __name__ == "__main__":
    cli(embed, score)

"""Issue 20: templates from augmented views of the one enrollment photo, measured one-shot.

A view is the chip itself, its mirror image, or a chip cut with the five landmarks
shifted, scaled or turned a little (deterministic, unlike dlib's random jitter). Not
shipped: see BENCHMARKS.md "Enrollment from augmented views".

``embed``: every image of a root through the shipped pipeline (int8, one thread); for the
chosen face, the embeddings of each view in ``facegate.augment`` terms (saved to npz).
``score``: the template of an enrolled image is the normalised mean of a subset of its
views; probes always use the plain chip (the camera path is unchanged).

    .venv/bin/python scripts/dev/augment_enroll.py embed ../shared/datasets/celeba-dev /tmp/aug/celeba.npz
    .venv/bin/python scripts/dev/augment_enroll.py embed ../shared/datasets/lfw-dev /tmp/aug/lfw.npz \\
        --pairs ../shared/datasets/lfw-dev/pairs-dev.txt
    .venv/bin/python scripts/dev/augment_enroll.py score /tmp/aug
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Callable

import numpy as np

from facegate.align import chip_transform, extract_chip
from facegate.convert.evaluate import parse_pairs, pick_face
from facegate.convert.identify import (
    group_by_identity,
    identification_metrics,
    identity_folders,
    stranger_pool_metrics,
)
from facegate.convert.metrics import ten_fold
from facegate.decide import OperatingPoint
from facegate.encoder import Encoder
from facegate.images import load_rgb
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception


@dataclasses.dataclass(frozen=True)
class View:
    shift: tuple[float, float] = (0.0, 0.0)  # in eye-to-eye distances (x, y)
    scale: float = 1.0
    angle: float = 0.0  # degrees
    mirror: bool = False


def _moved(points: np.ndarray, view: View) -> np.ndarray:
    centre = points.mean(axis=0)
    ocular = float(np.hypot(*(points[0] - points[2])))
    a = np.radians(view.angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return centre + (points - centre) @ rot.T * view.scale + np.array(view.shift) * ocular


def views(
    rgb: np.ndarray, points: np.ndarray, chosen: tuple[View, ...], size: int = 150, padding: float = 0.25
) -> np.ndarray:
    """The chips of ``chosen`` views of the face at ``points`` (5 dlib-order landmarks)."""
    out = []
    for view in chosen:
        moved = _moved(np.asarray(points, np.float64), view)
        chip = extract_chip(rgb, chip_transform(moved, size, padding), size)
        out.append(chip[:, ::-1] if view.mirror else chip)
    return np.ascontiguousarray(np.stack(out))


ALL = (
    View(),
    View(mirror=True),
    View(shift=(0.06, 0.0)),
    View(shift=(-0.06, 0.0)),
    View(shift=(0.0, 0.06)),
    View(shift=(0.0, -0.06)),
    View(scale=1.06),
    View(scale=0.94),
    View(angle=5.0),
    View(angle=-5.0),
    View(shift=(0.06, 0.0), mirror=True),
    View(shift=(-0.06, 0.0), mirror=True),
    View(scale=1.06, mirror=True),
    View(scale=0.94, mirror=True),
)
QUALITY = ("eye_distance", "yaw", "sharpness", "score")
SUBSETS = {
    "plain": [0],
    "mirror": [0, 1],
    "shifts": [0, 2, 3, 4, 5],
    "scales": [0, 6, 7],
    "turns": [0, 8, 9],
    "mirror+shifts+scales": [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13],
    "all": list(range(len(ALL))),
}


def setup(root: pathlib.Path, pairs: pathlib.Path | None) -> tuple[Encoder, Perception, str, list[str]]:
    """The shipped int8 encoder (one thread), perception, which face to take, and the images:
    those the pairs file names, or every image of the identity folders."""
    encoder = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite", num_threads=1)
    pick = "central" if "lfw" in root.name else "largest"  # LFW labels the centred face
    if pairs:
        paths = sorted({p for pair in parse_pairs(pairs) for p in (pair.a, pair.b)})
    else:
        paths = [p for v in identity_folders(root).values() for p in v]
    return encoder, Perception(), pick, paths


def load_views(
    folder: pathlib.Path,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, list[str]]]:
    """celeba-dev's and lfw-dev's views by image, and celeba-dev's identity folders (2+ images)."""
    celeba, lfw = np.load(folder / "celeba.npz"), np.load(folder / "lfw.npz")
    c_views = dict(zip(celeba["paths"].tolist(), celeba["views"]))
    l_views = dict(zip(lfw["paths"].tolist(), lfw["views"]))
    folders = {k: v for k, v in group_by_identity(c_views).items() if len(v) >= 2}
    return c_views, l_views, folders


def embed(root: pathlib.Path, out: pathlib.Path, pairs: pathlib.Path | None) -> None:
    encoder, perception, pick, paths = setup(root, pairs)
    keys, vectors, quality = [], [], []
    started = time.time()
    for n, rel in enumerate(paths):
        rgb = load_rgb(root / rel)
        faces = perception.faces(rgb)
        if faces:
            face = faces[pick_face(faces, rgb.shape, pick)]
            if face.rejected is None:
                keys.append(rel)
                vectors.append(encoder.embed(views(rgb, face.landmarks, ALL)))
                quality.append([face.quality[k] for k in QUALITY])
        if (n + 1) % 500 == 0:
            left = (time.time() - started) / (n + 1) * (len(paths) - n - 1) / 60
            print(f"{n + 1}/{len(paths)} {left:.1f} min left", file=sys.stderr, flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        paths=np.array(keys),
        views=np.stack(vectors).astype(np.float32),
        quality=np.array(quality),
        total=len(paths),
    )


def template(v: np.ndarray, subset: list[int]) -> np.ndarray:
    m = v[subset].mean(axis=0)
    return m / np.linalg.norm(m)


def score(folder: pathlib.Path) -> None:
    op = OperatingPoint.from_card(Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite").card, 1e-3)
    c_views, l_views, folders = load_views(folder)
    pairs = parse_pairs(pathlib.Path("../shared/datasets/lfw-dev/pairs-dev.txt"))
    runs = [(name, subset, [0]) for name, subset in SUBSETS.items()]
    runs.append(("mirror-both-sides", [0, 1], [0, 1]))  # the probe mirrored too: test-time, at the camera
    result = {}
    for name, subset, probe in runs:
        # enrolled images (each identity's first) get the template, every other image the probe's views
        strangers = {k: template(v, probe) for k, v in l_views.items()}
        emb = {p: template(v, probe) for p, v in c_views.items()}
        for f in folders.values():
            emb[f[0]] = template(c_views[f[0]], subset)
        closed = identification_metrics(folders, emb, op)
        pool = stranger_pool_metrics(folders, emb, strangers, op, rounds=300)
        d = np.array(
            [
                float(np.linalg.norm(template(l_views[p.a], subset) - template(l_views[p.b], probe)))
                if p.a in l_views and p.b in l_views
                else np.inf
                for p in pairs
            ]
        )
        same = np.array([p.same for p in pairs])
        tf = ten_fold(d, same, np.array([p.fold for p in pairs]))
        result[name] = {
            "celeba_rank1": round(closed["rank1"], 4),
            "celeba_dir_fpir1%_half": round(closed["dir_at_fpir"]["0.01"], 4),
            "celeba_vs_lfw_strangers": {
                "rank1": pool["rank1"],
                "dir_fpir_1%": pool["dir_at_fpir"]["0.01"],
                "dir_fpir_0.1%": pool["dir_at_fpir"]["0.001"],
                "op": pool["operating_point"],
            },
            "lfw_10fold": round(tf["accuracy"], 4),
            "lfw_std": round(tf["accuracy_std"], 4),
            "lfw_far_at_threshold": float(np.mean(d[~same] < op.threshold)),
            "lfw_tar_at_threshold": float(np.mean(d[same] < op.threshold)),
        }
        print(name, json.dumps(result[name]), flush=True)


def cli(
    embed: Callable[[pathlib.Path, pathlib.Path, pathlib.Path | None], None],
    score: Callable[[pathlib.Path], None],
) -> None:
    """``embed ROOT OUT [--pairs P]`` | ``score FOLDER`` (shared with landmark_starts.py)."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("embed")
    e.add_argument("root", type=pathlib.Path)
    e.add_argument("out", type=pathlib.Path)
    e.add_argument("--pairs", type=pathlib.Path)
    s = sub.add_parser("score")
    s.add_argument("folder", type=pathlib.Path)
    args = parser.parse_args()
    if args.cmd == "embed":
        embed(args.root, args.out, args.pairs)
    else:
        score(args.folder)


if __name__ == "__main__":
    cli(embed, score)

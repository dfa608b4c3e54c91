"""Why facegate's landmarks failed on celeba-dev, and what fixed it (BENCHMARKS.md, CelebA).

dlib's 5-point cascade was trained from dlib HOG boxes; facegate maps a BlazeFace
detection to such a box (models/dlib_landmarks5.json, medians fitted on 400 lfw-dev faces).

    gather     BlazeFace detections, dlib HOG boxes (raw, not trimmed to the image) and
               dlib's 5 points from them, for every image of the given folders -> .npz
    fit        a least-squares map from the detection (box + 6 keypoints) to the HOG box,
               fitted on some gathered sets -> .json
    residuals  how far a map's boxes are from the HOG boxes, on each gathered set
    landmarks  facegate's 5 points against dlib's (from dlib's box), per face, started from:
               dlib's HOG box; the shipped map on the whole-frame detection; a fitted map;
               the refined detection (FaceDetector.refine) with its map. By face size in
               BlazeFace's input, where the failures are.

Gathering needs dlib (.venv-dlib); the rest runs in either venv:
    B=".venv-dlib/bin/python scripts/dev/box_map.py"
    $B gather /tmp/boxmap/celeba.npz ../shared/datasets/celeba-dev
    $B fit /tmp/boxmap/map.json /tmp/boxmap/five.npz /tmp/boxmap/fr.npz
    $B residuals /tmp/boxmap/map.json /tmp/boxmap/celeba.npz
    $B landmarks ../shared/datasets/celeba-dev /tmp/boxmap/celeba.npz /tmp/boxmap/map.json
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

import numpy as np


def features(box: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per detection: the shipped map's origin (eyes and mouth), the detection width, and a
    scale-free feature row (keypoints and box centre about that origin, height/width, 1)."""
    mid = (keypoints[:, 0] + keypoints[:, 1]) / 4 + keypoints[:, 3] / 2
    width = box[:, 2] - box[:, 0]
    rel = (keypoints - mid[:, None, :]) / width[:, None, None]
    centre = ((box[:, :2] + box[:, 2:]) / 2 - mid) / width[:, None]
    aspect = (box[:, 3] - box[:, 1]) / width
    rows = np.concatenate([rel.reshape(len(box), -1), centre, aspect[:, None], np.ones((len(box), 1))], 1)
    return mid, width, rows


def targets(hog: np.ndarray, mid: np.ndarray, width: np.ndarray) -> np.ndarray:
    centre = ((hog[:, :2] + hog[:, 2:]) / 2 - mid) / width[:, None]
    side = np.log((hog[:, 2] - hog[:, 0]) / width)
    return np.concatenate([centre, side[:, None]], 1)


def apply_map(mapping: dict[str, Any], box: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """HOG-style boxes (N, 4) from detections, with a shipped-style or a linear map."""
    mid, width, rows = features(box, keypoints)
    if "coef" in mapping:
        out = rows @ np.array(mapping["coef"])
        centre, side = mid + out[:, :2] * width[:, None], np.exp(out[:, 2]) * width
    else:
        centre = mid + np.array([mapping["kx"], mapping["ky"]]) * width[:, None]
        side = mapping["k"] * width
    return np.concatenate([centre - side[:, None] / 2, centre + side[:, None] / 2], 1)


def _within(point: np.ndarray, box: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


def gather(out: pathlib.Path, roots: list[pathlib.Path]) -> None:
    import face_recognition.api as api

    from facegate.images import IMAGE_SUFFIXES, load_rgb
    from facegate.perception import Perception

    perception = Perception()
    rows: dict[str, list[Any]] = {k: [] for k in ("path", "box", "keypoints", "score", "hog", "dlib5")}
    paths = [p for root in roots for p in sorted(root.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    for n, path in enumerate(paths):
        image = load_rgb(path)
        found = perception.detector.detect(image)
        for rect in api.face_detector(image, 1):
            hog = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float64)
            centre = (hog[:2] + hog[2:]) / 2
            inside = [d for d in found if _within(np.add(d.box[:2], d.box[2:]) / 2, hog)]
            if not inside:
                continue
            det = min(inside, key=lambda d: float(np.hypot(*(np.add(d.box[:2], d.box[2:]) / 2 - centre))))
            shape = api.pose_predictor_5_point(image, rect)
            rows["path"].append(str(path.relative_to(path.parents[1])))
            rows["box"].append(np.array(det.box, np.float64))
            rows["keypoints"].append(np.array(det.keypoints, np.float64))
            rows["score"].append(det.score)
            rows["hog"].append(hog)
            rows["dlib5"].append(np.array([[p.x, p.y] for p in shape.parts()], np.float64))
        if (n + 1) % 100 == 0:
            print(f"{n + 1}/{len(paths)} images, {len(rows['path'])} faces", file=sys.stderr, flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **{k: np.array(v) for k, v in rows.items()})  # type: ignore[arg-type]
    print(f"{out}: {len(rows['path'])} faces from {len(paths)} images")


def _load(paths: list[pathlib.Path]) -> dict[str, np.ndarray]:
    sets = [dict(np.load(p)) for p in paths]
    return {k: np.concatenate([s[k] for s in sets]) for k in sets[0]}


def residuals(mapping: dict[str, Any], data: dict[str, np.ndarray]) -> dict[str, float]:
    """How far the mapped box is from dlib's HOG box, in HOG-box widths."""
    boxes = apply_map(mapping, data["box"], data["keypoints"])
    side = data["hog"][:, 2] - data["hog"][:, 0]
    shift = (
        np.hypot(*(((boxes[:, :2] + boxes[:, 2:]) - (data["hog"][:, :2] + data["hog"][:, 2:])) / 2).T) / side
    )
    scale = np.abs(np.log((boxes[:, 2] - boxes[:, 0]) / side))
    return {
        "faces": len(side),
        "centre_median": round(float(np.median(shift)), 4),
        "centre_p90": round(float(np.percentile(shift, 90)), 4),
        "scale_median": round(float(np.median(scale)), 4),
        "scale_p90": round(float(np.percentile(scale, 90)), 4),
    }


def fit(data: dict[str, np.ndarray], ridge: float = 1e-3) -> dict[str, Any]:
    mid, width, rows = features(data["box"], data["keypoints"])
    y = targets(data["hog"], mid, width)
    gram = rows.T @ rows + ridge * len(rows) * np.diag([1.0] * (rows.shape[1] - 1) + [0.0])
    coef = np.linalg.solve(gram, rows.T @ y)
    return {"coef": coef.round(6).tolist(), "fitted_on": len(rows)}


def landmarks(root: pathlib.Path, gathered: pathlib.Path, maps: list[pathlib.Path]) -> None:
    """Mean distance from facegate's 5 points to dlib's, in units of the eye-to-eye distance."""
    from PIL import Image

    from facegate.detect import Detection
    from facegate.images import load_rgb
    from facegate.perception import Perception

    data = dict(np.load(gathered))
    frame, refined = Perception(refine=False), Perception(refine=True)
    fitted = {p.name: json.loads(p.read_text()) for p in maps}
    errors: dict[str, list[float]] = {}
    in_input = []
    for i, rel in enumerate(data["path"]):
        image = load_rgb(root / rel)
        ref = data["dlib5"][i]
        unit = float(np.linalg.norm((ref[0] + ref[1]) / 2 - (ref[2] + ref[3]) / 2))
        det = Detection(tuple(data["box"][i]), float(data["score"][i]), data["keypoints"][i])
        boxes = {
            "dlib HOG box": tuple(data["hog"][i]),
            "whole frame, shipped map": frame.landmark_box(det),
            "refined, its map (shipped)": refined.landmark_box(refined.detector.refine(image, det)),
        }
        for name, mapping in fitted.items():
            boxes[f"whole frame, {name}"] = tuple(
                apply_map(mapping, data["box"][i : i + 1], data["keypoints"][i : i + 1])[0]
            )
        for name, box in boxes.items():
            points = frame.predictor.predict(image, box)
            errors.setdefault(name, []).append(float(np.linalg.norm(points - ref, axis=1).mean()) / unit)
        with Image.open(root / rel) as im:
            in_input.append(det.width * frame.detector.size / max(im.size))
    size = np.array(in_input)
    print(
        f"{gathered.name}: {len(size)} faces; error in eye-distance units, vs dlib's points from dlib's box"
    )
    for name, e in errors.items():
        err = np.array(e)
        bands = "  ".join(
            f"{lo}-{hi}px {(err[band] > 0.1).sum()}/{band.sum()}"
            for lo, hi in ((0, 24), (24, 32), (32, 48), (48, 1000))
            for band in [(size >= lo) & (size < hi)]
        )
        print(
            f"  {name:32s} median {np.median(err):.4f} p99 {np.percentile(err, 99):.3f} "
            f"over 0.1: {(err > 0.1).sum():3d} over 0.2: {(err > 0.2).sum():3d} | over 0.1 by face width in "
            f"the detector's input: {bands}"
        )


def main(argv: list[str]) -> None:
    command, out, *rest = argv
    if command == "gather":
        gather(pathlib.Path(out), [pathlib.Path(r) for r in rest])
    elif command == "fit":
        mapping = fit(_load([pathlib.Path(r) for r in rest]))
        pathlib.Path(out).write_text(json.dumps(mapping))
        print(json.dumps({k: v for k, v in mapping.items() if k != "coef"}))
    elif command == "residuals":
        mapping = json.loads(pathlib.Path(out).read_text())
        mapping = mapping.get("alignment", {}).get("box_from_blazeface", mapping)
        for r in rest:
            print(r, json.dumps(residuals(mapping, _load([pathlib.Path(r)]))))
    elif command == "landmarks":
        landmarks(pathlib.Path(out), pathlib.Path(rest[0]), [pathlib.Path(r) for r in rest[1:]])
    else:
        raise SystemExit(f"unknown command {command!r}: gather, fit, residuals or landmarks")


if __name__ == "__main__":
    main(sys.argv[1:])

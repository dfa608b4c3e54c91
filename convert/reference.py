"""dlib's own results on 400 lfw-dev images (``shared/reference/dlib-lfw-dev.npz``).

The chips are cut from the images with the project's aligner and dlib's
landmarks; on the 60 chips dlib itself stored they are bit-identical.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from facegate.align import align_face
from facegate.errors import FacegateError
from facegate.images import load_rgb

DEFAULT_SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared"


def shared_root() -> pathlib.Path:
    """``$FACEGATE_SHARED`` or the ``shared/`` folder beside the checkout."""
    return pathlib.Path(os.environ.get("FACEGATE_SHARED", DEFAULT_SHARED))


@dataclasses.dataclass(frozen=True)
class ReferenceSet:
    paths: list[str]
    boxes: np.ndarray  # (N, 4) dlib HOG boxes: left, top, right, bottom
    landmarks: np.ndarray  # (N, 5, 2)
    descriptors: np.ndarray  # (N, 128), dlib, not normalised
    dlib_chips: np.ndarray  # (60, 150, 150, 3) as dlib cut them
    dlib_chip_paths: list[str]


def load_reference(root: pathlib.Path | None = None) -> ReferenceSet:
    path = (root or shared_root()) / "reference" / "dlib-lfw-dev.npz"
    if not path.is_file():
        raise FacegateError(f"{path}: dlib reference set not found (set FACEGATE_SHARED)")
    with np.load(path) as ref:
        return ReferenceSet(
            paths=[str(p) for p in ref["paths"]],
            boxes=ref["boxes"].astype(np.float64),
            landmarks=ref["landmarks5"].astype(np.float64),
            descriptors=ref["descriptors"].astype(np.float32),
            dlib_chips=ref["chips"],
            dlib_chip_paths=[str(p) for p in ref["chip_paths"]],
        )


def reference_chips(
    ref: ReferenceSet, indices: range | list[int], root: pathlib.Path | None = None
) -> np.ndarray:
    """Chips aligned exactly as dlib aligns them, for the given reference rows."""
    lfw = (root or shared_root()) / "datasets" / "lfw-dev"
    return np.stack([align_face(load_rgb(lfw / ref.paths[i]), ref.landmarks[i]) for i in indices])

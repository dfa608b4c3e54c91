"""Read dlib's ``shape_predictor_5_face_landmarks.dat`` into flat numpy arrays.

dlib's ``shape_predictor`` (Kazemi & Sullivan's ensemble of regression trees)
serialises as: version, ``initial_shape`` (a column matrix), ``forests``
(cascade levels x trees, each tree a list of splits and a list of leaf
matrices), ``anchor_idx`` and ``deltas`` (per level, the landmark each feature
pixel hangs from and its offset in normalised shape space). Matrices are
written with negated dimensions, then their elements.

Parsing takes a few seconds in Python, so ``facegate convert landmarks``
writes the arrays once to ``models/dlib_landmarks5.npz``; the device loads that.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from facegate.convert.dlib_dat import _Reader
from facegate.errors import ModelFileError


class _ShapeReader(_Reader):
    def read_fast_float(self) -> float:
        return math.ldexp(float(self.read_int()), self.read_int())

    def read_column(self) -> list[float]:
        rows, cols = self.read_int(), self.read_int()
        rows, cols = abs(rows), abs(cols)
        if cols != 1 or not 0 < rows <= 10_000:
            raise self.fail(f"expected a column matrix, found {rows}x{cols}")
        return [self.read_fast_float() for _ in range(rows)]

    def read_count(self, limit: int) -> int:
        count = self.read_int()
        if not 0 <= count <= limit:
            raise self.fail(f"implausible element count {count}")
        return count


def read_shape_predictor(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """Parse the predictor into arrays (see ``facegate.landmarks.ShapePredictor``)."""
    r = _ShapeReader.open(path)
    path, data = r.path, r.data
    version = r.read_int()
    if version != 1:
        raise r.fail(f"expected a dlib shape_predictor (version 1), found version {version}")
    initial = r.read_column()
    levels = r.read_count(1000)
    split_idx, split_thresh, leaves = [], [], []
    for _ in range(levels):
        trees = r.read_count(100_000)
        level_idx, level_thresh, level_leaves = [], [], []
        for _ in range(trees):
            splits = r.read_count(1 << 16)
            pairs, thresholds = [], []
            for _ in range(splits):
                pairs.append((r.read_int(), r.read_int()))
                thresholds.append(r.read_fast_float())
            leaf_count = r.read_count(1 << 17)
            if leaf_count != splits + 1:
                raise r.fail(f"tree has {splits} splits but {leaf_count} leaves")
            level_leaves.append([r.read_column() for _ in range(leaf_count)])
            level_idx.append(pairs)
            level_thresh.append(thresholds)
        split_idx.append(level_idx)
        split_thresh.append(level_thresh)
        leaves.append(level_leaves)
    if r.read_count(1000) != levels:
        raise r.fail("anchor list does not match the cascade")
    anchors = [[r.read_int() for _ in range(r.read_count(100_000))] for _ in range(levels)]
    if r.read_count(1000) != levels:
        raise r.fail("delta list does not match the cascade")
    deltas = [
        [(r.read_fast_float(), r.read_fast_float()) for _ in range(r.read_count(100_000))]
        for _ in range(levels)
    ]
    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos} unexpected trailing bytes")
    try:
        return {
            "initial_shape": np.asarray(initial, np.float32).reshape(-1, 2),
            "split_idx": np.asarray(split_idx, np.int32),  # (levels, trees, splits, 2)
            "split_thresh": np.asarray(split_thresh, np.float32),  # (levels, trees, splits)
            "leaves": np.asarray(leaves, np.float32).reshape(
                levels, len(leaves[0]), -1, len(initial) // 2, 2
            ),
            "anchor_idx": np.asarray(anchors, np.int32),  # (levels, pixels)
            "deltas": np.asarray(deltas, np.float32),  # (levels, pixels, 2)
        }
    except ValueError as exc:  # ragged: trees of different depth, which dlib never writes
        raise ModelFileError(path, f"irregular cascade: {exc}") from None

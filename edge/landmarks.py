"""dlib's 5-point landmarks (ensemble of regression trees) in vectorised numpy.

Runs the arrays that ``facegate convert landmarks`` extracted from
``shape_predictor_5_face_landmarks.dat`` (CC0): a cascade of levels; at each
level, 800 feature pixels placed relative to the current shape are sampled
(grey = integer mean of R, G, B, as dlib does), 500 depth-4 trees compare pixel
pairs, and their leaf offsets are added to the shape. All trees of a level
are walked at once.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from facegate.errors import InputError, ModelFileError

_KEYS = ("initial_shape", "split_idx", "split_thresh", "leaves", "anchor_idx", "deltas")


def to_grey(image: np.ndarray) -> np.ndarray:
    """dlib's intensity of an RGB pixel: (r + g + b) // 3."""
    if image.ndim == 2:
        return image.astype(np.uint8)
    total = image[..., 0].astype(np.uint16) + image[..., 1] + image[..., 2]
    return (total // 3).astype(np.uint8)


class ShapePredictor:
    """Loads the predictor arrays once; ``predict`` maps (image, box) to 5 points."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = pathlib.Path(path)
        try:
            with np.load(path) as data:
                arrays = {key: data[key] for key in _KEYS}
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFileError(path, f"not a facegate landmark model: {exc}") from None
        self.initial = arrays["initial_shape"].astype(np.float32)  # (P, 2), normalised to the box
        self.split_idx = arrays["split_idx"]  # (L, T, S, 2)
        self.split_thresh = arrays["split_thresh"]  # (L, T, S)
        self.leaves = arrays["leaves"]  # (L, T, S + 1, P, 2)
        self.anchor_idx = arrays["anchor_idx"]  # (L, F)
        self.deltas = arrays["deltas"]  # (L, F, 2)
        self.levels, self.trees, self.splits = self.split_thresh.shape
        self.depth = int(np.log2(self.splits + 1))
        # Per level, every split of every tree is evaluated in one vector op
        # (T*S pixel pairs), then the trees are walked on the resulting bits.
        self._pair_a = np.ascontiguousarray(self.split_idx[..., 0].reshape(self.levels, -1))
        self._pair_b = np.ascontiguousarray(self.split_idx[..., 1].reshape(self.levels, -1))
        self._flat_thresh = self.split_thresh.reshape(self.levels, -1)
        self._flat_leaves = self.leaves.reshape(self.levels, -1, self.initial.size)
        self._split_base = np.arange(self.trees) * self.splits
        self._leaf_base = np.arange(self.trees) * (self.splits + 1) - self.splits
        centred = self.initial - self.initial.mean(axis=0)
        self._initial_centred = centred
        self._initial_norm = float((centred**2).sum())

    def _rotation_scale(self, shape: np.ndarray) -> np.ndarray:
        """2x2 part of the least-squares similarity from the mean shape to ``shape``."""
        target = shape - shape.mean(axis=0)
        src = self._initial_centred
        a = float((src * target).sum()) / self._initial_norm
        b = float((src[:, 0] * target[:, 1] - src[:, 1] * target[:, 0]).sum()) / self._initial_norm
        return np.array([[a, -b], [b, a]], np.float32)

    def predict(self, grey: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """Landmarks (P, 2) in image pixels (float) for a face in ``box``.

        ``box`` is (left, top, right, bottom) in dlib's inclusive convention, as
        its HOG detector reports it; ``grey`` is an HxW uint8 image (``to_grey``)
        or an HxWx3 RGB one, whose intensity is taken only at the sampled pixels.
        """
        if grey.ndim not in (2, 3) or grey.size == 0:
            raise InputError(f"expected an HxW grey or HxWx3 RGB image, got shape {grey.shape}")
        left, top, right, bottom = (float(v) for v in box)
        origin = np.array([left, top], np.float32)
        extent = np.array([right - left, bottom - top], np.float32)
        if np.any(extent <= 0):
            raise InputError(f"empty face box {box}")
        h, w = grey.shape[:2]
        # Pixels are read through one flat index; the channels (1 for grey, 3
        # or more for RGB) are averaged only where the cascade reads them.
        flat = np.ascontiguousarray(grey).reshape(h * w, -1)[:, :3]
        limits = np.array([w, h], np.uint64)
        shape = self.initial.copy()
        for level in range(self.levels):
            # Place the feature pixels: the similarity from the mean shape to the
            # current one (rotation and scale only) moves each pixel's offset.
            m = self._rotation_scale(shape)
            points = self.deltas[level] @ m.T + shape[self.anchor_idx[level]]
            pixels = np.rint(points * extent + origin).astype(np.int64)
            # Negative coordinates wrap to huge unsigned ones: one test per axis.
            inside = (pixels.astype(np.uint64) < limits).all(axis=1)
            # intp: take() refuses int64 indices where numpy's index type is 32-bit (armhf)
            at = np.where(inside, pixels[:, 0] + pixels[:, 1] * w, 0).astype(np.intp)
            sampled = flat.take(at, axis=0).sum(axis=1, dtype=np.uint16) // flat.shape[1]
            values = np.where(inside, sampled, 0).astype(np.float32)  # dlib reads 0 outside
            # Every split of the level at once, then walk all trees together on
            # the bits: node i -> 2i+1 (left) or 2i+2.
            diff = values.take(self._pair_a[level]) - values.take(self._pair_b[level])
            bits = diff > self._flat_thresh[level]
            node = np.zeros(self.trees, np.int64)
            for _ in range(self.depth):
                node = 2 * node + 2 - bits.take(self._split_base + node)
            delta = self._flat_leaves[level].take(self._leaf_base + node, axis=0).sum(axis=0)
            shape = shape + delta.reshape(shape.shape)
        return np.asarray(shape * extent + origin, np.float64)

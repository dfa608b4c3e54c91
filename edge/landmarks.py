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
        self.initial = arrays["initial_shape"].astype(np.float64)  # (P, 2), normalised to the box
        self.split_idx = arrays["split_idx"]  # (L, T, S, 2)
        self.split_thresh = arrays["split_thresh"]  # (L, T, S)
        self.leaves = arrays["leaves"]  # (L, T, S + 1, P, 2)
        self.anchor_idx = arrays["anchor_idx"]  # (L, F)
        self.deltas = arrays["deltas"]  # (L, F, 2)
        self.levels, self.trees, self.splits = self.split_thresh.shape
        self.depth = int(np.log2(self.splits + 1))
        if self.splits + 1 != 2**self.depth or self.depth > 4:
            raise ModelFileError(
                path, f"trees of {self.splits} splits: expected complete trees of depth 1 to 4"
            )
        # Where a level puts its feature pixels is linear in the current shape: the
        # similarity from the mean shape (rotation and scale, least squares) has
        # a = <src, shape> / |src|^2 and b = <src x shape> / |src|^2 (src centred, so
        # the shape's own centring drops out), and each pixel is its anchor point plus
        # its offset turned by [[a, -b], [b, a]]. So one (2F, 2P) matrix per level maps
        # the flattened shape (x0, y0, x1, ...) to the pixels' x (first F) then y.
        src = self.initial - self.initial.mean(axis=0)
        norm = float((src**2).sum())
        rot = np.zeros((2, self.initial.size), np.float64)  # rows: a, b
        rot[0, 0::2], rot[0, 1::2] = src[:, 0] / norm, src[:, 1] / norm
        rot[1, 0::2], rot[1, 1::2] = -src[:, 1] / norm, src[:, 0] / norm
        placement = []
        for level in range(self.levels):
            dx, dy = (self.deltas[level, :, k, None].astype(np.float64) for k in (0, 1))
            anchor = np.zeros((len(dx), self.initial.size), np.float64)
            anchor[np.arange(len(dx)), 2 * self.anchor_idx[level]] = 1.0
            xs = dx * rot[0] - dy * rot[1] + anchor
            anchor = np.roll(anchor, 1, axis=1)  # the anchor's y
            ys = dx * rot[1] + dy * rot[0] + anchor
            placement.append(np.concatenate([xs, ys]))
        # float64 throughout the shape's arithmetic: products and sums in another order (another
        # BLAS, another CPU) then move a pixel coordinate by ~1e-16, not ~1e-7, so rounding it to
        # a pixel comes out the same on x86 and Arm (docs/results/pi-check.md, parity).
        self._placement = np.asarray(placement, np.float64)  # (L, 2F, 2P)
        # Every split of a level is evaluated in one vector op (T*16 pixel pairs: each
        # tree's splits padded to 16 with one that never fires). A tree's 16 bits,
        # packed little-endian into one integer, name its leaf through one table
        # shared by all trees (node i -> 2i+1 when its bit is set, else 2i+2).
        pad = ((0, 0), (0, 0), (0, 16 - self.splits))
        self._pair_a = np.pad(self.split_idx[..., 0], pad).reshape(self.levels, -1).astype(np.intp)
        self._pair_b = np.pad(self.split_idx[..., 1], pad).reshape(self.levels, -1).astype(np.intp)
        thresh = np.pad(self.split_thresh.astype(np.float32), pad, constant_values=np.inf)
        self._flat_thresh = thresh.reshape(self.levels, -1)
        self._flat_leaves = self.leaves.reshape(self.levels, -1, self.initial.size).astype(np.float64)
        self._leaf_base = (np.arange(self.trees) * (self.splits + 1)).astype(np.intp)
        codes = np.arange(2**16)
        node = np.zeros_like(codes)
        for _ in range(self.depth):
            node = 2 * node + 2 - ((codes >> node) & 1)
        self._leaf_of_code = (node - self.splits).astype(np.intp)
        self._ones = np.ones(self.trees, np.float64)

    def predict(self, grey: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """Landmarks (P, 2) in image pixels (float) for a face in ``box``.

        ``box`` is (left, top, right, bottom) in dlib's inclusive convention, as
        its HOG detector reports it; ``grey`` is an HxW uint8 image (``to_grey``)
        or an HxWx3 RGB one, whose intensity is taken only at the sampled pixels.
        """
        if grey.ndim not in (2, 3) or grey.size == 0:
            raise InputError(f"expected an HxW grey or HxWx3 RGB image, got shape {grey.shape}")
        left, top, right, bottom = (float(v) for v in box)
        origin = np.array([left, top], np.float64)
        extent = np.array([right - left, bottom - top], np.float64)
        if np.any(extent <= 0):
            raise InputError(f"empty face box {box}")
        h, w = grey.shape[:2]
        # Pixels are read through one flat index; the channels (1 for grey, 3
        # or more for RGB) are averaged only where the cascade reads them.
        flat = np.ascontiguousarray(grey).reshape(h * w, -1)[:, :3]
        channels = flat.shape[1]
        if channels == 2:
            raise InputError(f"expected an HxW grey or HxWx3 RGB image, got shape {grey.shape}")
        scale = np.repeat(extent, len(self.anchor_idx[0]))  # x extent for the F xs, then y
        offset = np.repeat(origin, len(self.anchor_idx[0]))
        limit = np.repeat(np.array([w, h], np.uint64), len(self.anchor_idx[0]))
        features = len(self.anchor_idx[0])
        shape = self.initial.reshape(-1).copy()
        for level in range(self.levels):
            pixels = np.rint(self._placement[level] @ shape * scale + offset).astype(np.int64)
            # Negative coordinates wrap to huge unsigned ones: one test for both axes.
            outside = pixels.astype(np.uint64) >= limit
            outside = outside[:features] | outside[features:]
            # intp: take() refuses int64 indices where numpy's index type is 32-bit (armhf)
            at = (pixels[:features] + pixels[features:] * w).astype(np.intp)
            at[outside] = 0
            sampled = flat.take(at, axis=0)
            if channels == 1:
                values = sampled[:, 0].astype(np.float32)
            else:
                total = sampled[:, 0].astype(np.uint16) + sampled[:, 1] + sampled[:, 2]
                values = (total // 3).astype(np.float32)
            values[outside] = 0  # dlib reads 0 outside the image
            bits = (
                values.take(self._pair_a[level]) - values.take(self._pair_b[level]) > self._flat_thresh[level]
            )
            codes = np.packbits(bits, bitorder="little").view("<u2").astype(np.intp)
            leaves = self._leaf_of_code.take(codes) + self._leaf_base
            shape = shape + self._ones @ self._flat_leaves[level].take(leaves, axis=0)
        return np.asarray(shape.reshape(-1, 2) * extent + origin, np.float64)

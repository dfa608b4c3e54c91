"""Face alignment: a similarity transform to the encoder's template and a warp.

Pure numpy. The warp reproduces how dlib cuts the chips its encoder was
trained on (``get_face_chip_details`` + ``extract_image_chip``):

- the transform is a least-squares similarity from template to image points;
- chip pixels 0..size-1 are spread over a rectangle ``size * scale - 1`` image
  pixels wide, centred on the image point that the chip centre maps to, and
  rotated by the transform's angle (not simply the affine matrix applied to
  pixel indices, which shifts descriptors by ~0.09);
- when the face is more than about twice the chip size, dlib first blurs and
  halves the image (a pyramid level); we do the same with a 5-tap binomial
  blur before sampling.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge.errors import InputError

# dlib's 5-point template, normalised to [0, 1] before padding (dlib/image_transforms).
DLIB_5POINT_TEMPLATE = np.array(
    [
        [0.8595674595992, 0.2134981538014],  # outer corner of the eye on the image's right
        [0.6460604764104, 0.2289674387677],  # inner corner of that eye
        [0.1205750620789, 0.2137274526848],  # outer corner of the eye on the image's left
        [0.3340850613712, 0.2290642403242],  # inner corner of that eye
        [0.4901123135679, 0.6277975316475],  # base of the nose
    ]
)


def template_points(
    size: int = 150, padding: float = 0.25, template: np.ndarray = DLIB_5POINT_TEMPLATE
) -> np.ndarray:
    """Template landmarks in chip pixels: (padding + p) / (1 + 2 * padding) * size."""
    return (padding + np.asarray(template, np.float64)) / (1 + 2 * padding) * size


@dataclasses.dataclass(frozen=True)
class Similarity:
    """x_image = scale * R(angle) @ x_chip + translation."""

    scale: float
    angle: float  # radians
    translation: tuple[float, float]

    def matrix(self) -> np.ndarray:
        c, s = np.cos(self.angle) * self.scale, np.sin(self.angle) * self.scale
        return np.array([[c, -s, self.translation[0]], [s, c, self.translation[1]]])

    def apply(self, points: np.ndarray) -> np.ndarray:
        m = self.matrix()
        return np.asarray(points, np.float64) @ m[:, :2].T + m[:, 2]


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> Similarity:
    """Least-squares similarity (Umeyama, no reflection) mapping ``src`` onto ``dst``."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise InputError(f"need two matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s == 0:
        raise InputError("landmarks are all at one point")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign) / var_s)
    translation = mu_d - scale * rot @ mu_s
    return Similarity(
        scale, float(np.arctan2(rot[1, 0], rot[0, 0])), (float(translation[0]), float(translation[1]))
    )


def chip_transform(landmarks: np.ndarray, size: int = 150, padding: float = 0.25) -> Similarity:
    """The similarity from chip pixels to image pixels for 5 dlib-order landmarks."""
    return similarity_transform(template_points(size, padding), landmarks)


_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur_halve(image: np.ndarray) -> np.ndarray:
    """One pyramid level: separable 5-tap binomial blur, then every other pixel."""
    padded = np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="edge")
    rows = sum(w * padded[i : i + padded.shape[0] - 4] for i, w in enumerate(_BINOMIAL))
    cols = sum(w * rows[:, i : i + rows.shape[1] - 4] for i, w in enumerate(_BINOMIAL))
    return np.asarray(cols[::2, ::2])


def extract_chip(image: np.ndarray, transform: Similarity, size: int = 150) -> np.ndarray:
    """Cut a ``size`` x ``size`` chip from an HxWx3 uint8 RGB image, dlib style.

    Bilinear sampling; pixels outside the image are black, as in dlib.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    centre = transform.apply(np.array([[size / 2.0, size / 2.0]]))[0]
    span = size * transform.scale - 1.0  # image pixels covered by chip pixels 0..size-1
    # Work on the part of the image the chip can sample (plus the blur's reach),
    # not the whole frame. The crop origin is a multiple of the pyramid step,
    # so halving the crop equals halving the frame there.
    levels = 0
    while (span / 2.0 ** (levels + 1)) ** 2 > size * size:
        levels += 1
    step = 2**levels
    reach = span * 0.7072 + 4 * step + 2
    x0 = max(0, int(np.floor((centre[0] - reach) / step)) * step)
    y0 = max(0, int(np.floor((centre[1] - reach) / step)) * step)
    x1 = min(image.shape[1], int(np.ceil(centre[0] + reach)) + 1)
    y1 = min(image.shape[0], int(np.ceil(centre[1] + reach)) + 1)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size, 3), np.uint8)
    src = image[y0:y1, x0:x1].astype(np.float32)
    centre = centre - np.array([x0, y0], np.float64)
    # dlib moves down the pyramid while the halved rectangle still holds more
    # pixels than the chip.
    factor = 1.0
    while (span / 2.0) ** 2 > size * size:
        src = _blur_halve(src)
        span /= 2.0
        factor *= 2.0
        centre = (centre - 0.5) / 2.0 + 0.0  # pixel centres of the halved image
    c, s = np.cos(transform.angle), np.sin(transform.angle)
    step = span / (size - 1)
    grid = (np.arange(size, dtype=np.float64) - (size - 1) / 2.0) * step
    gx, gy = np.meshgrid(grid, grid)
    x = centre[0] + c * gx - s * gy
    y = centre[1] + s * gx + c * gy
    return _bilinear(src, x, y)


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    inside = (x >= 0) & (y >= 0) & (x <= w - 1) & (y <= h - 1)
    x0c, y0c = np.clip(x0, 0, w - 1), np.clip(y0, 0, h - 1)
    x1c, y1c = np.clip(x0 + 1, 0, w - 1), np.clip(y0 + 1, 0, h - 1)
    flat = image.reshape(h * w, image.shape[2])  # one flat gather per corner is cheaper

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return np.take(flat, yy * w + xx, axis=0)

    top = at(y0c, x0c) * (1 - fx) + at(y0c, x1c) * fx
    bottom = at(y1c, x0c) * (1 - fx) + at(y1c, x1c) * fx
    out = top * (1 - fy) + bottom * fy
    out[~inside] = 0
    return np.clip(out, 0, 255).astype(np.uint8)  # dlib truncates


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int = 150, padding: float = 0.25
) -> np.ndarray:
    """Landmarks (5, 2) in dlib order -> an aligned ``size`` x ``size`` RGB chip."""
    return extract_chip(image, chip_transform(landmarks, size, padding), size)

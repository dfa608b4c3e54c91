"""Face alignment: a similarity transform to the encoder's template and a warp.

numpy, and Pillow's affine warp for the sampling. The warp reproduces how dlib cuts the chips its encoder was
trained on (``get_face_chip_details`` + ``extract_image_chip``):

- the transform is a least-squares similarity from template to image points;
- chip pixels 0..size-1 are spread over a rectangle ``size * scale - 1`` image
  pixels wide, centred on the image point that the chip centre maps to, and
  rotated by the transform's angle (not simply the affine matrix applied to
  pixel indices, which shifts descriptors by ~0.09);
- when the face is more than about twice the chip size, dlib first blurs and
  halves the image (``pyramid_down<2>``, on a crop around the face); the same
  integer filter, crop and coordinate mapping are reproduced here, so chips of
  large faces match dlib's too.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from facegate.errors import InputError

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


def _pyramid_down(image: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_down<2>`` on an RGB uint8 image: the separable 5-tap binomial filter
    (1 4 6 4 1) without padding, kept at every other pixel, summed in 16-bit integers and
    divided by 256 with truncation; (rows - 3) // 2 x (cols - 3) // 2 pixels, pixel (i, j)
    centred on (2i + 2, 2j + 2). Computed only where it is kept."""
    rows, cols = (image.shape[0] - 3) // 2, (image.shape[1] - 3) // 2
    wide = image.astype(np.uint16)

    def taps(at: list[np.ndarray]) -> np.ndarray:  # the five samples of each kept pixel
        out = at[0] + at[4]
        out += at[2] * np.uint16(6)
        side = at[1] + at[3]
        side <<= np.uint16(2)
        out += side
        return out

    across = taps([wide[:, k : k + 2 * cols : 2] for k in range(5)])
    down = taps([across[k : k + 2 * rows : 2] for k in range(5)])
    return (down >> np.uint16(8)).astype(np.uint8)


def _pyramid_point(point: np.ndarray) -> np.ndarray:
    """Where dlib's ``pyramid_down<2>::point_down`` puts an image point on the level below
    (its offset is not the filter's centre; reproduced as it is, since the chips must be)."""
    return point / 2.0 - np.array([1.25, 0.75])


def _chip_levels(span: float, size: int) -> int:
    """How many times dlib halves the image for a chip whose rectangle spans ``span`` pixels
    (corner to corner): while the halved rectangle still holds more pixels than the chip."""
    levels = 0
    while (span / 2.0 ** (levels + 1) + 1.0) ** 2 > size * size:
        levels += 1
    return levels


def extract_chip(image: np.ndarray, transform: Similarity, size: int = 150) -> np.ndarray:
    """Cut a ``size`` x ``size`` chip from an HxWx3 uint8 RGB image, dlib style.

    Bilinear sampling; pixels outside the image are black, as in dlib.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    centre = transform.apply(np.array([[size / 2.0, size / 2.0]]))[0]
    span = size * transform.scale - 1.0  # image pixels covered by chip pixels 0..size-1
    levels = _chip_levels(span, size)
    if levels == 0:
        x0, y0, x1, y1 = _reach(image, centre, span)
    else:
        # dlib (extract_image_chips) crops the rotated rectangle grown by a border that
        # doubles with each level, builds the pyramid on that crop, and samples the level.
        grow = 2.0
        for _ in range(levels):
            grow = grow * 2 + 2
        half = span / 2 * (abs(np.cos(transform.angle)) + abs(np.sin(transform.angle))) + grow
        h, w = image.shape[:2]
        # drectangle -> rectangle rounds each side
        x0, y0 = (int(np.floor(max(0.0, c - half) + 0.5)) for c in centre)
        x1 = int(np.floor(min(w - 1.0, centre[0] + half) + 0.5)) + 1
        y1 = int(np.floor(min(h - 1.0, centre[1] + half) + 0.5)) + 1
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size, 3), np.uint8)
    crop = image[y0:y1, x0:x1]
    centre = centre - np.array([x0, y0], np.float64)
    for _ in range(levels):
        if min(crop.shape[:2]) <= 8:  # dlib's pyramid gives an empty level: a black chip
            return np.zeros((size, size, 3), np.uint8)
        crop = _pyramid_down(crop)
        centre = _pyramid_point(centre)
        span /= 2.0
    return _sample(crop, centre, span, transform.angle, size)


def _reach(image: np.ndarray, centre: np.ndarray, span: float) -> tuple[int, int, int, int]:
    """The part of the image (x0, y0, x1, y1) that a square grid ``span`` pixels wide about
    ``centre``, at any angle, can sample: half its diagonal and a pixel's margin around it.
    Sampling that part, not the whole frame, saves copying the frame into Pillow."""
    reach = span * 0.7072 + 2
    x0, y0 = (max(0, int(np.floor(c - reach))) for c in centre)
    x1 = min(image.shape[1], int(np.ceil(centre[0] + reach)) + 1)
    y1 = min(image.shape[0], int(np.ceil(centre[1] + reach)) + 1)
    return x0, y0, x1, y1


def turned_crop(image: np.ndarray, centre: np.ndarray, angle: float, side: int) -> np.ndarray:
    """A ``side`` x ``side`` crop of an HxWx3 image, turned: crop pixel (u, v) is the image at
    ``centre + R(angle) (u - h, v - h)``, h = (side - 1) / 2, bilinear, black outside. With
    ``angle`` a face's roll, the face stands upright in it."""
    x0, y0, x1, y1 = _reach(image, centre, side - 1.0)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((side, side, 3), np.uint8)
    return _sample(image[y0:y1, x0:x1], centre - np.array([x0, y0], np.float64), side - 1.0, angle, side)


def _sample(image: np.ndarray, centre: np.ndarray, span: float, angle: float, size: int) -> np.ndarray:
    """Bilinear samples on a size x size grid, ``span`` pixels wide, rotated by
    ``angle`` about ``centre``; outside the image is black, values truncate.

    Pillow's affine warp does exactly this arithmetic (checked pixel for pixel
    against dlib's chips) in C, ~10x faster than the same in numpy. Pillow maps
    output pixel i to input ``a*(i+0.5) + b*(j+0.5) + c`` and samples with pixel
    centres at +0.5, so the half pixels are folded into the offsets.
    """
    step = span / (size - 1)
    c, s = np.cos(angle) * step, np.sin(angle) * step
    half = (size - 1) / 2.0
    # ours: x = cx + c*(i - half) - s*(j - half); y = cy + s*(i - half) + c*(j - half)
    coeffs = (
        c,
        -s,
        centre[0] - (c - s) * half - (c - s) * 0.5 + 0.5,
        s,
        c,
        centre[1] - (s + c) * half - (s + c) * 0.5 + 0.5,
    )
    warped = Image.fromarray(np.ascontiguousarray(image)).transform(
        (size, size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR
    )
    chip = np.asarray(warped)
    # Pillow still samples up to half a pixel beyond the edge; dlib needs both
    # neighbours inside. The grid is convex: check its corners first.
    h, w = image.shape[:2]
    offsets = np.arange(size, dtype=np.float64) - half
    ends = offsets[[0, -1]]
    gx, gy = np.meshgrid(ends, ends)
    corners_x, corners_y = centre[0] + c * gx - s * gy, centre[1] + s * gx + c * gy
    if min(corners_x.min(), corners_y.min()) >= 0 and corners_x.max() <= w - 1 and corners_y.max() <= h - 1:
        return chip
    gx, gy = np.meshgrid(offsets, offsets)
    x, y = centre[0] + c * gx - s * gy, centre[1] + s * gx + c * gy
    outside = (x < 0) | (y < 0) | (x > w - 1) | (y > h - 1)
    chip = chip.copy()
    chip[outside] = 0
    return chip


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int = 150, padding: float = 0.25
) -> np.ndarray:
    """Landmarks (5, 2) in dlib order -> an aligned ``size`` x ``size`` RGB chip."""
    return extract_chip(image, chip_transform(landmarks, size, padding), size)

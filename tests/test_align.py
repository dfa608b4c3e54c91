"""Alignment: the similarity transform, and chips identical to dlib's own."""

from __future__ import annotations

import numpy as np
import pytest

from facegate.align import (
    Similarity,
    _chip_levels,
    align_face,
    chip_transform,
    extract_chip,
    similarity_transform,
    template_points,
)
from facegate.convert.reference import load_reference
from facegate.errors import InputError
from facegate.images import load_rgb
from tests.conftest import FIXTURES, shared_path


def test_similarity_recovers_a_known_transform() -> None:
    truth = Similarity(1.7, np.radians(12.0), (30.0, -4.0))
    src = template_points()
    found = similarity_transform(src, truth.apply(src))
    assert found.scale == pytest.approx(1.7)
    assert found.angle == pytest.approx(np.radians(12.0))
    assert found.translation == pytest.approx((30.0, -4.0))


def test_similarity_never_reflects() -> None:
    src = template_points()
    mirrored = src * np.array([-1.0, 1.0])
    found = similarity_transform(src, mirrored)
    assert found.scale > 0  # a rotation cannot mirror: best fit, not an exact one
    assert np.abs(found.apply(src) - mirrored).max() > 1.0


def test_degenerate_points_are_refused() -> None:
    with pytest.raises(InputError):
        similarity_transform(np.zeros((5, 2)), np.ones((5, 2)))
    with pytest.raises(InputError):
        similarity_transform(np.zeros((5, 2)), np.ones((4, 2)))


def test_chips_match_dlib_bit_for_bit() -> None:
    shared_path("reference", "dlib-lfw-dev.npz")
    lfw = shared_path("datasets", "lfw-dev")
    ref = load_reference()
    for k, path in enumerate(ref.dlib_chip_paths[:20]):
        i = ref.paths.index(path)
        chip = align_face(load_rgb(lfw / path), ref.landmarks[i])
        assert np.array_equal(chip, ref.dlib_chips[k]), path


def pattern(h: int, w: int) -> np.ndarray:
    """A smooth, busy synthetic image: a shift of one pixel changes most of its chip."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = [
        127 + 60 * np.sin(x / 5.3 + k) * np.cos(y / 7.1 - k) + 60 * np.sin((x + 2 * y) / 11.7 + 2 * k)
        for k in range(3)
    ]
    return np.clip(np.rint(np.stack(rgb, axis=2)), 0, 255).astype(np.uint8)


def test_large_face_chips_match_dlib_bit_for_bit() -> None:
    """Faces over about twice the chip size come from dlib's image pyramid: its integer
    filter, its crop around the face and its (offset) mapping of points to the level."""
    image = pattern(960, 1280)
    with np.load(FIXTURES / "dlib_large_face_chips.npz") as data:
        marks, chips = data["landmarks"], data["chips"]
    levels = []
    for points, expected in zip(marks, chips):
        transform = chip_transform(points)
        levels.append(_chip_levels(150 * transform.scale - 1, 150))
        assert np.array_equal(extract_chip(image, transform), expected), points[0]
    assert sorted(set(levels)) == [1, 2]


def test_large_faces_go_down_the_pyramid() -> None:
    """A face 4x the chip size is blurred and halved before sampling, like dlib."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (800, 800, 3), dtype=np.uint8)
    chip = extract_chip(image, Similarity(4.0, 0.0, (100.0, 100.0)))
    assert chip.shape == (150, 150, 3)
    # Blurring averages the noise: far less spread than the raw pixels.
    assert chip.std() < 0.5 * image.std()


def test_bad_image_shape_is_refused() -> None:
    with pytest.raises(InputError, match="HxWx3"):
        extract_chip(np.zeros((10, 10), np.uint8), Similarity(1.0, 0.0, (0.0, 0.0)))

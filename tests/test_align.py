"""Alignment: the similarity transform, and chips identical to dlib's own."""

from __future__ import annotations

import numpy as np
import pytest

from facegate.align import Similarity, align_face, extract_chip, similarity_transform, template_points
from facegate.convert.reference import load_reference
from facegate.errors import InputError
from facegate.images import load_rgb
from tests.conftest import shared_path


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

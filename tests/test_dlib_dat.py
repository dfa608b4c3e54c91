"""The .dat reader: the real dlib file, and files it must refuse clearly."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from facegate.convert.dlib_dat import read_dlib_net
from facegate.convert.dlib_keras import reference_forward, split_blocks
from facegate.errors import ModelFileError


def test_reads_dlib_face_resnet(dat_path: pathlib.Path) -> None:
    net = read_dlib_net(dat_path)
    assert net.parameter_count == 5_614_592
    assert net.kinds().count("con") == 29
    assert net.input_size == (150, 150)
    assert net.input_mean_rgb == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    assert net.loss_distance_threshold == pytest.approx(0.6)
    _stem, blocks, _head = split_blocks(net)
    assert len(blocks) == 14
    strided = [b[0].params["stride"] for b in blocks]
    assert strided.count(2) == 4
    # dlib's stride-2 convs are unpadded; its 3x3 stride-1 convs pad by 1.
    assert all(b[0].params["padding"] == (0 if b[0].params["stride"] == 2 else 1) for b in blocks)


def test_numpy_reference_forward_matches_dlib(
    dat_path: pathlib.Path, reference_subset: dict[str, np.ndarray]
) -> None:
    """The architecture as understood (no TensorFlow) reproduces dlib's descriptors."""
    net = read_dlib_net(dat_path)
    out = reference_forward(net, reference_subset["chips"][:3])
    want = reference_subset["descriptors"][:3]
    assert np.abs(out - want).max() < 1e-4


@pytest.mark.parametrize("cut", [0, 1, 100, 1_000_000])
def test_truncated_file_is_refused(dat_path: pathlib.Path, tmp_path: pathlib.Path, cut: int) -> None:
    bad = tmp_path / "cut.dat"
    bad.write_bytes(dat_path.read_bytes()[:cut])
    with pytest.raises(ModelFileError) as info:
        read_dlib_net(bad)
    message = str(info.value)
    assert str(bad) in message
    assert "empty" in message if cut == 0 else "truncated" in message


def test_foreign_files_are_refused(dat_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    shape_predictor = dat_path.parent / "shape_predictor_5_face_landmarks.dat"
    with pytest.raises(ModelFileError, match=r"shape_predictor_5_face_landmarks\.dat"):
        read_dlib_net(shape_predictor)
    jpeg = tmp_path / "photo.dat"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 10)
    with pytest.raises(ModelFileError, match=r"photo\.dat"):
        read_dlib_net(jpeg)
    with pytest.raises(ModelFileError, match="cannot read"):
        read_dlib_net(tmp_path / "missing.dat")


def test_trailing_garbage_is_refused(dat_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "long.dat"
    bad.write_bytes(dat_path.read_bytes() + b"extra")
    with pytest.raises(ModelFileError, match="trailing"):
        read_dlib_net(bad)

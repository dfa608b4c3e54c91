"""The conversion command regenerates the committed models bit for bit."""

from __future__ import annotations

import json
import pathlib

import pytest

from facegate.convert.quantize import CALIBRATION_KEYS
from facegate.modelcard import sha256_file
from tests.conftest import FLOAT_MODEL, INT8_MODEL, shared_path

pytestmark = [pytest.mark.slow, pytest.mark.needs_tf]


def test_convert_dlib_is_reproducible(dat_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    tf = pytest.importorskip("tensorflow", reason="the convert extra (TensorFlow) is not installed")
    shared_path("reference", "dlib-lfw-dev.npz")
    card = json.loads(INT8_MODEL.with_suffix(".json").read_text())
    built_with = card["conversion"]["tools"]["tensorflow"]
    if tf.__version__ != built_with:
        pytest.skip(
            f"models were built with TensorFlow {built_with}, this is {tf.__version__}: "
            "converter output is only reproducible with the same version"
        )
    from facegate.convert.dlib_convert import convert_dlib

    convert_dlib(dat_path, tmp_path, calibration=card["conversion"]["calibration_chips"])
    for model in (FLOAT_MODEL, INT8_MODEL):
        assert sha256_file(tmp_path / model.name) == sha256_file(model), model.name
        fresh = json.loads((tmp_path / model.with_suffix(".json").name).read_text())
        shipped = json.loads(model.with_suffix(".json").read_text())
        for key in CALIBRATION_KEYS:  # added later by `facegate calibrate` / `convert head`
            shipped.pop(key, None)
        assert fresh == shipped

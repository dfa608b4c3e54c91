"""The shipped TFLite encoders: parity with dlib, and clear errors for bad input."""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

import numpy as np
import pytest

from facegate.encoder import Encoder
from facegate.errors import FacegateError, InputError, ModelFileError
from facegate.interpreter import load_interpreter
from facegate.modelcard import load_card, sha256_file
from tests.conftest import FLOAT_MODEL, INT8_MODEL


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))


def test_float32_matches_dlib(reference_subset: dict[str, np.ndarray]) -> None:
    out = Encoder(FLOAT_MODEL).descriptors(reference_subset["chips"])
    cos = _cosines(out, reference_subset["descriptors"])
    print(f"float32 vs dlib on {len(cos)} held-out chips: min cosine {cos.min():.7f}")
    assert cos.min() >= 0.9999


def test_int8_matches_dlib(reference_subset: dict[str, np.ndarray]) -> None:
    out = Encoder(INT8_MODEL).descriptors(reference_subset["chips"])
    cos = _cosines(out, reference_subset["descriptors"])
    print(f"int8 vs dlib on {len(cos)} held-out chips: mean {cos.mean():.5f}, min {cos.min():.5f}")
    assert cos.mean() >= 0.99
    assert cos.min() >= 0.98


def test_embeddings_are_unit_length_and_discriminate(reference_subset: dict[str, np.ndarray]) -> None:
    emb = Encoder(INT8_MODEL).embed(reference_subset["chips"][:4])
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb.dtype == np.float32


@pytest.mark.pi
@pytest.mark.parametrize("model", [FLOAT_MODEL, INT8_MODEL])
def test_model_cards_describe_the_files(model: pathlib.Path) -> None:
    card = load_card(model.with_suffix(".json"))
    assert card.sha256 == sha256_file(model)
    assert card.chip_size == 150 and card.chip_padding == 0.25
    assert card.embedding_size == 128
    assert card.data["source"]["licence"].startswith("CC0")


@pytest.mark.pi
def test_int8_model_is_full_integer_and_small() -> None:
    interpreter = load_interpreter(INT8_MODEL)
    detail = interpreter.get_input_details()[0]
    assert detail["dtype"] == np.uint8
    assert detail["quantization"] == (1.0, 0)  # raw pixels in
    ops = {op["op_name"] for op in interpreter._get_ops_details()} - {"DELEGATE"}
    assert ops <= {
        "QUANTIZE",
        "DEQUANTIZE",
        "CONV_2D",
        "ADD",
        "PAD",
        "MAX_POOL_2D",
        "AVERAGE_POOL_2D",
        "MEAN",
        "FULLY_CONNECTED",
    }
    assert INT8_MODEL.stat().st_size <= 0.30 * FLOAT_MODEL.stat().st_size


@pytest.mark.pi
@pytest.mark.parametrize("shape", [(150, 150), (149, 150, 3), (1, 150, 150, 4), (2, 3)])
def test_wrong_chip_shape_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError, match=r"expected chips of shape \(N, 150, 150, 3\)"):
        Encoder(INT8_MODEL).descriptors(np.zeros(shape, np.uint8))


def test_wrong_dtype_is_refused() -> None:
    with pytest.raises(InputError, match="uint8"):
        Encoder(INT8_MODEL).descriptors(np.zeros((150, 150, 3), np.float32))


def _copy_model(tmp_path: pathlib.Path, content: bytes) -> pathlib.Path:
    model = tmp_path / "encoder.tflite"
    model.write_bytes(content)
    shutil.copy(INT8_MODEL.with_suffix(".json"), tmp_path / "encoder.json")
    return model


@pytest.mark.pi
@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "flip"])
def test_corrupt_tflite_is_refused(tmp_path: pathlib.Path, damage: str) -> None:
    data = INT8_MODEL.read_bytes()
    content = {
        "truncate": data[: len(data) // 3],
        "garbage": b"\x00" * 64,
        "empty": b"",
        "flip": data[:4] + b"XXXX" + data[8:],
    }[damage]
    model = _copy_model(tmp_path, content)
    with pytest.raises(ModelFileError) as info:
        load_interpreter(model)
    assert str(model) in str(info.value)


@pytest.mark.pi
def test_model_that_does_not_match_its_card_is_refused(tmp_path: pathlib.Path) -> None:
    model = _copy_model(tmp_path, FLOAT_MODEL.read_bytes())
    with pytest.raises(ModelFileError, match="sha256 differs"):
        Encoder(model)


def test_broken_card_is_refused(tmp_path: pathlib.Path) -> None:
    model = _copy_model(tmp_path, INT8_MODEL.read_bytes())
    card = json.loads((tmp_path / "encoder.json").read_text())
    del card["alignment"]
    (tmp_path / "encoder.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="lacks alignment"):
        Encoder(model)
    (tmp_path / "encoder.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        Encoder(model)


def test_a_runtime_that_is_installed_but_does_not_import_says_so(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tflite-runtime built for numpy 1 beside a numpy 2 (pip's pick in a venv on a Pi) fails
    as it imports; the runtimes were then skipped in silence, and the error read "no TFLite
    interpreter is installed: pip install ..." for one that was. A ValueError was a traceback."""
    from facegate.interpreter import interpreter_class

    for error in (
        "ImportError('numpy.core.multiarray failed to import')",
        "ValueError('numpy.dtype size changed')",
    ):
        fake = tmp_path / error[:5] / "ai_edge_litert"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text("")
        (fake / "interpreter.py").write_text(f"raise {error}\n")
        monkeypatch.syspath_prepend(str(fake.parent))
        for name in ("ai_edge_litert", "ai_edge_litert.interpreter"):
            monkeypatch.delitem(sys.modules, name, raising=False)
        kind = error.split("(")[0]
        with pytest.raises(
            FacegateError, match=rf"ai-edge-litert is installed but does not import \({kind}: numpy"
        ):
            interpreter_class("ai-edge-litert")
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    with pytest.raises(FacegateError, match="TFLite runtime 'tflite-runtime' is not installed"):
        interpreter_class("tflite-runtime")

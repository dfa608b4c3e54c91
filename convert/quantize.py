"""Keras -> float32 and full-integer int8 TFLite, plus the model card beside each."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import pathlib
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from facegate.convert.tf_import import require_tensorflow
from facegate.modelcard import SCHEMA, sha256_file, write_card
from facegate.wire import dumps

log = logging.getLogger(__name__)


def _convert(converter: Any) -> bytes:
    """Run a TFLite converter. Its Keras export prints the saved signature to stdout,
    which would corrupt a command's ``--json`` output: that goes to stderr instead."""
    with contextlib.redirect_stdout(sys.stderr):
        return bytes(converter.convert())


def to_float32(model: Any) -> bytes:
    tf = require_tensorflow()
    return _convert(tf.lite.TFLiteConverter.from_keras_model(model))


def to_int8(model: Any, calibration: np.ndarray) -> bytes:
    """Full-integer int8: every op int8, uint8 pixels in, float descriptor out.

    ``calibration`` is (N, H, W, 3) uint8 real aligned chips; the input range
    they cover fixes the input scale (0..255 -> scale 1, zero point 0).
    """
    tf = require_tensorflow()

    def representative() -> Iterator[list[np.ndarray]]:
        for chip in calibration:
            yield [chip[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.float32
    return _convert(converter)


def write_atomic(path: pathlib.Path, content: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def tool_versions() -> dict[str, str]:
    tf = require_tensorflow()
    return {"tensorflow": tf.__version__, "numpy": np.__version__}


CALIBRATION_KEYS = ("thresholds", "track_thresholds", "score", "verification")


def write_model(path: pathlib.Path, content: bytes, card: dict[str, Any]) -> dict[str, Any]:
    """Write ``path`` and its card (with the file's sha256); return the card."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, content)
    card = {
        "schema": SCHEMA,
        **card,
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
    }
    # Calibration done later (thresholds, score, verification head) belongs to
    # the model's bytes: a reconversion that reproduces them keeps it.
    try:
        old = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    if isinstance(old, dict) and old.get("sha256") == card["sha256"]:
        card.update({k: old[k] for k in CALIBRATION_KEYS if k in old})
    write_card(path.with_suffix(".json"), card)
    log.info("wrote %s (%.1f MB) and its model card", path, len(content) / 1e6)
    return card


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def dump(data: Any) -> str:
    return dumps(data, indent=2) + "\n"

"""``facegate convert dlib``: dlib's ResNet ``.dat`` -> float32 and int8 TFLite models.

Calibration data for int8: chips aligned exactly as dlib aligns them, from
dlib's own landmarks on the first ``calibration`` images of the reference set
(``shared/reference``, lfw-dev images). The remaining reference images are
never seen by the quantiser and serve as the held-out parity check.
"""

from __future__ import annotations

import importlib.metadata
import logging
import pathlib
from typing import Any

import numpy as np

from facegate.align import DLIB_5POINT_TEMPLATE
from facegate.convert.dlib_dat import read_dlib_net
from facegate.convert.dlib_keras import build_keras_model
from facegate.convert.quantize import dump, to_float32, to_int8, tool_versions, write_model
from facegate.convert.reference import load_reference, reference_chips
from facegate.errors import FacegateError
from facegate.modelcard import sha256_file

log = logging.getLogger(__name__)

MODEL_NAME = "dlib_resnet_v1"
SOURCE_PACKAGE = "face-recognition-models"
SOURCE_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SOURCE_LICENCE = "CC0-1.0 (model by Davis E. King, dlib)"


def default_dat_path() -> pathlib.Path:
    """The ``.dat`` inside the installed ``face-recognition-models`` package."""
    try:
        import face_recognition_models
    except ImportError:
        raise FacegateError(
            f"{SOURCE_FILE} not given and {SOURCE_PACKAGE} is not installed: "
            f"pip install {SOURCE_PACKAGE}, or pass --dat PATH"
        ) from None
    return pathlib.Path(face_recognition_models.__file__).parent / "models" / SOURCE_FILE


def _source_version() -> str:
    try:
        return importlib.metadata.version(SOURCE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def base_card(net_mean: tuple[float, float, float], kind: str) -> dict[str, Any]:
    return {
        "name": f"{MODEL_NAME}_{kind}",
        "description": "dlib's 29-conv face ResNet (dnn_face_recognition_ex anet_type), rebuilt in Keras",
        "input": {
            "size": [150, 150],
            "layout": "NHWC",
            "channels": "RGB",
            "dtype": "uint8" if kind == "int8" else "float32",
            "range": [0, 255],
            "normalisation": (
                f"(x - {[round(m, 3) for m in net_mean]}) / 256, folded into the first convolution; "
                "feed raw pixel values"
            ),
        },
        "alignment": {
            "method": "dlib get_face_chip_details + extract_image_chip (see edge/align.py)",
            "landmarks": "5-point, dlib shape_predictor_5_face_landmarks order",
            "template": DLIB_5POINT_TEMPLATE.round(13).tolist(),
            "chip_size": 150,
            "padding": 0.25,
        },
        "embedding": {
            "size": 128,
            "output": "raw dlib descriptor (float32, dequantised for int8)",
            "normalisation": "L2 on the device, after dequantisation (edge/encoder.py)",
        },
        "distance": {
            "metric": "euclidean between L2-normalised embeddings",
            "dlib_raw_threshold": 0.6,
        },
        "quantisation": (
            "full integer int8 (all ops int8, uint8 input, float32 output), per-channel weights"
            if kind == "int8"
            else "none (float32)"
        ),
        "source": {
            "package": SOURCE_PACKAGE,
            "version": _source_version(),
            "file": SOURCE_FILE,
            "licence": SOURCE_LICENCE,
        },
    }


def convert_dlib(
    dat: pathlib.Path | None,
    out_dir: pathlib.Path,
    calibration: int = 200,
    shared: pathlib.Path | None = None,
) -> list[dict[str, Any]]:
    dat = dat or default_dat_path()
    log.info("reading %s", dat)
    net = read_dlib_net(dat)
    log.info("parsed %d layers, %d parameters", len(net.layers), net.parameter_count)
    model = build_keras_model(net, source=str(dat))
    ref = load_reference(shared)
    if not 1 <= calibration <= len(ref.paths):
        raise FacegateError(f"--calibration must be 1..{len(ref.paths)}, got {calibration}")
    log.info("aligning %d calibration chips", calibration)
    chips = reference_chips(ref, range(calibration), shared)
    cards = []
    for kind, content in (("float32", to_float32(model)), ("int8", to_int8(model, chips))):
        card = base_card(net.input_mean_rgb, kind)
        card["conversion"] = {
            "command": f"facegate convert dlib --calibration {calibration}",
            "calibration": (
                f"{calibration} dlib-aligned chips: the first {calibration} rows of "
                "shared/reference/dlib-lfw-dev.npz"
                if kind == "int8"
                else None
            ),
            "calibration_chips": calibration if kind == "int8" else 0,
            "tools": tool_versions(),
            "source_sha256": sha256_file(dat),
        }
        cards.append(write_model(out_dir / f"{MODEL_NAME}_{kind}.tflite", content, card))
    write_provenance(out_dir, dat, cards)
    return cards


def write_provenance(out_dir: pathlib.Path, dat: pathlib.Path, cards: list[dict[str, Any]]) -> None:
    record = {
        "generated_by": "facegate convert dlib (convert/dlib_convert.py)",
        "source": {
            "package": SOURCE_PACKAGE,
            "version": _source_version(),
            "file": SOURCE_FILE,
            "licence": SOURCE_LICENCE,
            "sha256": sha256_file(dat),
        },
        "files": {card["file"]: card["sha256"] for card in cards},
        "tools": tool_versions(),
    }
    (out_dir / f"{MODEL_NAME}.provenance.json").write_text(dump(record), encoding="utf-8")


def parity(model_path: pathlib.Path, shared: pathlib.Path | None = None, start: int = 0) -> dict[str, float]:
    """Cosine between a model's descriptors and dlib's on reference rows ``start:``."""
    from facegate.encoder import Encoder

    ref = load_reference(shared)
    rows = range(start, len(ref.paths))
    out = Encoder(model_path).descriptors(reference_chips(ref, rows, shared))
    want = ref.descriptors[start:]
    cos = (out * want).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(want, axis=1)
    return {
        "chips": len(rows),
        "mean_cosine": float(cos.mean()),
        "min_cosine": float(cos.min()),
        "max_l2_raw": float(np.linalg.norm(out - want, axis=1).max()),
    }

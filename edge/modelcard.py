"""Model cards: the contract written beside each ``.tflite`` (same name, ``.json``).

The interpreter tells input size, dtype, scale and zero point; the card tells
the rest: alignment template, what the output means, distance and thresholds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import os
import pathlib
from typing import Any

import numpy as np

from facegate.errors import ModelFileError

SCHEMA = 1


def _shipped_models() -> pathlib.Path:
    """The models shipped inside the package (``facegate.models``, the repo's ``models/``),
    wherever pip put it; ``$FACEGATE_MODELS`` overrides (a folder of your own models).
    A wheel is installed unpacked, so the resource is a real folder the interpreter can open."""
    override = os.environ.get("FACEGATE_MODELS")
    if override:
        return pathlib.Path(override)
    return pathlib.Path(str(importlib.resources.files("facegate.models")))


MODELS_DIR = _shipped_models()
_REQUIRED = ("schema", "name", "input", "alignment", "embedding", "distance", "sha256", "source")


def card_path(model_path: str | os.PathLike[str]) -> pathlib.Path:
    return pathlib.Path(model_path).with_suffix(".json")


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class ModelCard:
    path: pathlib.Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def sha256(self) -> str:
        return str(self.data["sha256"])

    @property
    def chip_size(self) -> int:
        return int(self.data["alignment"]["chip_size"])

    @property
    def chip_padding(self) -> float:
        return float(self.data["alignment"]["padding"])

    @property
    def template(self) -> np.ndarray:
        """Normalised template points (before padding), dlib's 5-point order."""
        return np.asarray(self.data["alignment"]["template"], np.float64)

    @property
    def embedding_size(self) -> int:
        return int(self.data["embedding"]["size"])

    @property
    def thresholds(self) -> dict[str, Any]:
        return dict(self.data.get("thresholds", {}))


def load_card(path: str | os.PathLike[str]) -> ModelCard:
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelFileError(path, f"cannot read model card: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(path, f"model card is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelFileError(path, "model card must be a JSON object")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise ModelFileError(path, f"model card lacks {', '.join(missing)}")
    if data["schema"] != SCHEMA:
        raise ModelFileError(path, f"model card schema {data['schema']!r} is not supported (want {SCHEMA})")
    return ModelCard(path, data)


def write_card(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write atomically, so a crash never leaves half a card beside a model."""
    path = pathlib.Path(path)
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # a model installed where this user cannot write (site-packages)
        raise ModelFileError(
            path,
            f"cannot write the model card ({exc.strerror}); copy the model and its card to a folder "
            "you can write and give that model (--model)",
        ) from None

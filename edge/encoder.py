"""TFLite face encoder: aligned chips in, embeddings out.

L2 normalisation is done here, in float after dequantisation, not inside the
int8 graph: TFLite's int8 L2_NORMALIZATION has a fixed output scale of 1/128,
which would round every component to 8 bits of [-1, 1] on top of the
quantised descriptor; dividing 128 floats by their norm costs nothing.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from facegate.errors import InputError, ModelFileError
from facegate.interpreter import load_interpreter
from facegate.modelcard import ModelCard, card_path, load_card, sha256_file


def l2_normalise(vectors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, eps)


class Encoder:
    """Loads one ``.tflite`` encoder and its model card once; embeds chips."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        num_threads: int = 1,
        runtime: str | None = None,
        verify_sha256: bool = True,
    ) -> None:
        self.model_path = pathlib.Path(model_path)
        self.card: ModelCard = load_card(card_path(self.model_path))
        if verify_sha256 and sha256_file(self.model_path) != self.card.sha256:
            raise ModelFileError(self.model_path, f"sha256 differs from its model card {self.card.path}")
        self.interpreter: Any = load_interpreter(self.model_path, num_threads, runtime)
        detail = self.interpreter.get_input_details()[0]
        self._input_index = detail["index"]
        self._output_index = self.interpreter.get_output_details()[0]["index"]
        self.input_shape = tuple(int(d) for d in detail["shape"][1:])
        self.input_dtype = np.dtype(detail["dtype"])
        # Quantised inputs: the interpreter says how to map pixels to integers.
        self._scale, self._zero_point = detail["quantization"]
        size = self.card.chip_size
        if self.input_shape != (size, size, 3):
            raise ModelFileError(
                self.model_path, f"input {self.input_shape} does not match card chip size {size}"
            )

    def _prepare(self, chip: np.ndarray) -> np.ndarray:
        pixels = chip.astype(np.float32)
        if self.input_dtype == np.float32:
            return pixels[None]
        info = np.iinfo(self.input_dtype)
        if self._scale == 1.0 and self._zero_point == 0 and self.input_dtype == np.uint8:
            return chip.astype(np.uint8)[None]
        q = np.rint(pixels / self._scale + self._zero_point)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)[None]

    def descriptors(self, chips: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) or (H, W, 3) uint8 RGB chips -> (N, D) raw float32 descriptors."""
        chips = np.asarray(chips)
        if chips.ndim == 3:
            chips = chips[None]
        if chips.ndim != 4 or chips.shape[1:] != self.input_shape:
            raise InputError(
                f"expected chips of shape (N, {', '.join(map(str, self.input_shape))}), got {chips.shape}"
            )
        if chips.dtype != np.uint8:
            raise InputError(f"expected uint8 RGB chips, got dtype {chips.dtype}")
        out = np.empty((len(chips), self.card.embedding_size), np.float32)
        for i, chip in enumerate(chips):
            self.interpreter.set_tensor(self._input_index, self._prepare(chip))
            self.interpreter.invoke()
            out[i] = self.interpreter.get_tensor(self._output_index)[0]
        return out

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """Unit-length embeddings: the ones the gallery stores and compares."""
        return l2_normalise(self.descriptors(chips))

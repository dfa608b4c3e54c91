"""Decode images into HxWx3 uint8 RGB arrays (Pillow), with errors that name the file."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from edge.errors import InputError


def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    path = pathlib.Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such image") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: cannot decode image ({exc})") from None

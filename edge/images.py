"""Decode images into HxWx3 uint8 RGB arrays (Pillow), with errors that name the file."""

from __future__ import annotations

import os
import pathlib
from typing import IO, Union

import numpy as np

from facegate.errors import InputError

Source = Union[str, "os.PathLike[str]", IO[bytes]]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".bmp", ".webp"})
"""File endings taken as images wherever a folder of photos is read."""

MAX_PIXELS = 64_000_000
"""The largest image decoded (a 9,600 x 6,700 photo): its RGB array alone is 192 MB, and a
small file can claim far more (a PNG of zeros), which a Pi would run out of memory on."""


def load_rgb(source: Source, name: str | None = None) -> np.ndarray:
    """Decode a file, or an open binary stream (``name`` labels it in errors)."""
    from PIL import Image, UnidentifiedImageError

    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "image data")
    target = pathlib.Path(source) if isinstance(source, (str, os.PathLike)) else source
    try:
        with Image.open(target) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InputError(
                    f"{label}: {width} x {height} pixels is more than the {MAX_PIXELS // 1_000_000} "
                    "megapixels facegate decodes; scale it down"
                )
            image.load()
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise InputError(f"{label}: no such image") from None
    except Image.DecompressionBombError as exc:  # Pillow's own limit, met before ours by some formats
        raise InputError(
            f"{label}: more than the {MAX_PIXELS // 1_000_000} megapixels facegate decodes; scale it "
            f"down ({str(exc).split(',')[0]})"
        ) from None
    except UnidentifiedImageError:
        raise InputError(
            f"{label}: cannot decode image (not a format Pillow reads: JPEG, PNG, ...)"
        ) from None
    except OSError as exc:  # truncated or damaged: Pillow's words, without an object's repr
        raise InputError(f"{label}: cannot decode image ({str(exc).split(' <')[0]})") from None

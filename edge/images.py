"""Decode images into HxWx3 uint8 RGB arrays (Pillow), with errors that name the file.

The one place where image bytes, from a file or from the network (an enroll command, an
upload), meet a decoder: only the formats in ``FORMATS``, never more than ``MAX_PIXELS``
(read from the header), and any failure on damaged bytes is an ``InputError``. A photo comes
out as a viewer shows it: a phone stores a portrait photo's pixels sideways (or upside down)
and says so in EXIF ``Orientation``, and facegate turns them upright. 16-bit grey samples
are scaled to 8 bits, not clipped; a phone-sized JPEG is decoded at reduced scale.
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import IO, Any, Union

import numpy as np

from facegate.errors import InputError

Source = Union[str, "os.PathLike[str]", IO[bytes]]

# The formats facegate reads: Pillow's name for each decoder -> (what people call it, file endings,
# media type). JPEG first: a browser's file field lists them in this order (``MEDIA_TYPES``).
_READ = {
    "JPEG": ("JPEG", (".jpg", ".jpeg"), "image/jpeg"),  # with a phone's MPO: a depth map or preview after it
    "PNG": ("PNG", (".png",), "image/png"),
    "WEBP": ("WebP", (".webp",), "image/webp"),
    "BMP": ("BMP", (".bmp",), "image/bmp"),
    "PPM": ("PGM", (".pgm",), "image/x-portable-graymap"),
}

FORMATS = tuple(_READ)
"""The Pillow decoders facegate runs, on files and on bytes from the network alike. Pillow's
other decoders (TIFF, SGI, DDS, PCX, ...) are never handed a byte: fewer decoders, less to
attack."""

IMAGE_SUFFIXES = frozenset(suffix for _, suffixes, _ in _READ.values() for suffix in suffixes)
"""File endings taken as images wherever a folder of photos is read."""

MEDIA_TYPES = tuple(media for _, _, media in _READ.values())
"""What an upload field accepts (``accept``), JPEG first: Safari on a Mac then sends a HEIC
photo as JPEG, as iOS always does (with ``image/*`` it sends the HEIC, which is refused)."""

_NAMES = [name for name, _, _ in _READ.values()]
FORMAT_NAMES = ", ".join(_NAMES[:-1]) + " or " + _NAMES[-1]  # "JPEG, PNG, WebP, BMP or PGM"

HEIF_SUFFIXES = frozenset({".heic", ".heif", ".hif"})
"""An iPhone's photos: read only to say how to export them as JPEG (``load_rgb``)."""

# EXIF Orientation -> the turn that shows the stored pixels upright (EXIF 2.32, tag 0x0112).
_UPRIGHT = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}
_ORIENTATION = 0x0112
# HEIF's file-type box: ISO/IEC 23008-12 brands (an iPhone's default photo format).
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif")

JPEG_LONG_SIDE = 1600
"""A JPEG larger than twice this (a phone's 12 or 48 megapixel photo) is decoded at 1/2, 1/4
or 1/8 scale by the JPEG decoder itself, keeping at least this long side: a face enrollment
can find in it (a twentieth of the picture, ``Perception.photo_faces``) is then still 80 px or
more, and the decoding takes
a quarter of the memory and time or less, which a Pi enrolling from a phone photo needs."""

MAX_PIXELS = 64_000_000
"""The largest image decoded (a 9,600 x 6,700 photo): its RGB array alone is 192 MB, and a
small file can claim far more (a PNG of zeros), which a Pi would run out of memory on. A JPEG
counts at the scale it is decoded at: a phone's 108 megapixel photo is decoded at 1/4."""


def load_rgb(source: Source, name: str | None = None, reduce: bool = True) -> np.ndarray:
    """Decode a file, or an open binary stream (``name`` labels it in errors). ``reduce``: a
    large JPEG at reduced scale (``JPEG_LONG_SIDE``); a camera's frames read from files keep
    their own size."""
    from PIL import Image, UnidentifiedImageError

    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "image data")
    target = pathlib.Path(source) if isinstance(source, (str, os.PathLike)) else source
    try:
        with Image.open(target, formats=FORMATS) as image:
            width, height = image.size
            if reduce and image.format == "JPEG" and max(width, height) >= 2 * JPEG_LONG_SIDE:
                shrink = JPEG_LONG_SIDE / max(width, height)
                image.draft(None, (math.ceil(width * shrink), math.ceil(height * shrink)))
            if image.size[0] * image.size[1] > MAX_PIXELS:  # what would be decoded, from the header
                raise InputError(
                    f"{label}: {width} x {height} pixels is more than the {MAX_PIXELS // 1_000_000} "
                    "megapixels facegate decodes; scale it down"
                )
            image.load()
            turn = _UPRIGHT.get(_orientation(image))
            rgb = _to_rgb(image, label)
            return np.asarray(rgb if turn is None else rgb.transpose(getattr(Image.Transpose, turn)))
    except FileNotFoundError:
        raise InputError(f"{label}: no such image") from None
    except Image.DecompressionBombError as exc:  # Pillow's own limit, met before ours by some formats
        raise InputError(
            f"{label}: more than the {MAX_PIXELS // 1_000_000} megapixels facegate decodes; scale it "
            f"down ({str(exc).split(',')[0]})"
        ) from None
    except UnidentifiedImageError:
        if _is_heif(target):
            raise InputError(
                f"{label}: a HEIC/HEIF photo (an iPhone's default), which facegate does not decode; "
                "export it as JPEG (on the iPhone: Settings > Camera > Formats > Most Compatible)"
            ) from None
        raise InputError(
            f"{label}: cannot decode image (not {FORMAT_NAMES}, the formats facegate reads)"
        ) from None
    except InputError:
        raise
    except OSError as exc:  # truncated or damaged: Pillow's words, without an object's repr
        raise InputError(f"{label}: cannot decode image ({str(exc).split(' <')[0]})") from None
    except Exception as exc:  # a decoder's other failures on damaged bytes (a PGM header, ...)
        raise InputError(f"{label}: cannot decode image (damaged: {type(exc).__name__})") from None


def _orientation(image: Any) -> int:
    """The EXIF Orientation tag, 1 (as stored) when absent or unreadable: a photo whose EXIF
    is damaged is still decoded, as viewers do, as it is stored."""
    try:
        value = image.getexif().get(_ORIENTATION, 1)
    except Exception:  # whatever Pillow's EXIF parser makes of damaged data: decode as stored
        return 1
    return value if isinstance(value, int) else 1


def _to_rgb(image: Any, label: str) -> Any:
    """RGB, with 16-bit grey (PNG, PGM) scaled to 8 bits: Pillow's own conversion clips every
    sample above 255, which turns an ordinary 16-bit photo white."""
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode == "I":
        samples = np.asarray(image)  # uint16 or int32, as stored
        if samples.size and (samples.min() < 0 or samples.max() > 65535):
            raise InputError(f"{label}: samples beyond 16 bits; save it with 8 or 16 bits per sample")
        if samples.size and samples.max() > 255:
            samples = samples >> 8
        image = Image.fromarray(samples.astype(np.uint8))
    elif image.mode == "F":
        raise InputError(f"{label}: floating-point samples; save it with 8 or 16 bits per sample")
    return image.convert("RGB")


def _is_heif(target: pathlib.Path | IO[bytes]) -> bool:
    """Whether the file starts with a HEIF file-type box (``....ftyp`` and a HEIF brand)."""
    try:
        if isinstance(target, pathlib.Path):
            with target.open("rb") as f:
                head = f.read(12)
        else:
            target.seek(0)
            head = target.read(12)
    except (OSError, AttributeError, ValueError):
        return False
    return len(head) == 12 and head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS

"""Damaged images through ``facegate.images.load_rgb``: what comes out of each decoder.

    .venv/bin/python scripts/dev/fuzz_images.py [--cases 6000] [--seed 0]

A bundled photo, 48 px, is written in 14 formats Pillow can write; each case takes one of
them and changes, inserts or deletes a few bytes (and cuts the tail one time in five). The
outcome of each case is counted by format: decoded, refused (``InputError``, what every
caller handles), or any other exception (a bug: it escapes as an internal error). Cases
slower than 0.5 s are listed. ``tests/test_images.py`` keeps a seeded 1,500-case version
of this for the formats facegate reads.
"""

from __future__ import annotations

import argparse
import collections
import io
import random
import time
import warnings

from PIL import Image

from facegate.demo import PHOTOS
from facegate.errors import InputError
from facegate.images import load_rgb

WRITTEN = (
    "JPEG", "PNG", "WEBP", "BMP", "PPM", "GIF", "TIFF", "ICO", "TGA", "JPEG2000", "PCX", "SGI", "DDS", "QOI",
)  # fmt: skip


def seeds() -> dict[str, bytes]:
    photo = Image.open(PHOTOS / "obama.jpg").convert("RGB").resize((48, 48))
    out = {}
    for fmt in WRITTEN:
        data = io.BytesIO()
        try:
            photo.save(data, fmt)
        except (KeyError, OSError, ValueError):
            continue  # this Pillow cannot write it
        out[fmt] = data.getvalue()
    return out


def damaged(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 10)):
        at, kind = rng.randrange(len(out)), rng.random()
        if kind < 0.6:
            out[at] = rng.randrange(256)
        elif kind < 0.8:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            del out[at : at + rng.randint(1, 16)]
    if rng.random() < 0.2:
        out = out[: rng.randrange(1, len(out))]
    return bytes(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # Pillow warns about damaged EXIF and the like
    rng = random.Random(args.seed)
    formats = seeds()
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    slow = []
    for _ in range(args.cases):
        fmt = rng.choice(sorted(formats))
        data = damaged(formats[fmt], rng)
        started = time.perf_counter()
        try:
            load_rgb(io.BytesIO(data))
            outcome = "decoded"
        except InputError:
            outcome = "refused"
        except Exception as exc:  # what this script looks for
            outcome = f"escaped: {type(exc).__name__}"
        counts[fmt, outcome] += 1
        if time.perf_counter() - started > 0.5:
            slow.append(fmt)
    for fmt in sorted(formats):
        row = {outcome: n for (f, outcome), n in sorted(counts.items()) if f == fmt}
        print(f"{fmt:9s} {row}")
    escaped = sum(n for (_, outcome), n in counts.items() if outcome.startswith("escaped"))
    print(f"{args.cases} cases: {escaped} escaped load_rgb as something other than InputError; slow: {slow}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

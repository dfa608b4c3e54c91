"""Decoding photos as people take them: turned by their EXIF Orientation, 16-bit grey,
damaged EXIF, and the iPhone's HEIC named for what it is."""

from __future__ import annotations

import io
import pathlib
import struct

import numpy as np
import pytest
from PIL import Image

from facegate.decide import OperatingPoint, verify
from facegate.demo import PHOTOS
from facegate.encoder import Encoder
from facegate.enroll import Enroller, fingerprint
from facegate.errors import InputError
from facegate.gallery import Gallery
from facegate.images import JPEG_LONG_SIDE, load_rgb
from facegate.perception import Perception
from facegate.sources import FolderSource
from tests.conftest import HEIC_BYTES, INT8_MODEL

# Orientation -> how a camera stored the pixels of an upright picture (the inverse of the
# turn a viewer applies): EXIF 2.32, tag 0x0112.
STORED = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _stored(upright: Image.Image, orientation: int, fmt: str = "PNG", exif: bytes | None = None) -> bytes:
    turn = STORED[orientation]
    pixels = upright if turn is None else upright.transpose(turn)
    if exif is None:
        exif = _exif_bytes(orientation)
    out = io.BytesIO()
    pixels.save(out, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue()


def test_every_exif_orientation_comes_out_upright() -> None:
    # 5 x 3, every pixel different: any wrong turn or flip shows
    upright = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(3, 5, 3) * 5
    image = Image.fromarray(upright)
    for orientation in STORED:
        data = _stored(image, orientation)
        assert Image.open(io.BytesIO(data)).getexif()[0x0112] == orientation  # the tag was written
        decoded = load_rgb(io.BytesIO(data))
        np.testing.assert_array_equal(decoded, upright, err_msg=f"orientation {orientation}")


def test_damaged_or_odd_exif_decodes_as_stored() -> None:
    image = Image.fromarray(np.arange(60, dtype=np.uint8).reshape(4, 5, 3))
    stored = np.asarray(image)
    # one IFD entry: Orientation as the ASCII string "6" where a short belongs
    odd = b"Exif\x00\x00II*\x00" + struct.pack("<IHHHI4sI", 8, 1, 0x0112, 2, 2, b"6\x00\x00\x00", 0)
    for exif in (_exif_bytes(6)[:20], b"Exif\x00\x00MM\x00*garbage", odd, _exif_bytes(9)):
        data = _stored(image, 1, exif=exif)
        np.testing.assert_array_equal(load_rgb(io.BytesIO(data)), stored)


def _exif_bytes(orientation: int) -> bytes:
    tags = Image.Exif()
    tags[0x0112] = orientation
    return tags.tobytes()


@pytest.mark.pi
def test_a_phone_photo_stored_turned_is_recognised(tmp_path: pathlib.Path) -> None:
    """A phone stores a portrait photo's pixels sideways, or upside down when it was held so,
    and says so in EXIF. Read as stored, an upside-down face is one the landmarks cannot
    follow; turned upright by the tag (or, without one, by reading it both ways up), the
    person is recognised."""
    enroller = Enroller(Perception(), Encoder(INT8_MODEL))
    op = OperatingPoint.from_card(enroller.encoder.card, 1e-3)
    with Gallery.open(tmp_path / "g.db", fingerprint(enroller.encoder)) as gallery:
        enroller.enroll(gallery, "obama", [PHOTOS / "obama.jpg"])
        templates = gallery.templates()
    photo = Image.open(PHOTOS / "obama2.jpg").convert("RGB")
    for orientation in (3, 6, 8):
        path = tmp_path / f"phone{orientation}.jpg"
        path.write_bytes(_stored(photo, orientation, "JPEG"))
        assert verify(templates, enroller.sample(path).vector, "obama", op).accepted, orientation
    # the same upside-down pixels without their tag (a messaging app drops it): read as stored,
    # they enrolled an embedding of no one (0.52 from him, not recognised); photo_faces now
    # reads a photo both ways up, so they are recognised too
    bare = tmp_path / "bare.jpg"
    photo.transpose(Image.Transpose.ROTATE_180).save(bare, "JPEG", quality=95)
    assert verify(templates, enroller.sample(bare).vector, "obama", op).accepted


def test_a_phone_sized_jpeg_is_decoded_at_reduced_scale(tmp_path: pathlib.Path) -> None:
    """A 12 megapixel phone photo is decoded at half scale by the JPEG decoder (a quarter of
    the memory), turned by its EXIF tag all the same, and its face still enrolls."""
    photo = Image.open(PHOTOS / "obama2.jpg").convert("RGB").resize((4032, 3024))
    path = tmp_path / "phone.jpg"
    path.write_bytes(_stored(photo, 6, "JPEG"))  # stored sideways, as a phone held on its side does
    rgb = load_rgb(path)
    assert rgb.shape == (1512, 2016, 3)  # turned back and halved: 4032 // 1600 = 2
    assert max(rgb.shape) >= JPEG_LONG_SIDE
    enroller = Enroller(Perception(), Encoder(INT8_MODEL))
    assert enroller.sample(path).quality["eye_distance"] > 100
    small = tmp_path / "small.jpg"
    photo.resize((3199, 2399)).save(small)  # under twice the long side: decoded whole
    assert load_rgb(small).shape == (2399, 3199, 3)
    huge = tmp_path / "108mp.jpg"  # over MAX_PIXELS, but decoded at 1/4: 3000 x 2250
    photo.resize((12000, 9000)).save(huge, quality=80)
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow's, at 89 MP; facegate's limit holds
        assert load_rgb(huge).shape == (2250, 3000, 3)
    # a camera's frames read from a folder keep their size (boxes in events are in its pixels)
    (tmp_path / "frames").mkdir()
    photo.save(tmp_path / "frames" / "0001.jpg")
    assert next(FolderSource(str(tmp_path / "frames")).frames()).image.shape == (3024, 4032, 3)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: pathlib.Path) -> None:
    grey = np.asarray(Image.open(PHOTOS / "obama.jpg").convert("L"))
    wide = grey.astype(np.uint16) * 257  # the same picture in 16 bits (255 -> 65535)
    for name in ("grey16.png", "grey16.pgm"):
        path = tmp_path / name
        Image.fromarray(wide).save(path)
        assert Image.open(path).mode.startswith("I")  # Pillow reads it as 16 or 32-bit integers
        rgb = load_rgb(path)
        assert rgb.shape == (*grey.shape, 3)
        np.testing.assert_array_equal(rgb[..., 1], grey, err_msg=name)  # Pillow's convert: white
    floats = tmp_path / "float.pfm"  # PGM's floating-point sibling, which Pillow's PPM reader reads
    Image.fromarray(grey.astype(np.float32)).save(floats, "PPM")
    with pytest.raises(InputError, match="floating-point samples"):
        load_rgb(floats)


def test_only_the_formats_facegate_reads_are_decoded(tmp_path: pathlib.Path) -> None:
    """Bytes from the network reach only the JPEG, PNG, WebP, BMP and PGM decoders; a TIFF or
    any other of Pillow's formats is refused before a decoder sees it."""
    photo = Image.open(PHOTOS / "obama.jpg").convert("RGB").resize((40, 40))
    for fmt in ("JPEG", "PNG", "WEBP", "BMP", "PPM"):
        out = io.BytesIO()
        photo.save(out, fmt)
        assert load_rgb(io.BytesIO(out.getvalue())).shape == (40, 40, 3), fmt
    mpo = io.BytesIO()  # a phone's JPEG with a second picture after it (depth map, preview)
    photo.save(mpo, "MPO", save_all=True, append_images=[photo.resize((20, 20))])
    assert Image.open(io.BytesIO(mpo.getvalue())).format == "MPO"
    assert load_rgb(io.BytesIO(mpo.getvalue())).shape == (40, 40, 3)
    for fmt in ("TIFF", "GIF", "SGI", "PCX", "TGA", "ICO", "DDS", "QOI"):
        out = io.BytesIO()
        try:
            photo.save(out, fmt)
        except (KeyError, OSError, ValueError):
            continue  # this Pillow cannot write it: nothing to refuse
        with pytest.raises(InputError, match="not JPEG, PNG, WebP, BMP or PGM"):
            load_rgb(io.BytesIO(out.getvalue()), fmt)


def test_damaged_images_are_refused_by_name() -> None:
    """Bytes changed, inserted, cut: every outcome is a picture or an ``InputError`` (before,
    a damaged PGM header escaped as ``ValueError`` from Pillow)."""
    rng = np.random.default_rng(7)
    photo = Image.open(PHOTOS / "obama.jpg").convert("RGB").resize((32, 32))
    seeds = []
    for fmt in ("JPEG", "PNG", "WEBP", "BMP", "PPM"):
        out = io.BytesIO()
        photo.save(out, fmt)
        seeds.append(out.getvalue())
    seeds.append(b"P5\n32 32\n255\n" + bytes(32 * 32))  # a header where the fuzz finds PGM's parser
    outcomes = {"decoded": 0, "refused": 0}
    for i in range(1500):
        data = bytearray(seeds[i % len(seeds)])
        for _ in range(int(rng.integers(1, 8))):
            at = int(rng.integers(len(data)))
            kind = rng.random()
            if kind < 0.6:
                data[at] = int(rng.integers(256))
            elif kind < 0.8:
                data[at:at] = rng.integers(256, size=int(rng.integers(1, 8))).astype(np.uint8).tobytes()
            else:
                del data[at : at + int(rng.integers(1, 16))]
        try:
            load_rgb(io.BytesIO(bytes(data)), f"case {i}")
            outcomes["decoded"] += 1
        except InputError as exc:
            assert str(exc).startswith(f"case {i}: "), exc
            outcomes["refused"] += 1
    assert outcomes["decoded"] > 100 and outcomes["refused"] > 100  # both paths were exercised
    for header in (b"P5\n32 32\n2\xa55\n", b"P5\n" + b"9" * 40 + b" 32\n255\n", b"P5\n32"):
        with pytest.raises(InputError, match="cannot decode image"):
            load_rgb(io.BytesIO(header + bytes(64)))


def test_heic_is_named_with_what_to_do(tmp_path: pathlib.Path) -> None:
    heic = tmp_path / "IMG_0001.HEIC"
    heic.write_bytes(HEIC_BYTES)
    for source in (heic, io.BytesIO(heic.read_bytes())):
        with pytest.raises(InputError, match=r"HEIC/HEIF photo .* export it as JPEG"):
            load_rgb(source)
    mp4 = tmp_path / "clip.jpg"
    mp4.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(64))
    with pytest.raises(InputError, match="cannot decode image"):
        load_rgb(mp4)

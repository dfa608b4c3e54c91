"""Enrollment: photos -> checked embeddings -> the gallery.

Each image must hold exactly one usable face (found, and through every
quality gate); an image that does not is refused with the reason, and the
others still count. A person is written in one transaction, so a crash in a
folder enrollment leaves every person committed before it intact.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import pathlib
import re
import shlex
import unicodedata
from collections.abc import Sequence

import numpy as np

from facegate.decide import OperatingPoint, identify
from facegate.encoder import Encoder
from facegate.errors import FacegateError, InputError
from facegate.fleet.store import refuse_if_fleet_owned
from facegate.gallery import (
    NAME_PATTERN,
    RESERVED_NAMES,
    SAME_PHOTO,
    Gallery,
    ModelFingerprint,
    Person,
    Sample,
    Templates,
    check_display_name,
    check_name,
)
from facegate.images import HEIF_SUFFIXES, IMAGE_SUFFIXES, load_rgb
from facegate.perception import Face, Perception
from facegate.progress import progress


class RefusedError(FacegateError):
    """An enrollment image that cannot be used, and why."""


def fingerprint(encoder: Encoder) -> ModelFingerprint:
    return ModelFingerprint(encoder.card.sha256, encoder.card.name, encoder.card.embedding_size)


def one_usable_face(
    faces: Sequence[Face], where: str, advice: str = "enroll from a photo of one person"
) -> Face:
    """The single usable face, or ``RefusedError`` saying what is wrong (and ``advice``)."""
    if not faces:
        raise RefusedError(f"{where}: no face found")
    usable = [f for f in faces if f.rejected is None]
    if not usable:
        reasons = ", ".join(sorted({str(f.rejected) for f in faces}))
        raise RefusedError(f"{where}: face refused by the quality gates ({reasons})")
    if len(usable) > 1:
        raise RefusedError(f"{where}: {len(usable)} faces found; {advice}")
    return usable[0]


@dataclasses.dataclass
class Outcome:
    name: str
    person: Person | None  # None: nothing written (every image refused)
    added: int
    refused: list[str]
    again: int = 0  # photos the person was already enrolled from: not added again
    look_alikes: list[str] = dataclasses.field(default_factory=list)  # warnings: see ``look_alikes``


def look_alikes(templates: Templates, name: str, samples: Sequence[Sample], op: OperatingPoint) -> list[str]:
    """The samples that the gallery would already name as someone other than ``name``: a photo
    of alice enrolled as bob by mistake, or two people alike. A door would then take one for
    the other, so it is said (enrolled all the same: twins are both let in by design)."""
    out = []
    for s in samples:
        found = identify(templates, s.vector, op)
        other, distance = found.nearest, found.distance
        if other == name and found.second is not None:  # the nearest other is the second
            other, distance = found.second, found.distance + found.margin
        if other is not None and other != name and distance < op.threshold:
            out.append(
                f"{s.source} looks like {other} (distance {distance:.3f}, under the threshold "
                f"{op.threshold:.3f}): the door may take one for the other"
            )
    return out


def add_samples(
    gallery: Gallery,
    name: str,
    samples: Sequence[Sample],
    op: OperatingPoint | None,
    display_name: str | None = None,
    replace: bool = False,
) -> tuple[Person, list[str]]:
    """``gallery.add``, and the ``look_alikes`` warnings of ``samples`` (none without ``op``):
    every way in to enroll (the CLI, the review page, MQTT) says them the same."""
    alike: list[str] = []
    if op is not None:  # a photo the person already has is not added again, nor warned of again
        had = gallery.embeddings(name) if not replace else np.zeros((0, 0), np.float32)
        new = [
            s
            for s in samples
            if not (len(had) and (np.linalg.norm(had - s.vector, axis=1) < SAME_PHOTO).any())
        ]
        alike = look_alikes(gallery.templates(), name, new, op)
    # checked again where the write is: the fleet may have given the name since the caller's
    # check (a camera enroll waits up to decision.verify_timeout_s for a face)
    guard = functools.partial(refuse_if_fleet_owned, gallery, name, "enroll")
    return gallery.add(name, samples, display_name=display_name, replace=replace, guard=guard), alike


class Enroller:
    def __init__(self, perception: Perception, encoder: Encoder) -> None:
        if perception.chip_size != encoder.card.chip_size:
            raise FacegateError(
                f"perception cuts {perception.chip_size} px chips but {encoder.card.name} "
                f"takes {encoder.card.chip_size} px; build Perception with the encoder card's chip_size"
            )
        self.perception = perception
        self.encoder = encoder

    def sample(self, path: str | os.PathLike[str], keep_image: bool = False) -> Sample:
        path = pathlib.Path(path)
        try:
            # decoded from the file, which is read whole only to be kept: a video or disk image
            # named by mistake is refused from its first bytes (it was read into memory first,
            # which on a Pi runs out of it)
            with path.open("rb") as handle:
                try:
                    rgb = load_rgb(handle, str(path))
                except InputError as exc:
                    raise RefusedError(str(exc)) from None
                data = None
                if keep_image:
                    handle.seek(0)
                    data = handle.read()
        except OSError as exc:
            raise RefusedError(f"{path}: cannot read ({exc.strerror})") from None
        return self.sample_from_rgb(rgb, str(path), data)

    def sample_from_rgb(
        self, rgb: np.ndarray, source: str, image: bytes | None = None, advice: str | None = None
    ) -> Sample:
        faces = self.perception.photo_faces(rgb)
        if not faces and max(rgb.shape[:2]) >= 1280:  # scripts/dev/photo_faces.py
            raise RefusedError(
                f"{source}: no face found (in a large photo, a face narrower than about 1/20 of its "
                "longer side can be missed: crop the photo around the face)"
            )
        face = one_usable_face(faces, source, advice) if advice else one_usable_face(faces, source)
        vector = self.encoder.embed(face.chip)[0]
        quality = {k: round(float(v), 4) for k, v in face.quality.items()}
        return Sample(vector, source, quality, image)

    def enroll(
        self,
        gallery: Gallery,
        name: str,
        paths: Sequence[str | os.PathLike[str]],
        keep_images: bool = False,
        replace: bool = False,
        display_name: str | None = None,
        op: OperatingPoint | None = None,
    ) -> Outcome:
        """``op``: say which photos look like someone else enrolled (``look_alikes``)."""
        check_name(name)
        refuse_if_fleet_owned(gallery, name, "enroll")
        samples, refused = [], []
        for path in paths:
            try:
                samples.append(self.sample(path, keep_images))
            except RefusedError as exc:
                refused.append(str(exc))
        if not samples:
            return Outcome(name, None, 0, refused)
        before = 0 if replace or name not in gallery else gallery.person(name).embeddings
        person, alike = add_samples(gallery, name, samples, op, display_name, replace)
        added = person.embeddings - before
        return Outcome(name, person, added, refused, len(samples) - added, alike)

    def enroll_dir(
        self,
        gallery: Gallery,
        root: pathlib.Path,
        keep_images: bool = False,
        replace: bool = False,
        op: OperatingPoint | None = None,
    ) -> list[Outcome]:
        """One sub-folder per person, named as the person (``name_of_folder``); one transaction
        each. Hidden folders, and the ``__MACOSX`` of a zip made on a Mac, are not people."""
        if not root.is_dir():
            raise FacegateError(f"{root}: not a folder (expected one sub-folder per person)")
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not _not_a_person(p.name))
        if not folders:
            raise FacegateError(f"{root}: no sub-folders; expected one per person, named as the person")
        names: dict[str, tuple[pathlib.Path, str | None]] = {}
        for folder in folders:  # refuse a bad or fleet-owned name before anything is written
            name, display = name_of_folder(folder)
            if name in names:
                raise FacegateError(
                    f"{names[name][0]} and {folder} would both be enrolled as {name!r}; rename one"
                )
            refuse_if_fleet_owned(gallery, name, "enroll")
            names[name] = (folder, display)
        outcomes = []
        for name, (folder, display) in progress(list(names.items()), "enrolling"):
            files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
            # a HEIC goes to the decoder, which says how to export it; other files are named
            images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES | HEIF_SUFFIXES]
            outcome = self.enroll(gallery, name, images, keep_images, replace, display, op=op)
            outcome.refused += [
                f"{f}: not a photo facegate reads ({', '.join(sorted(IMAGE_SUFFIXES))})"
                for f in files
                if f not in images
            ]
            outcomes.append(outcome)
        return outcomes


def _not_a_person(folder: str) -> bool:
    return folder.startswith(".") or folder == "__MACOSX"


def name_of_folder(folder: pathlib.Path) -> tuple[str, str | None]:
    """(name, display name) of an ``enroll --dir`` sub-folder: its own name where that is a
    valid one (display name None: unchanged); else, as people name folders ("Bob Smith",
    "José", which a Mac stores decomposed), its letters without their accents and its digits,
    each other run as '_', with the folder's name (composed) to display."""
    given = folder.name
    if NAME_PATTERN.fullmatch(given):
        return check_name(given), None  # or why it may not be a name ("unknown")
    plain = unicodedata.normalize("NFKD", given).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", plain).strip("_.-")[:64].rstrip("_.-")
    if not NAME_PATTERN.fullmatch(name) or name.lower() in RESERVED_NAMES:
        raise FacegateError(
            f"{folder}: no name can be made of this folder's name (a name is letters a-z, digits, "
            "'_', '.' or '-': it becomes part of MQTT topics); rename the folder to one, or enroll "
            f"its photos with `facegate enroll NAME PHOTO... --display-name {shlex.quote(given)}`"
        )
    display = unicodedata.normalize("NFC", given)
    return name, check_display_name(display)


def rebuild(gallery: Gallery, enroller: Enroller) -> int:
    """Re-embed every kept enrollment image with ``enroller``'s model; one transaction."""
    samples = gallery.samples()
    missing = sorted({name for name, _, _, image in samples if image is None})
    if missing:
        raise FacegateError(
            f"{gallery.path}: cannot rebuild, no kept images for {', '.join(missing)}; "
            "remove and enroll them again (use --keep-images to allow rebuilds)"
        )
    vectors = {}
    for name, embedding_id, source, image in progress(samples, "rebuilding"):
        assert image is not None
        try:
            rgb = load_rgb(io.BytesIO(image), source)
        except InputError as exc:
            raise FacegateError(f"{name}: kept image {source} no longer decodes ({exc})") from None
        vectors[embedding_id] = enroller.sample_from_rgb(rgb, source).vector
    gallery.replace_vectors(vectors, fingerprint(enroller.encoder))
    return len(vectors)

"""Aligned faces for training: the device's own pipeline, run once, cached.

Every image under the given folders goes through ``facegate.perception``
(BlazeFace, dlib 5-point landmarks, quality gates) exactly as on the device.
Each usable face gives a chip at the student's size, a 150 px chip for the
teacher (dlib's encoder), and the teacher's embedding. Faces are labelled by
their identity folder when the folder is one (``root/identity/image``); loose
images and group photos give unlabelled faces (label -1), which only the
distillation loss uses.

The bank is cached as one ``.npz`` keyed by the folders, sizes and models, so
training runs do not repeat the detection.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np

from facegate.align import chip_transform, extract_chip
from facegate.encoder import Encoder
from facegate.errors import FacegateError, InputError
from facegate.images import IMAGE_SUFFIXES, load_rgb
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception
from facegate.progress import progress

log = logging.getLogger(__name__)

TEACHER = MODELS_DIR / "dlib_resnet_v1_int8.tflite"


@dataclasses.dataclass(frozen=True)
class Source:
    """A folder of images; ``labelled``: its sub-folders are identities."""

    root: pathlib.Path
    labelled: bool = True
    exclude: frozenset[str] = frozenset()  # relative paths (``identity/file``) to leave out


@dataclasses.dataclass
class FaceBank:
    chips: np.ndarray  # (N, S, S, 3) uint8, the student's chips
    teacher: np.ndarray  # (N, 128) float32, L2-normalised teacher embeddings
    labels: np.ndarray  # (N,) int64, -1 = unlabelled
    paths: np.ndarray  # (N,) str, "<source name>/<relative path>"
    identities: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: np.ndarray) -> FaceBank:
        return FaceBank(
            self.chips[keep], self.teacher[keep], self.labels[keep], self.paths[keep], self.identities
        )


def _images(source: Source) -> list[tuple[str, str | None]]:
    """(relative path, identity or None) for every image of a source."""
    out = []
    for f in sorted(source.root.rglob("*")):
        if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        rel = f.relative_to(source.root).as_posix()
        if rel in source.exclude:
            continue
        identity = rel.split("/", 1)[0] if source.labelled and "/" in rel else None
        out.append((rel, identity))
    return out


def _cache_key(sources: Sequence[Source], size: int) -> str:
    spec = [[str(s.root.resolve()), s.labelled, sorted(s.exclude)] for s in sources]
    blob = json.dumps([spec, size, TEACHER.name], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def build(
    sources: Sequence[Source],
    size: int,
    cache_dir: pathlib.Path,
    padding: float = 0.25,
    all_faces: Iterable[str] = (),
) -> FaceBank:
    """Detect, align and embed every face of ``sources`` (cached in ``cache_dir``).

    Labelled images use their largest usable face. Images whose source name
    is in ``all_faces`` (group photos) contribute every usable face, unlabelled.
    """
    for source in sources:  # a mistyped --root said "no usable face in the training folders"
        if not source.root.is_dir():
            kind = "one sub-folder per identity" if source.labelled else "images"
            raise FacegateError(f"{source.root}: not a folder (expected {kind})")
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache = cache_dir / f"facebank-{size}-{_cache_key(sources, size)}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            log.info("face bank from cache %s (%d faces)", cache, len(data["labels"]))
            return FaceBank(
                data["chips"],
                data["teacher"],
                data["labels"],
                data["paths"],
                [str(x) for x in data["identities"]],
            )
    perception = Perception()  # dlib's 150 px chips for the teacher; landmarks reused for the student
    teacher = Encoder(TEACHER, num_threads=2)
    everything = set(all_faces)
    jobs = [(s, rel, ident) for s in sources for rel, ident in _images(s)]
    identities = sorted({f"{s.root.name}/{i}" for s, _, i in jobs if i is not None})
    index = {name: k for k, name in enumerate(identities)}
    chips, vectors, labels, paths = [], [], [], []
    skipped = 0
    for source, rel, ident in progress(jobs, "aligning"):
        try:
            rgb = load_rgb(source.root / rel)
        except InputError:
            skipped += 1
            continue
        faces = [f for f in perception.faces(rgb) if f.rejected is None]
        if not faces:
            skipped += 1
            continue
        if source.root.name not in everything:
            faces = [max(faces, key=lambda f: f.detection.width)]
        for face in faces:
            chips.append(extract_chip(rgb, chip_transform(face.landmarks, size, padding), size))
            vectors.append(teacher.embed(face.chip)[0])
            labels.append(index[f"{source.root.name}/{ident}"] if ident is not None else -1)
            paths.append(f"{source.root.name}/{rel}")
    if not chips:
        raise FacegateError("no usable face in the training folders")
    log.info("face bank: %d faces, %d images without a usable face", len(chips), skipped)
    bank = FaceBank(
        np.stack(chips), np.stack(vectors).astype(np.float32), np.array(labels), np.array(paths), identities
    )
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(
        tmp,
        chips=bank.chips,
        teacher=bank.teacher,
        labels=bank.labels,
        paths=bank.paths,
        identities=np.array(identities),
    )
    tmp.replace(cache)
    return bank

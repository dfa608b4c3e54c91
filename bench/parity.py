"""Parity between machines: the same images through the device pipeline on each, compared.

``collect`` runs the images through what the daemon runs (detection, refinement, landmarks,
chip cutting, the shipped int8 and float32 encoders) and keeps every stage's output.
``compare`` sets the files of other machines (an emulated arm64 root, a Pi) beside a
reference (x86): faces found, landmarks, chips, embeddings, and decisions at each model's
shipped threshold, of two kinds:

- every pair of faces (same person or not): reported, not failed on. int8 kernels round
  differently on each CPU, so pair distances move a little (at most ``MAX_SHIFT``) and
  the pairs that lie that close to the threshold can land on either side of it;
- the decisions the device makes, where the images say who is who (``FOLDER/PERSON/x.jpg``):
  each face identified, and verified against its own person, with templates made from
  that person's other faces (leave one out). One of these that flips fails the check.

A face found on one machine and not the other, or a distance that moves more than
``MAX_SHIFT``, fails it too (``scripts/pi-check``).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import pathlib
import platform
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from facegate.decide import OperatingPoint, unit_distance
from facegate.encoder import Encoder
from facegate.errors import FacegateError
from facegate.images import load_rgb
from facegate.interpreter import interpreter_class
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception

MODELS = {"int8": "dlib_resnet_v1_int8.tflite", "float32": "dlib_resnet_v1_float32.tflite"}
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".webp"}
FAR = 1e-3  # the shipped default operating point (config `decision.far`)
# Largest move of a pair's distance put down to arithmetic rather than a fault: int8 on
# arm64 against x86 moved by at most 0.018 (docs/results/pi-check.md).
MAX_SHIFT = 0.05


def image_paths(sources: Iterable[pathlib.Path]) -> list[tuple[str, pathlib.Path]]:
    """(name, path) of each image: files as given, folders walked (sorted). The name is the
    path from the folder given, under its own name, so that machines holding the images
    in other places still line up."""
    out: list[tuple[str, pathlib.Path]] = []
    for source in sources:
        if source.is_dir():
            found = sorted(p for p in source.rglob("*") if p.suffix.lower() in SUFFIXES)
            out += [(f"{source.resolve().name}/{p.relative_to(source).as_posix()}", p) for p in found]
        elif source.is_file():
            out.append((source.name, source))
        else:
            raise FacegateError(f"{source}: no such file or folder")
    return out


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "numpy": np.__version__}
    runtime, _ = interpreter_class()
    for dist in (runtime, "facegate"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "?"
    return found


def collect(sources: Sequence[pathlib.Path]) -> dict[str, Any]:
    """Every face of every image, with its stages' outputs."""
    named = image_paths(sources)
    if not named:
        raise FacegateError("no images to compare")
    encoders = {kind: Encoder(MODELS_DIR / name) for kind, name in MODELS.items()}
    perception = Perception.for_encoder(encoders["int8"].card)
    rows: dict[str, list[Any]] = {"image": [], "box": [], "landmarks": [], "chip": [], "gate": []}
    names = [name for name, _ in named]
    for index, (name, path) in enumerate(named):
        faces = perception.faces(load_rgb(path), layout="RGB")
        # One order on every machine: left to right, then top to bottom.
        for face in sorted(faces, key=lambda f: (round(f.detection.box[0]), round(f.detection.box[1]))):
            rows["image"].append(index)
            rows["box"].append(np.asarray(face.detection.box, np.float64))
            rows["landmarks"].append(np.asarray(face.landmarks, np.float64))
            rows["chip"].append(face.chip)
            rows["gate"].append(face.rejected or "")
        print(f"parity: {index + 1}/{len(named)} {name}: {len(faces)} face(s)", file=sys.stderr)
    if not rows["chip"]:
        raise FacegateError("no face was found in any image")
    chips = np.stack(rows["chip"]).astype(np.uint8)
    data: dict[str, Any] = {
        "images": np.asarray(names),
        "image": np.asarray(rows["image"], np.int32),
        "box": np.stack(rows["box"]),
        "landmarks": np.stack(rows["landmarks"]),
        "chip": chips,
        "gate": np.asarray(rows["gate"]),
    }
    for kind, encoder in encoders.items():
        data[f"embedding_{kind}"] = np.concatenate(
            [encoder.embed(chips[i : i + 16]) for i in range(0, len(chips), 16)]
        )
        data[f"threshold_{kind}"] = np.float64(OperatingPoint.from_card(encoder.card, FAR).threshold)
    data["meta"] = np.asarray(
        json.dumps({"machine": platform.machine(), "system": platform.platform(), **_versions()})
    )
    return data


def save(data: dict[str, Any], path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **data)
    tmp.replace(path)


def load(path: pathlib.Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {key: f[key] for key in f.files}
    except (OSError, ValueError) as exc:
        raise FacegateError(f"{path}: not a parity file ({exc})") from None


def _pair_distances(embeddings: np.ndarray) -> np.ndarray:
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    i, j = np.triu_indices(len(unit), k=1)
    return unit_distance(np.sum(unit[i] * unit[j], axis=1))


def _labels(names: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Each face's person, from ``FOLDER/PERSON/file``; "" where the path does not say."""
    per_image = np.asarray([n.split("/")[-2] if n.count("/") >= 2 else "" for n in names.tolist()])
    return per_image[image] if len(image) else per_image[:0]


def device_decisions(embeddings: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Per labelled face: (name identified or "", verified as its own person), with each
    person's template the normalised mean of their other faces."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    people = sorted({str(x) for x in labels.tolist() if x})
    out = []
    for i in np.flatnonzero(labels != ""):
        templates = []
        for person in people:
            rows = (labels == person) & (np.arange(len(labels)) != i)
            mean = unit[rows].sum(axis=0) if rows.any() else np.full(unit.shape[1], np.nan)
            templates.append(mean / np.linalg.norm(mean))
        d = unit_distance(np.asarray(templates) @ unit[i])
        d = np.where(np.isnan(d), np.inf, d)
        best = int(np.argmin(d))
        own = d[people.index(str(labels[i]))]
        out.append((people[best] if d[best] < threshold else "", bool(own < threshold)))
    return np.asarray(out, dtype=object).reshape(-1, 2)


@dataclasses.dataclass(frozen=True)
class Side:
    """One machine's file set against the reference."""

    name: str
    meta: dict[str, Any]
    faces: int
    missing: list[str]  # images whose face count differs from the reference
    landmarks_max_px: float
    chip_mean_abs: float
    chip_max_abs: int
    chip_identical: float  # fraction of chip values equal to the reference's
    gates_changed: int
    cosine: dict[str, tuple[float, float]]  # model -> (min, mean)
    pairs: int
    flips: dict[str, int]  # model -> pair decisions that differ at the shipped threshold
    flip_margin: dict[str, float]  # model -> the flipped pair farthest from the threshold (reference)
    max_shift: dict[str, float]  # model -> the largest change of a pair's distance
    decisions: int  # device decisions (identify and verify) per model
    decision_flips: dict[str, int]
    right: dict[str, tuple[float, float]]  # model -> identified right, reference and this machine

    @property
    def ok(self) -> bool:
        return (
            not self.missing
            and not any(self.decision_flips.values())
            and all(shift <= MAX_SHIFT for shift in self.max_shift.values())
        )


def compare(reference: dict[str, Any], name: str, other: dict[str, Any]) -> Side:
    meta = json.loads(str(other["meta"]))
    if list(reference["images"]) != list(other["images"]):
        raise FacegateError(f"{name}: made from other images than the reference")
    counts = [np.bincount(d["image"], minlength=len(d["images"])) for d in (reference, other)]
    missing = [str(reference["images"][k]) for k in np.flatnonzero(counts[0] != counts[1])]
    # Faces compared only in images where both found the same number.
    keep = np.isin(reference["image"], np.flatnonzero(counts[0] == counts[1]))
    keep_other = np.isin(other["image"], np.flatnonzero(counts[0] == counts[1]))
    ref = {k: v[keep] for k, v in reference.items() if k not in ("images", "meta") and v.ndim}
    oth = {k: v[keep_other] for k, v in other.items() if k not in ("images", "meta") and v.ndim}
    diff = np.abs(ref["chip"].astype(np.int16) - oth["chip"].astype(np.int16))
    cosine, flips, margins, shifts, decision_flips, right = {}, {}, {}, {}, {}, {}
    pairs = decisions = 0
    labels = _labels(reference["images"], ref["image"])
    for kind in MODELS:
        a, b = ref[f"embedding_{kind}"], oth[f"embedding_{kind}"]
        cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        cosine[kind] = (float(cos.min()), float(cos.mean()))
        threshold = float(reference[f"threshold_{kind}"])
        da, db = _pair_distances(a), _pair_distances(b)
        pairs = len(da)
        flipped = (da < threshold) != (db < threshold)
        flips[kind] = int(np.sum(flipped))
        margins[kind] = float(np.max(np.abs(da[flipped] - threshold))) if flipped.any() else 0.0
        shifts[kind] = float(np.max(np.abs(da - db))) if len(da) else 0.0
        ra, rb = device_decisions(a, labels, threshold), device_decisions(b, labels, threshold)
        decisions = 2 * len(ra)
        decision_flips[kind] = int(np.sum(ra != rb))
        truth = labels[labels != ""]
        right[kind] = (
            (float(np.mean(ra[:, 0] == truth)), float(np.mean(rb[:, 0] == truth))) if len(ra) else (0.0, 0.0)
        )
    return Side(
        name=name,
        meta=meta,
        faces=len(ref["chip"]),
        missing=missing,
        landmarks_max_px=float(np.max(np.abs(ref["landmarks"] - oth["landmarks"]))) if len(diff) else 0.0,
        chip_mean_abs=float(diff.mean()) if diff.size else 0.0,
        chip_max_abs=int(diff.max()) if diff.size else 0,
        chip_identical=float(np.mean(diff == 0)) if diff.size else 1.0,
        gates_changed=int(np.sum(ref["gate"] != oth["gate"])),
        cosine=cosine,
        pairs=pairs,
        flips=flips,
        flip_margin=margins,
        max_shift=shifts,
        decisions=decisions,
        decision_flips=decision_flips,
        right=right,
    )


def format_report(reference: dict[str, Any], sides: list[Side]) -> str:
    ref_meta = json.loads(str(reference["meta"]))
    thresholds = ", ".join(f"{k} {float(reference[f'threshold_{k}']):.4f}" for k in MODELS)
    lines = [
        f"Reference: {ref_meta['machine']}, Python {ref_meta['python']}, numpy {ref_meta['numpy']}; "
        f"{len(reference['images'])} images, {len(reference['chip'])} faces. "
        f"Shipped thresholds at FAR {FAR:g}: {thresholds}.",
        "",
        "| machine | Python, numpy, runtime | faces | images with another face count | "
        "landmarks max px | chip values identical | chip mean / max abs | gates changed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in sides:
        runtime = next(
            (f"{k} {v}" for k, v in s.meta.items() if k in ("ai-edge-litert", "tflite-runtime")), "?"
        )
        lines.append(
            f"| {s.name} ({s.meta['machine']}) | {s.meta['python']}, {s.meta['numpy']}, {runtime} "
            f"| {s.faces} "
            f"| {len(s.missing)} | {s.landmarks_max_px:.3f} | {100 * s.chip_identical:.2f}% "
            f"| {s.chip_mean_abs:.4f} / {s.chip_max_abs} | {s.gates_changed} |"
        )
    lines += [
        "",
        "| machine | model | cosine min / mean | largest distance shift | device decisions flipped "
        "| identified right, reference / this | pairs flipped (farthest from threshold) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sides:
        for k in MODELS:
            lines.append(
                f"| {s.name} | {k} | {s.cosine[k][0]:.5f} / {s.cosine[k][1]:.6f} | {s.max_shift[k]:.4f} "
                f"| {s.decision_flips[k]} of {s.decisions} "
                f"| {100 * s.right[k][0]:.1f}% / {100 * s.right[k][1]:.1f}% "
                f"| {s.flips[k]} of {s.pairs} ({s.flip_margin[k]:.4f}) |"
            )
    for s in sides:
        if s.missing:
            lines.append(f"\n{s.name}: another face count in {', '.join(s.missing)}")
    lines.append(
        "\nDevice decisions: each face whose path names its person identified, and verified "
        "against that person, with templates from the person's other faces. Pairs: every two "
        f"faces; they are reported, not failed on. A check fails on a lost face, a flipped device "
        f"decision, or a distance shift over {MAX_SHIFT}."
    )
    return "\n".join(lines) + "\n"


def _pairs(values: Sequence[str]) -> list[tuple[str, pathlib.Path]]:
    out = []
    for value in values:
        name, sep, path = value.partition("=")
        out.append((name, pathlib.Path(path)) if sep else (pathlib.Path(value).stem, pathlib.Path(value)))
    return out


def run_compare(reference: pathlib.Path, others: Sequence[str], markdown: pathlib.Path | None) -> int:
    """``facegate bench parity compare``: print (and write) the report; 1 on any flip or lost face."""
    ref = load(reference)
    sides = [compare(ref, name, load(path)) for name, path in _pairs(others)]
    report = format_report(ref, sides)
    print(report, end="")
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(report, encoding="utf-8")
    bad = [s.name for s in sides if not s.ok]
    if bad:
        print(f"parity: FAILED on {', '.join(bad)} (a decision flipped or a face was lost)", file=sys.stderr)
        return 1
    return 0


__all__ = ["collect", "compare", "format_report", "image_paths", "load", "run_compare", "save"]

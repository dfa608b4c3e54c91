"""``facegate evaluate pairs``: LFW-protocol verification accuracy of an encoder."""

from __future__ import annotations

import collections
import dataclasses
import pathlib
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from facegate.align import Similarity, chip_transform, extract_chip
from facegate.convert.metrics import rates, tar_at_far, ten_fold, wilson_interval
from facegate.convert.reference import load_reference
from facegate.decide import OperatingPoint, unit_distance
from facegate.encoder import Encoder
from facegate.errors import FacegateError, InputError
from facegate.images import load_rgb
from facegate.modelcard import ModelCard
from facegate.perception import Face, Perception
from facegate.progress import progress


@dataclasses.dataclass(frozen=True)
class Pair:
    a: str  # relative image path
    b: str
    same: bool
    fold: int


def parse_pairs(path: pathlib.Path) -> list[Pair]:
    """LFW ``pairs.txt``: a header ``folds n`` then per fold n same and n different lines."""
    try:
        lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise FacegateError(f"{path}: cannot read pairs file: {exc.strerror}") from None

    def bad(number: int, why: str) -> FacegateError:
        return FacegateError(f"{path}:{number}: {why}")

    if not lines or len(lines[0]) != 2 or not all(x.isdigit() for x in lines[0]):
        raise bad(1, "first line must be '<folds> <pairs per half fold>'")
    folds, per = int(lines[0][0]), int(lines[0][1])
    body = lines[1:]
    if len(body) != folds * per * 2:
        raise bad(1, f"header promises {folds * per * 2} pairs, file has {len(body)}")
    pairs = []
    for i, fields in enumerate(body):
        number = i + 2
        try:
            if len(fields) == 3:
                name, x, y = fields
                pair = Pair(_image(name, x), _image(name, y), True, i // (2 * per))
            elif len(fields) == 4:
                pair = Pair(_image(fields[0], fields[1]), _image(fields[2], fields[3]), False, i // (2 * per))
            else:
                raise ValueError(f"expected 3 or 4 fields, got {len(fields)}")
        except ValueError as exc:
            raise bad(number, str(exc)) from None
        pairs.append(pair)
    return pairs


def parse_folds(spec: str) -> set[int]:
    """``"0-4"``, ``"5,6,7"`` or ``"3"`` -> a set of fold numbers."""
    folds: set[int] = set()
    try:
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            folds.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise FacegateError(f"bad --folds {spec!r}: use e.g. 0-4 or 5,6,7") from None
    if not folds:
        raise FacegateError(f"bad --folds {spec!r}: no fold selected")
    return folds


def select_folds(pairs: list[Pair], folds: set[int] | None) -> list[Pair]:
    if folds is None:
        return pairs
    chosen = [p for p in pairs if p.fold in folds]
    if not chosen:
        have = sorted({p.fold for p in pairs})
        raise FacegateError(f"no pairs in folds {sorted(folds)} (the file has folds {have})")
    return chosen


def _identity(path: str) -> str:
    return path.split("/", 1)[0]


def _image(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


class ChipSource(Protocol):
    description: str

    def chips(self, image: np.ndarray, name: str = "") -> np.ndarray | None:
        """One aligned chip for the image's face (``name``: its relative path), or None."""


class FixedCrop:
    """A fixed crop of LFW's 250x250 deep-funneled images approximating dlib's chip.

    The crop is the mean of dlib's own chip transforms over the 400 reference
    images (shared/reference): it stands in for detection + alignment until
    the device pipeline does that.
    """

    def __init__(self, size: int = 150) -> None:
        ref = load_reference()
        transforms = [chip_transform(points, size) for points in ref.landmarks]
        centre = np.mean([t.apply(np.array([[size / 2, size / 2]]))[0] for t in transforms], axis=0)
        scale = float(np.mean([t.scale for t in transforms]))
        angle = float(np.mean([t.angle for t in transforms]))
        offset = centre - Similarity(scale, angle, (0.0, 0.0)).apply(np.array([[size / 2, size / 2]]))[0]
        self.transform = Similarity(scale, angle, (float(offset[0]), float(offset[1])))
        self.size = size
        self.description = (
            f"fixed crop of lfw deep-funneled 250x250: mean dlib chip transform over {len(transforms)} "
            f"reference images (scale {scale:.4f}, angle {np.degrees(angle):.2f} deg, "
            f"centre ({centre[0]:.1f}, {centre[1]:.1f})), dlib sampling convention"
        )

    def chips(self, image: np.ndarray, name: str = "") -> np.ndarray | None:
        return extract_chip(image, self.transform, self.size)


def pick_face(faces: Sequence[Face], shape: tuple[int, ...], pick: str) -> int:
    """Which of ``faces`` (not empty) an evaluation takes: "central", the face nearest the
    centre of an image of ``shape``; "largest", the widest."""
    if pick == "central":
        centre = np.array(shape[1::-1]) / 2
        return min(
            range(len(faces)),
            key=lambda i: float(
                np.hypot(*(np.add(faces[i].detection.box[:2], faces[i].detection.box[2:]) / 2 - centre))
            ),
        )
    return max(range(len(faces)), key=lambda i: faces[i].detection.width)


class DetectAlign:
    """The device pipeline on the raw image: BlazeFace, dlib 5-point landmarks, dlib chip.

    ``pick``: "central" takes the face nearest the image centre (LFW labels the
    centred face), "largest" the biggest. A chosen face that fails a quality
    gate counts as a failure, with its reason.
    """

    def __init__(self, perception: Perception, pick: str = "central") -> None:
        if pick not in ("central", "largest"):
            raise FacegateError(f"pick must be 'central' or 'largest', got {pick!r}")
        self.perception = perception
        self.pick = pick
        self.failures: collections.Counter[str] = collections.Counter()
        size, refine_size = perception.detector.size, perception.detector.refine_size
        refined = f"refined on a crop under {perception.refine_below:g} px at {refine_size}x{refine_size}, "
        self.description = (
            f"detected and aligned: BlazeFace {size}x{size}, "
            f"{refined if perception.refine else ''}"
            f"dlib 5-point landmarks (numpy), dlib chip {perception.chip_size} padding {perception.padding}; "
            f"{pick} face; gates {perception.gates}"
        )

    def chips(self, image: np.ndarray, name: str = "") -> np.ndarray | None:
        faces = self.perception.photo_faces(image)  # as enrollment reads a photo
        if not faces:
            self.failures["no_face"] += 1
            return None
        face = faces[pick_face(faces, image.shape, self.pick)]
        if face.rejected:
            self.failures[face.rejected] += 1
            return None
        return face.chip


class GivenLandmarks:
    """Chips cut with 5-point landmarks computed elsewhere (e.g. by dlib itself),
    from an .npz of ``paths`` and ``landmarks5`` (NaN where no face was found)."""

    def __init__(self, path: pathlib.Path, label: str) -> None:
        with np.load(path) as data:
            self.landmarks = {str(p): m for p, m in zip(data["paths"], data["landmarks5"])}
        self.description = f"given landmarks ({label}), dlib chip 150 padding 0.25"

    def chips(self, image: np.ndarray, name: str = "") -> np.ndarray | None:
        points = self.landmarks.get(name)
        if points is None or np.isnan(points).any():
            return None
        return extract_chip(image, chip_transform(points), 150)


def embed_images(
    encoder: Encoder, root: pathlib.Path, paths: Iterable[str], source: ChipSource
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Embed each image once; returns embeddings by path and the paths that failed."""
    unique = sorted(set(paths))
    embeddings: dict[str, np.ndarray] = {}
    failed: list[str] = []
    for rel in progress(unique, "embedding"):
        try:
            chip = source.chips(load_rgb(root / rel), rel)
        except InputError:
            chip = None
        if chip is None:
            failed.append(rel)
            continue
        embeddings[rel] = encoder.embed(chip)[0]
    return embeddings, failed


@dataclasses.dataclass(frozen=True)
class PairDistances:
    distances: np.ndarray  # inf where an image had no usable face
    same: np.ndarray
    folds: np.ndarray
    images: int
    failed: list[str]


def pair_distances(
    encoder: Encoder,
    root: pathlib.Path,
    pairs_file: pathlib.Path,
    source: ChipSource,
    folds: set[int] | None = None,
) -> PairDistances:
    pairs = select_folds(parse_pairs(pairs_file), folds)
    embeddings, failed = embed_images(encoder, root, [p for pair in pairs for p in (pair.a, pair.b)], source)
    # A pair with an image where no face was found gets an infinite distance: it
    # is rejected, which is wrong for same-person pairs, as on a real device.
    distances = np.array(
        [
            float(np.linalg.norm(embeddings[p.a] - embeddings[p.b]))
            if p.a in embeddings and p.b in embeddings
            else np.inf
            for p in pairs
        ]
    )
    return PairDistances(
        distances,
        np.array([p.same for p in pairs]),
        np.array([p.fold for p in pairs]),
        len(embeddings) + len(failed),
        failed,
    )


def own_identity_images(root: pathlib.Path, pairs_file: pathlib.Path, folds: set[int]) -> list[str]:
    """Every image of the identities that only the selected folds name (sorted)."""
    pairs = parse_pairs(pairs_file)
    mine = {_identity(x) for p in select_folds(pairs, folds) for x in (p.a, p.b)}
    others = {_identity(x) for p in pairs if p.fold not in folds for x in (p.a, p.b)}
    return [f"{i}/{f.name}" for i in sorted(mine - others) for f in sorted((root / i).glob("*.jpg"))]


def all_pair_distances(
    encoder: Encoder, root: pathlib.Path, pairs_file: pathlib.Path, source: ChipSource, folds: set[int]
) -> PairDistances:
    """Every pair among all images of the identities that only the selected folds name.

    Identities that the other folds also name are dropped, so two
    complementary selections (0-4 and 5-9) share no person. Far more
    impostor pairs than the listed ones: a FAR of 1e-3 is then measured on
    millions of pairs, not on a few false accepts out of 1,500.
    """
    paths = own_identity_images(root, pairs_file, folds)
    embeddings, failed = embed_images(encoder, root, paths, source)
    names = sorted(embeddings)
    matrix = np.stack([embeddings[n] for n in names]).astype(np.float64)
    labels = np.array([_identity(n) for n in names])
    upper = np.triu_indices(len(names), k=1)
    gram = np.clip(matrix @ matrix.T, -1.0, 1.0)[upper]
    distances = unit_distance(gram)
    same = labels[upper[0]] == labels[upper[1]]
    # A failed image would be in len(names) - 1 pairs; with identity-folder
    # images there is no listed pair to fail, so failures are only counted.
    return PairDistances(distances, same, np.full(len(same), -1), len(paths), failed)


def operating_point(
    distances: np.ndarray, same: np.ndarray, card: ModelCard, far: float
) -> dict[str, object]:
    """The shipped, calibrated threshold measured on these pairs (not re-fitted)."""
    threshold = OperatingPoint.from_card(card, far).threshold
    tar, measured = rates(distances, same, threshold)
    impostor = ~same.astype(bool)
    impostors = int(impostor.sum())
    false_accepts = int((distances[impostor] < threshold).sum())
    return {
        "target_far": far,
        "threshold": threshold,
        "far": measured,
        "tar": tar,
        "false_accepts": false_accepts,
        "impostor_pairs": impostors,
        "genuine_pairs": int(same.astype(bool).sum()),
        "far_95ci": wilson_interval(false_accepts, impostors),
    }


def evaluate_pairs(
    encoder: Encoder,
    root: pathlib.Path,
    pairs_file: pathlib.Path,
    source: ChipSource,
    folds: set[int] | None = None,
    all_pairs: bool = False,
    far: float = 1e-3,
) -> dict[str, object]:
    """10-fold accuracy (listed pairs; a pair with a failed image counts as a
    wrong answer) and the shipped operating point measured on these pairs."""
    started = time.perf_counter()
    if all_pairs:
        d = all_pair_distances(encoder, root, pairs_file, source, folds or set(range(10)))
        result: dict[str, object] = {"pairs": "all pairs among the selected folds' own identities"}
    else:
        d = pair_distances(encoder, root, pairs_file, source, folds)
        result = {**ten_fold(d.distances, d.same, d.folds), "pairs": len(d.distances)}
    result.update(
        {
            "folds": sorted(folds) if folds else "all",
            "tar_at_far": tar_at_far(d.distances, d.same),
            "operating_point": operating_point(d.distances, d.same, encoder.card, far),
            "images": d.images,
            "failed": len(d.failed),
            "failed_images": d.failed[:20],
            "failure_reasons": dict(getattr(source, "failures", {})),
            "alignment": source.description,
            "model": encoder.card.sha256,
            "model_name": encoder.card.name,
            "distance": "euclidean between L2-normalised embeddings",
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    return result

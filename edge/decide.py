"""The decisions users wire to doors, as plain functions over embeddings.

- ``verify``: one embedding and a claimed name -> accepted or not (1:1).
- ``identify``: one embedding -> the nearest enrolled person, or ``None``
  (unknown) when nobody is within the threshold (1:N, open set).

Distances are Euclidean between L2-normalised embeddings (0 = identical,
2 = opposite); accept when ``distance < threshold``. The threshold comes from
the model card's calibrated operating point, named by its target false
accept rate (``OperatingPoint.from_card(card, 1e-3)``), never typed in as a
raw distance. ``score`` is the calibrated probability that the two faces are
the same person (a logistic fit on distance, stored in the card), for display
and logging; the decision itself is the threshold.

Corrections: a face recorded as *not* alice ("that event was not alice",
``Gallery.add_negative``) vetoes naming alice for any face nearer to it than to
alice's template; such a face is unknown instead (``Identification.corrected``),
and a verify of alice by it is rejected. ``check_correction`` refuses a negative
so near alice's template that it would veto alice herself (``CORRECTION_GUARD``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from facegate.errors import FacegateError
from facegate.gallery import Templates
from facegate.modelcard import ModelCard

# A correction nearer to the person's template than this share of the threshold is refused:
# there it would veto most of the person's own faces (measured: BENCHMARKS.md, "Corrections").
CORRECTION_GUARD = 0.9


def far_key(far: float) -> str:
    """The card's key for an operating point: ``far_0.001`` for 1e-3."""
    return f"far_{far:g}"


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    target_far: float
    threshold: float
    score_a: float = 0.0  # P(same | d) = 1 / (1 + exp(-(a + b * d)))
    score_b: float = 0.0

    @classmethod
    def from_card(cls, card: ModelCard, far: float) -> OperatingPoint:
        entry = card.thresholds.get(far_key(far))
        if entry is None:
            known = ", ".join(sorted(card.thresholds)) or "none"
            raise FacegateError(
                f"{card.path}: no threshold calibrated for FAR {far:g} (have: {known}); "
                f"run `facegate calibrate --far {far:g}`"
            )
        method = card.data.get("verification", {}).get("method", "distance")
        if method != "distance":
            raise FacegateError(
                f"{card.path}: verification method {method!r} is not supported by this version "
                "(it decides by distance); run `facegate convert head` again or update facegate"
            )
        score = card.data.get("score", {})
        return cls(far, float(entry["threshold"]), float(score.get("a", 0.0)), float(score.get("b", 0.0)))

    @classmethod
    def for_tracks(cls, card: ModelCard, far: float, frames: int) -> OperatingPoint:
        """The threshold for the mean embedding of ``frames`` faces of one track
        (``track_thresholds`` in the card, from ``facegate calibrate --track-frames``)."""
        single = cls.from_card(card, far)
        entry = card.data.get("track_thresholds", {}).get(far_key(far))
        if entry is None or int(entry.get("frames", 0)) != frames:
            have = entry and f"calibrated for {entry.get('frames')} frames"
            raise FacegateError(
                f"{card.path}: no track threshold for FAR {far:g} and {frames} frames "
                f"({have or 'none'}); run `facegate calibrate --far {far:g} --track-frames {frames}` "
                "or use decision.aggregate: votes"
            )
        return dataclasses.replace(single, threshold=float(entry["threshold"]))

    def score(self, distance: float) -> float:
        if self.score_b == 0.0:
            return float("nan")  # no score calibration in the card
        z = self.score_a + self.score_b * distance
        return 1.0 / (1.0 + math.exp(-max(-80.0, min(80.0, z))))


@dataclasses.dataclass(frozen=True)
class Verification:
    claimed: str
    accepted: bool
    distance: float
    score: float
    threshold: float
    target_far: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Identification:
    name: str | None  # None: unknown (nobody within the threshold)
    distance: float  # to the nearest enrolled person (inf if the gallery is empty)
    nearest: str | None  # the nearest person, even when too far to be named
    second: str | None
    margin: float  # second-best distance minus best (inf with fewer than 2 people)
    score: float
    threshold: float
    target_far: float
    corrected: bool = False  # within the threshold, but nearer a correction: not named

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def unit_embedding(embedding: np.ndarray, size: int) -> np.ndarray:
    """``embedding`` as a float32 unit vector of ``size``; FacegateError if it is not one."""
    e = np.asarray(embedding, np.float32).reshape(-1)
    if e.shape != (size,) or not np.all(np.isfinite(e)):
        raise FacegateError(f"expected an embedding of {size} finite numbers, got shape {e.shape}")
    norm = float(np.linalg.norm(e))
    if norm == 0:
        raise FacegateError(f"expected an embedding of {size} finite numbers, not all zeros")
    return e / norm


def distances(templates: Templates, embedding: np.ndarray) -> np.ndarray:
    """Distance from ``embedding`` to every template (one matrix-vector product)."""
    e = unit_embedding(embedding, templates.matrix.shape[1])
    return unit_distance(templates.matrix @ e)


def unit_distance(dots: Any) -> Any:
    """Euclidean distance between unit vectors from their dot products (a number or an
    array): sqrt(2 - 2 dot), never the square root of a rounding error below zero."""
    return np.sqrt(np.maximum(2.0 - 2.0 * dots, 0.0))


def verify(templates: Templates, embedding: np.ndarray, claimed: str, op: OperatingPoint) -> Verification:
    try:
        row = templates.names.index(claimed)
    except ValueError:
        raise FacegateError(f"{claimed!r} is not enrolled") from None
    e = unit_embedding(embedding, templates.matrix.shape[1])
    d = _distance(float(templates.matrix[row] @ e))
    accepted = d < op.threshold and not _vetoed(templates, row, e, d)
    return Verification(claimed, accepted, d, op.score(d), op.threshold, op.target_far)


def _vetoed(templates: Templates, row: int, unit: np.ndarray, distance: float) -> bool:
    """A correction recorded against ``row`` is nearer to the face than the person's template."""
    negatives = templates.negatives_of(row)
    return bool(len(negatives)) and _distance(float(np.max(negatives @ unit))) < distance


def check_correction(templates: Templates, name: str, embedding: np.ndarray, op: OperatingPoint) -> float:
    """Whether ``embedding`` may be recorded as *not* ``name``: its distance to ``name``'s
    template, or a ``FacegateError`` saying why not (not enrolled; so near the template that
    it would veto ``name``'s own faces: ``CORRECTION_GUARD`` of the threshold)."""
    try:
        row = templates.names.index(name)
    except ValueError:
        raise FacegateError(f"{name!r} is not enrolled") from None
    d = _distance(float(templates.matrix[row] @ unit_embedding(embedding, templates.matrix.shape[1])))
    if d < CORRECTION_GUARD * op.threshold:
        raise FacegateError(
            f"correction refused: this face is {d:.3f} from {name}'s template, nearer than "
            f"{CORRECTION_GUARD:g} of the threshold ({op.threshold:.3f}), where most of {name}'s own "
            f"faces are; recorded as not {name}, it would turn {name} away. If it really is someone "
            f"else, enroll more photos of {name} (or enroll that person)"
        )
    return d


def identify(templates: Templates, embedding: np.ndarray, op: OperatingPoint) -> Identification:
    if not templates.names:
        return Identification(None, math.inf, None, None, math.inf, 0.0, op.threshold, op.target_far)
    # Rank by dot product (one pass over the matrix); distances only for the top two.
    unit = unit_embedding(embedding, templates.matrix.shape[1])
    dots = templates.matrix @ unit
    if len(dots) >= 2:
        top = np.argpartition(dots, len(dots) - 2)[-2:]
        best, second = (
            (int(top[1]), int(top[0])) if dots[top[1]] >= dots[top[0]] else (int(top[0]), int(top[1]))
        )
    else:
        best, second = 0, -1
    distance = _distance(float(dots[best]))
    nearest = templates.names[best]
    second_name = templates.names[second] if second >= 0 else None
    margin = _distance(float(dots[second])) - distance if second >= 0 else math.inf
    name = nearest if distance < op.threshold else None
    corrected = name is not None and _vetoed(templates, best, unit, distance)
    return Identification(
        None if corrected else name,
        distance,
        nearest,
        second_name,
        margin,
        op.score(distance),
        op.threshold,
        op.target_far,
        corrected,
    )


def _distance(dot: float) -> float:
    return float(unit_distance(dot))


@dataclasses.dataclass
class VerifyVotes:
    """A verify request decided over frames: accepted once ``need`` frames accept the claim,
    rejected once ``window`` frames have voted without that. A claim that is not enrolled
    (or was removed meanwhile) gets a vote against from every frame, like a stranger."""

    claim: str
    need: int
    window: int
    votes: list[bool] = dataclasses.field(default_factory=list)
    best: float = math.inf  # the best distance seen to the claim's template

    def add(self, templates: Templates, embedding: np.ndarray, op: OperatingPoint) -> bool | None:
        """One frame's vote; the decision once there is one (True accepted, False rejected)."""
        try:
            result = verify(templates, embedding, self.claim, op)
            accepted, distance = result.accepted, result.distance
        except FacegateError:
            accepted, distance = False, math.inf
        self.votes.append(accepted)
        self.best = min(self.best, distance)
        if sum(self.votes) >= self.need:
            return True
        if len(self.votes) >= self.window:
            return False
        return None

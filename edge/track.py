"""Faces followed across frames, and one decision per person at the camera.

A face in a new frame joins the track whose last box overlaps it most
(intersection over union >= ``min_iou``); otherwise it starts a new track.
Each frame that went through the whole pipeline adds one vote to its track:
the name ``identify`` gave, or ``None`` for unknown (a decided face followed by
the detector alone, ``facegate.follow``, adds none). A track is decided when ``votes_to_decide`` of its last
``window`` votes agree; the decision is reported once, so one bad frame
neither admits nor rejects anyone, and a person standing at the door is
announced once, not thirty times a second. A track not seen for
``max_missing`` frames is dropped. Frames whose face failed a quality gate
add no vote (they are not evidence either way).

A decided track is watched for someone else taking its place (two people swapped
without the face leaving the frame). With ``same_person`` set (the daemon sets
the operating threshold), a frame after the decision is someone else's when it
both names another answer than the decision and shows a face further than
``same_person`` from the faces that decided the track. When ``votes_to_decide``
of the last ``window`` frames are, the track ends and a new one, with a new id,
takes its place, started from those frames and decided as any track is. So a
stranger who steps into a known person's place is reported, and a known person
who steps into a stranger's place is recognised, each once. Either test alone
splits one person: frames of one visit drift past the threshold as the head
turns (still named the same), and with ``aggregate: mean`` a face decided
unknown by its mean can be named frame by frame at the single-face threshold
(still the same face).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Callable, Sequence

import numpy as np

from facegate.decide import unit_distance
from facegate.encoder import l2_normalise

Box = tuple[float, float, float, float]  # left, top, right, bottom
UNKNOWN = None
AGGREGATES = ("votes", "mean")
Judge = Callable[[np.ndarray], tuple[str | None, float]]  # unit embedding -> (name or None, distance)


def iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class Observation:
    box: Box
    vote: str | None  # a name, None for unknown
    usable: bool = True  # False: the face failed a quality gate; no vote
    distance: float = float("nan")
    embedding: np.ndarray | None = None  # the frame's embedding (aggregate "mean" needs it)


@dataclasses.dataclass(frozen=True)
class Decision:
    track: int
    name: str | None  # None: a stranger
    votes: int  # how many of the window agreed
    frames: int  # frames the track had been seen when decided
    distance: float  # best (smallest) distance among the agreeing votes
    box: Box  # where the face was on the deciding frame


@dataclasses.dataclass
class Track:
    id: int
    box: Box
    votes: collections.deque[tuple[str | None, float]]
    embeddings: list[np.ndarray] = dataclasses.field(default_factory=list)
    frames: int = 0
    missing: int = 0
    decided: Decision | None = None
    # the last ``window`` usable observations; once decided, only those since the decision
    recent: collections.deque[Observation] = dataclasses.field(default_factory=collections.deque)
    anchor: np.ndarray | None = None  # unit mean of the faces that decided the track


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
    votes_to_decide: int = 3
    window: int = 5
    min_iou: float = 0.3
    max_missing: int = 10
    aggregate: str = "votes"  # or "mean": decide from the mean embedding of votes_to_decide frames
    same_person: float | None = None  # a face further than this from a decided track's is someone else

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        if not 1 <= self.votes_to_decide <= self.window:
            raise ValueError(
                f"votes_to_decide ({self.votes_to_decide}) must be between 1 and window ({self.window})"
            )
        if not 0.0 < self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {self.min_iou}")


class Tracker:
    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: dict[int, Track] = {}
        self.assigned: list[Track] = []  # the track of each observation of the last update
        self._ids = itertools.count(1)

    def update(self, observations: Sequence[Observation], judge: Judge | None = None) -> list[Decision]:
        """Feed one frame's faces; returns the decisions made on this frame. ``judge`` names a
        track's mean embedding; required with ``aggregate="mean"``."""
        mean = self.config.aggregate == "mean"
        if mean and judge is None:
            raise ValueError('aggregate "mean" needs a judge for the mean embedding')
        matched = self.match([o.box for o in observations])
        decisions = []
        seen = set()
        self.assigned = []
        for obs, track in zip(observations, matched):
            if track is None:
                track = self._new_track(obs.box)
            track.box, track.missing = obs.box, 0
            track.frames += 1
            if obs.usable:
                track.recent.append(obs)
                others = self._others(track)
                if len(others) >= self.config.votes_to_decide:
                    track = self._successor(track, others)
                else:
                    self._vote(track, obs)
            self.assigned.append(track)
            seen.add(track.id)
            if track.decided is None:
                decision = self._decide_mean(track, judge) if mean and judge else self._decide(track)
                if decision is not None:
                    track.decided = decision
                    track.anchor = self._anchor(track)
                    track.recent.clear()
                    decisions.append(decision)
        for track_id in list(self.tracks):
            if track_id not in seen:
                track = self.tracks[track_id]
                track.missing += 1
                if track.missing > self.config.max_missing:
                    del self.tracks[track_id]
        return decisions

    def match(self, boxes: Sequence[Box]) -> list[Track | None]:
        """The track each box continues (None: a new face). Greedy by overlap: the best
        (track, face) pairs first, each used once. ``update`` matches the same way."""
        candidates = sorted(
            ((iou(t.box, b), i, t.id) for i, b in enumerate(boxes) for t in self.tracks.values()),
            reverse=True,
        )
        out: list[Track | None] = [None] * len(boxes)
        used = set()
        for overlap, i, track_id in candidates:
            if overlap < self.config.min_iou:
                break
            if out[i] is None and track_id not in used:
                out[i] = self.tracks[track_id]
                used.add(track_id)
        return out

    def _new_track(self, box: Box) -> Track:
        window = self.config.window
        track = Track(
            next(self._ids), box, collections.deque(maxlen=window), recent=collections.deque(maxlen=window)
        )
        self.tracks[track.id] = track
        return track

    def _vote(self, track: Track, obs: Observation) -> None:
        track.votes.append((obs.vote, obs.distance))
        if (
            self.config.aggregate == "mean"
            and obs.embedding is not None
            and len(track.embeddings) < self.config.votes_to_decide
        ):
            track.embeddings.append(obs.embedding)

    def _anchor(self, track: Track) -> np.ndarray | None:
        """The unit mean of the faces the track was decided on; None when there is no
        ``same_person`` to compare with, or no embeddings."""
        faces = [o.embedding for o in track.recent if o.embedding is not None]
        if self.config.same_person is None or not faces:
            return None
        return l2_normalise(np.mean(faces, axis=0))

    def _others(self, track: Track) -> list[Observation]:
        """The frames since the decision that name someone else than the decision did and whose
        face is further than ``same_person`` from the faces that decided the track (none
        before a decision, or without an anchor)."""
        limit, anchor, decided = self.config.same_person, track.anchor, track.decided
        if limit is None or anchor is None or decided is None:
            return []
        return [
            o
            for o in track.recent
            if o.vote != decided.name
            and o.embedding is not None
            and unit_distance(float(np.dot(o.embedding, anchor))) > limit
        ]

    def _successor(self, track: Track, others: list[Observation]) -> Track:
        """A new, undecided track in ``track``'s place, started from ``others``, the frames of
        the newcomer: with ``votes`` their votes, with ``mean`` their faces (enough, either
        way, to decide it on this frame when they agree)."""
        del self.tracks[track.id]
        new = self._new_track(track.box)
        new.frames = len(others)
        new.recent.extend(others)
        for obs in others:
            self._vote(new, obs)
        return new

    def _decide_mean(self, track: Track, judge: Judge) -> Decision | None:
        if len(track.embeddings) < self.config.votes_to_decide:
            return None
        mean = np.mean(track.embeddings, axis=0)
        name, distance = judge(mean / np.linalg.norm(mean))
        return Decision(track.id, name, len(track.embeddings), track.frames, distance, track.box)

    def _decide(self, track: Track) -> Decision | None:
        counts = collections.Counter(name for name, _ in track.votes)
        if not counts:
            return None
        name, votes = counts.most_common(1)[0]
        if votes < self.config.votes_to_decide:
            return None
        best = min((d for n, d in track.votes if n == name), default=float("nan"))
        return Decision(track.id, name, votes, track.frames, best, track.box)

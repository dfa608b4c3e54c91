"""Which faces of a frame need the whole pipeline, and which the detector alone can follow.

Once a track is decided, running landmarks, alignment and the encoder on it frame
after frame only says again what was said: a person standing at the door would
keep a Pi's CPU busy re-recognising them. Such a face is followed by the detector
and the tracker alone, and checked again with the whole pipeline

- every ``recheck_s`` seconds (0: every frame, as before this existed), and
- at once when the track is in doubt: its last check did not agree with its
  decision (another name, unknown, or a face refused by a gate), the face's width
  changed by more than ``MAX_GROWTH`` or its pose (yaw from the detector's eye and
  nose keypoints) by more than ``MAX_TURN`` since that check, its box jumped
  (overlap with the track's last box under ``MIN_STEADY``), or another face is near.

A check adds a vote as every frame did before; decisions are still made only on
votes of whole-pipeline frames, once per track, so events do not change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

import numpy as np

from facegate.detect import Detection
from facegate.track import Box, Observation, Track, iou

MAX_GROWTH = 0.25  # relative change of the face's width since its last check
MAX_TURN = 0.15  # change of the detector's yaw estimate, in eye distances
MIN_STEADY = 0.5  # overlap with the track's box on the frame before
NEAR = 0.5  # another face within this many face widths of the box is "near"


def detector_yaw(det: Detection) -> float:
    """Nose offset from the eyes' midline along the eye axis, in eye distances (BlazeFace
    keypoints: cheap, rough; only compared with itself over time)."""
    left, right, nose = det.keypoints[0], det.keypoints[1], det.keypoints[2]
    axis = right - left
    distance2 = float(np.dot(axis, axis))
    if distance2 == 0:
        return 0.0
    return float(np.dot(nose - (left + right) / 2, axis) / distance2)


@dataclasses.dataclass(frozen=True)
class Check:
    """The last whole-pipeline look at a decided track."""

    at: float  # monotonic seconds
    width: float
    yaw: float
    agreed: bool


class Follower:
    def __init__(self, recheck_s: float = 2.0) -> None:
        self.recheck_s = recheck_s
        self.checks: dict[int, Check] = {}
        self.followed = 0  # faces that cost only detection
        self.checked = 0  # faces of decided tracks that went through the whole pipeline

    def needs_pipeline(
        self, detections: Sequence[Detection], tracks: Sequence[Track | None], now: float
    ) -> list[bool]:
        """For each detection (with the track it continues, if any): whole pipeline or not."""
        out = []
        for i, (det, track) in enumerate(zip(detections, tracks)):
            full = track is None or track.decided is None or self._in_doubt(det, track, detections, i, now)
            if track is not None and track.decided is not None:
                if full:
                    self.checked += 1
                else:
                    self.followed += 1
            out.append(full)
        return out

    def _in_doubt(
        self, det: Detection, track: Track, detections: Sequence[Detection], i: int, now: float
    ) -> bool:
        check = self.checks.get(track.id)
        if check is None or not check.agreed or self.recheck_s == 0 or now - check.at >= self.recheck_s:
            return True
        if abs(det.width / check.width - 1) > MAX_GROWTH or abs(detector_yaw(det) - check.yaw) > MAX_TURN:
            return True
        if iou(det.box, track.box) < MIN_STEADY:
            return True
        return any(j != i and _near(det.box, other.box) for j, other in enumerate(detections))

    def record(
        self,
        detections: Sequence[Detection],
        observations: Sequence[Observation],
        ran: Sequence[bool],
        tracks: Sequence[Track],
        now: float,
        live: Collection[int],
    ) -> None:
        """After the tracker's update (``tracks``: its ``assigned``; ``live``: the ids of the
        tracks it still holds): remember each whole-pipeline look at a decided track, and
        forget tracks that ended."""
        for det, obs, full, track in zip(detections, observations, ran, tracks):
            if full and track.decided is not None:
                agreed = obs.usable and obs.vote == track.decided.name
                self.checks[track.id] = Check(now, det.width, detector_yaw(det), agreed)
        for track_id in [t for t in self.checks if t not in live]:
            del self.checks[track_id]


def _near(a: Box, b: Box) -> bool:
    margin = NEAR * (a[2] - a[0])
    grown = (a[0] - margin, a[1] - margin, a[2] + margin, a[3] + margin)
    return iou(grown, b) > 0

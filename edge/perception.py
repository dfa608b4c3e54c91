"""Frame in, aligned chips out: detect, landmark, gate, align.

Each stage is public (``FaceDetector``, ``ShapePredictor``, ``align_face``) so
a caller can stop half way; this module wires them with the settings from
the model cards and counts every face it refuses, by reason.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import time
from typing import Any

import numpy as np
from PIL import Image

from facegate.align import chip_transform, extract_chip, turned_crop
from facegate.detect import Detection, FaceDetector
from facegate.errors import InputError, ModelFileError
from facegate.landmarks import ShapePredictor, to_grey
from facegate.modelcard import MODELS_DIR, ModelCard, load_card

# Refusal reasons, counted in ``Perception.rejected``.
TOO_SMALL = "too_small"
TOO_BLURRED = "too_blurred"
NOT_FRONTAL = "not_frontal"

# Refinement pays for faces narrower than this in the detector's input (px): on CelebA
# the landmark failures it fixed were under 32 px; on lfw-dev, where faces are over
# 48 px, it changed nothing (BENCHMARKS.md, "Speed at the door").
REFINE_BELOW = 48.0
# dlib's cascade starts from an upright mean shape: past this roll (BlazeFace's eye line) its
# points are found on an upright crop instead (BENCHMARKS.md, "Heads tilted far")
UPRIGHT_ABOVE_DEG = 45.0


@dataclasses.dataclass(frozen=True)
class Gates:
    """Face quality gates. The defaults pass every lfw-dev face; the blur gate refuses
    chips about as soft as a Gaussian blur of radius 3, which moves an embedding
    by ~0.24 (docs/RESULTS.md, scripts/dev/blur_drift.py)."""

    min_eye_distance: float = 16.0  # px between the outer eye corners in the frame
    max_yaw: float = 0.45  # |nose offset from the eyes' midline| / eye distance
    min_sharpness: float = 3.0  # variance of the Laplacian of the grey chip (Gaussian blur radius ~3)


@dataclasses.dataclass(frozen=True)
class Face:
    detection: Detection
    landmarks: np.ndarray  # (5, 2) frame pixels, dlib order
    chip: np.ndarray  # (size, size, 3) uint8 RGB
    quality: dict[str, float]
    rejected: str | None = None  # None if the face passed every gate
    # small in the detector's input, and its refinement found no face there: its landmark
    # box is a guess (often a patch of a face taken for a face of another size)
    unplaced: bool = False


def _add(stages: dict[str, float] | None, **seconds: float) -> None:
    if stages is not None:
        for stage, spent in seconds.items():
            stages[stage] = stages.get(stage, 0.0) + spent


def to_rgb(frame: np.ndarray, layout: str = "RGBX") -> np.ndarray:
    """Any camera frame -> HxWx3 uint8 RGB.

    Grey (HxW or HxWx1) is replicated. Colour frames are read by their memory
    layout: "RGB" or "BGR" for 3 channels; "RGBX" (picamera2's XBGR8888, the
    default) or "BGRX" (XRGB8888) for 4. The layout's first three letters give
    the colour order and the frame's shape whether a fourth band follows, which
    is dropped: a 4-band frame called "RGB" is read as RGBX, never passed on.
    """
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise InputError(f"expected a uint8 frame, got {frame.dtype}")
    if frame.ndim == 2:
        return np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4):
        raise InputError(f"expected an HxW, HxWx3 or HxWx4 frame, got shape {frame.shape}")
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    if layout not in _LAYOUTS:
        raise InputError(f"unknown frame layout {layout!r}; use one of {', '.join(_LAYOUTS)}")
    order = layout[:3]
    if order == "RGB" and frame.shape[2] == 3:
        return frame
    if frame.flags.c_contiguous:
        # Pillow's unpackers reorder or drop channels ~7x faster than a strided numpy copy
        # (0.2 against 1.3 ms for a 640x480 XBGR8888 frame, picamera2's default).
        raw = order + "X" if frame.shape[2] == 4 else order
        h, w = frame.shape[:2]
        return np.asarray(Image.frombytes("RGB", (w, h), frame, "raw", raw))
    if order == "BGR":
        return np.ascontiguousarray(frame[:, :, 2::-1])
    return np.ascontiguousarray(frame[:, :, :3])


_LAYOUTS = ("RGB", "BGR", "RGBX", "BGRX")


def frame_image(frame: np.ndarray, layout: str = "RGBX") -> Image.Image:
    """A camera frame as the Pillow image the detector scales down: picamera2's default
    XBGR8888 (a contiguous 4-channel frame in RGB order, ``to_rgb``'s rule) is mapped
    without a copy; any other frame is converted as ``to_rgb`` does. A frame whose faces
    are all followed then costs no RGB copy at all."""
    frame = np.asarray(frame)
    mapped = layout[:3] == "RGB" and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 4
    if mapped and frame.flags.c_contiguous:
        h, w = frame.shape[:2]
        return Image.frombuffer("RGBX", (w, h), frame, "raw", "RGBX", 0, 1)
    return Image.fromarray(to_rgb(frame, layout))


def sharpness(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: low for blurred faces."""
    g = grey.astype(np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def yaw_ratio(landmarks: np.ndarray) -> float:
    """Signed nose offset from the eyes' midline, in eye distances (0 = frontal)."""
    right_outer, left_outer, nose = landmarks[0], landmarks[2], landmarks[4]
    axis = right_outer - left_outer
    distance = float(np.hypot(*axis))
    if distance == 0:
        return float("inf")
    mid = (right_outer + left_outer) / 2
    return float(np.dot(nose - mid, axis) / distance**2)


PHOTO_FACES = 16  # the most faces photo_faces places in one photo (one is enrolled, or checked)


# photo_faces reads a photo turned half round when the detector is this much surer of it. Of
# 746 celeba-dev photos upside down, the upright reading is surer by more than this in 97.9%
# (by more than 0: 99.7%); upright, none is turned at this margin, 2 at 0 (photo_paths.py)
TURN_MARGIN = 0.1


def _surest(faces: list[Face]) -> float:
    """The detector's score of the surest usable face, 0 without one."""
    return max((f.detection.score for f in faces if f.rejected is None), default=0.0)


class Perception:
    """Detector + landmarks + aligner, loaded once from ``models/``.

    ``refine``: a detection narrower than ``refine_below`` pixels in the detector's
    input is redone on a crop around it (``FaceDetector.refine``) before its landmarks,
    and its landmark box comes from the map fitted on refined detections. One more
    detector run per small face; it keeps the cascade off the wrong features when a
    face is small in the detector's input (BENCHMARKS.md, CelebA). Larger faces gained
    nothing from it and keep the whole-frame detection and its own box map.

    ``refine_size``: the detector's input side for the refinement. By default the one
    the landmark card's refined box map was fitted at (``input``, 80 px since issue 19:
    the crop is twice the face, and a face that fills 40 px of the input is found as
    well as at 128, in half the time), when the detector is the one it was fitted with;
    otherwise the detector's own side.

    ``finder``: the model ``photo_faces`` finds a still photo's faces with when the detector
    sees them too small to place (the full-range one; loaded on first use, and none where it
    is the detector itself or ``refine`` is off).
    """

    def __init__(
        self,
        detector: str | os.PathLike[str] = MODELS_DIR / "face_detection_short_range.tflite",
        landmarks: str | os.PathLike[str] = MODELS_DIR / "dlib_landmarks5.npz",
        chip_size: int = 150,
        padding: float = 0.25,
        gates: Gates | None = None,
        min_score: float = 0.5,
        min_size: float = 20.0,
        num_threads: int = 1,
        refine: bool = True,
        refine_below: float = REFINE_BELOW,
        refine_size: int | None = None,
        finder: str | os.PathLike[str] | None = MODELS_DIR / "face_detection_full_range.tflite",
    ) -> None:
        card = load_card(pathlib.Path(landmarks).with_suffix(".json"))
        maps = card.data["alignment"]
        # The box map is fitted on the detections it is applied to (refined or not); a card
        # from before refinement has only the whole-frame one, and one from before issue 19
        # no refinement input (it was the model's own).
        whole = maps["box_from_blazeface"]
        refined = maps.get("box_from_blazeface_refined", whole)
        fitted_with = refined.get("detector") == pathlib.Path(detector).name
        if refine_size is None and fitted_with and "input" in refined:
            refine_size = refined["input"]
            if not isinstance(refine_size, int) or isinstance(refine_size, bool):
                raise ModelFileError(
                    card.path, f"box_from_blazeface_refined.input is not an integer: {refine_size!r}"
                )
        self.detector = FaceDetector(
            detector,
            min_score=min_score,
            min_size=min_size,
            num_threads=num_threads,
            refine_size=refine_size,
        )
        self.predictor = ShapePredictor(landmarks)
        self._box_maps = {
            refine_: (float(m["kx"]), float(m["ky"]), float(m["k"]))
            for refine_, m in ((False, whole), (True, refined))
        }
        self.chip_size, self.padding = chip_size, padding
        self.gates = gates or Gates()
        self.refine = refine
        self.refine_below = refine_below
        self.rejected: collections.Counter[str] = collections.Counter()
        # photo_faces: the full-range model finds what the detector sees too small to place;
        # none where it is the detector, or where nothing is refined
        same = finder is not None and pathlib.Path(finder).name == pathlib.Path(detector).name
        self._finder_path = None if finder is None or same or not refine else pathlib.Path(finder)
        self._finder: FaceDetector | None = None
        self._finder_args = (min_score, min_size, num_threads)

    @classmethod
    def for_encoder(
        cls,
        card: ModelCard,
        detector: str = "short",
        threads: int = 1,
        refine: bool = True,
        refine_below: float = REFINE_BELOW,
        gates: Gates | None = None,
        min_score: float = 0.5,
        min_size: float = 20.0,
    ) -> Perception:
        """The pipeline that cuts the chips ``card``'s encoder wants (its size and padding): the
        one constructor the daemon, the commands, doctor and the evaluations use."""
        return cls(
            detector=MODELS_DIR / f"face_detection_{detector}_range.tflite",
            chip_size=card.chip_size,
            padding=card.chip_padding,
            gates=gates,
            min_score=min_score,
            min_size=min_size,
            num_threads=threads,
            refine=refine,
            refine_below=refine_below,
        )

    @classmethod
    def from_config(cls, config: Any, card: ModelCard) -> Perception:
        """The daemon's pipeline: ``models`` and ``gates`` sections of a ``facegate.config``."""
        g, m = config.gates, config.models
        return cls.for_encoder(
            card,
            detector=m.detector,
            threads=m.threads,
            refine=m.refine,
            refine_below=m.refine_below,
            gates=Gates(g.min_eye_distance, g.max_yaw, g.min_sharpness),
            min_score=g.min_score,
            min_size=g.min_face,
        )

    def landmark_box(self, det: Detection, refined: bool | None = None) -> tuple[float, float, float, float]:
        """The box dlib's landmark cascade expects, from a BlazeFace detection (``refined``:
        whether it came from ``FaceDetector.refine``; by default, as ``faces`` would do it)."""
        kx, ky, k = self._box_maps[self.refine if refined is None else refined]
        mid = (det.keypoints[0] + det.keypoints[1]) / 4 + det.keypoints[3] / 2
        cx, cy = mid[0] + kx * det.width, mid[1] + ky * det.width
        half = k * det.width / 2
        return (cx - half, cy - half, cx + half, cy + half)

    def faces(
        self, frame: np.ndarray, layout: str = "RGBX", stages: dict[str, float] | None = None
    ) -> list[Face]:
        """All faces in the frame, gated; rejected ones carry their reason. ``stages``, when
        given, gets each stage's seconds added to it: detect, refine, landmarks, align (warp + gates)."""
        found = self.detect_frame(frame, layout, stages)
        if not found:
            return []
        rgb = to_rgb(frame, layout)  # the copy that landmarks and chips read, made once
        return [self.face(rgb, det, stages) for det in found]

    def photo_faces(self, rgb: np.ndarray) -> list[Face]:
        """The faces of a still photo (enrollment; verify and identify from a file), read the
        right way up: a photo upside down (its EXIF turn lost to a messaging app) had its faces
        found all the same, and their chips, upside down, passed the gates and enrolled an
        embedding of no one. Its faces are read from the photo turned half round too, and that
        way wins where the detector is surer of its best usable face by ``TURN_MARGIN``
        (scripts/dev/upside_down.py). Not for a photo without a usable face as it stands (a
        face too small to be found upright was found turned, upside down, and enrolled
        wrongly), nor a face on its side (its eyes' line past ``UPRIGHT_ABOVE_DEG``), which
        ``landmarks`` turns upright either way. Turned, a face's points and box are those of
        the turned photo. See ``_photo_faces`` for the rest."""
        faces = self._photo_faces(rgb)
        usable = [f for f in faces if f.rejected is None]
        if not usable:  # turned, a face too small to find upright was found upside down, wrongly
            return faces
        eyes = max(usable, key=lambda f: f.detection.score).detection.keypoints
        roll = np.degrees(np.arctan2(*(eyes[1] - eyes[0])[::-1]))
        if abs(roll) > UPRIGHT_ABOVE_DEG:  # on its side: turned upright by ``landmarks``
            return faces
        turned = self._photo_faces(np.ascontiguousarray(rgb[::-1, ::-1]))
        return turned if _surest(turned) > _surest(faces) + TURN_MARGIN else faces

    def _photo_faces(self, rgb: np.ndarray) -> list[Face]:
        """The faces of a still photo, as it is. A phone
        photo is large and its face can be small in it: letterboxed into the short-range
        model's 128 px, a face 200 px wide in a 12 MP photo is 6 px there, and the model
        missed it, or took a patch of it for a face of the wrong size, whose chip passed the
        gates and enrolled an embedding of no one. When the detector finds a usable face
        that it sees large enough, or finds again on the crop of its refinement, the faces
        are those of a camera frame. Otherwise the full-range model (``finder``) finds the
        faces, and each is placed by the detector's own refinement on a crop around it, as a
        small face at the camera is; one the refinement does not find is left out. Without a
        finder, or when it finds nothing: ``faces``."""
        faces = self.faces(rgb, "RGB")
        if self._finder_path is None or any(f.rejected is None and not f.unplaced for f in faces):
            return faces
        if self._finder is None:
            min_score, min_size, threads = self._finder_args
            self._finder = FaceDetector(self._finder_path, min_score, min_size, num_threads=threads)
        placed = []
        for det in self._finder.detect(rgb)[:PHOTO_FACES]:  # best first: a crowd costs a bounded time
            refined = self.detector.refine(rgb, det)
            if refined is not det:
                placed.append(self.face(rgb, refined, placed=True))
        return placed or faces

    def _small(self, det: Detection, side: int) -> bool:
        """Whether ``det`` is small enough in the detector's input to be refined."""
        return self.refine and det.width * self.detector.size / side < self.refine_below

    def detect(self, rgb: np.ndarray, stages: dict[str, float] | None = None) -> list[Detection]:
        """The detection stage alone, the cheap part: faces in an HxWx3 RGB frame, from the
        whole frame. ``face`` takes each on (refinement, landmarks, chip, gates)."""
        return self.detect_frame(rgb, "RGB", stages)

    def detect_frame(
        self, frame: np.ndarray, layout: str = "RGBX", stages: dict[str, float] | None = None
    ) -> list[Detection]:
        """Faces in a camera frame as it comes (any layout ``to_rgb`` reads), without the RGB
        copy that only ``face`` needs (``frame_image``)."""
        frame = np.asarray(frame)
        if frame.ndim >= 2 and min(frame.shape[:2]) < 2:
            return []
        t0 = time.perf_counter()
        found = self.detector.detect_image(frame_image(frame, layout))
        _add(stages, detect=time.perf_counter() - t0)
        return found

    def face(
        self, rgb: np.ndarray, det: Detection, stages: dict[str, float] | None = None, placed: bool = False
    ) -> Face:
        """One detection on to a gated face: refined when it is small in the detector's input
        (``placed``: it came from ``FaceDetector.refine`` already), then landmarks, the
        aligned chip and its quality."""
        clock = time.perf_counter
        t0 = clock()
        refined = placed or self._small(det, max(rgb.shape[:2]))
        unplaced = False
        if refined and not placed:
            found = self.detector.refine(rgb, det)
            det, unplaced = found, found is det
        t1 = clock()
        points = self.landmarks(rgb, det, refined)
        t2 = clock()
        chip = extract_chip(rgb, chip_transform(points, self.chip_size, self.padding), self.chip_size)
        quality = {
            "eye_distance": float(np.hypot(*(points[0] - points[2]))),
            "yaw": yaw_ratio(points),
            "sharpness": sharpness(to_grey(chip)),
            "score": det.score,
        }
        reason = self._gate(quality)
        if reason:
            self.rejected[reason] += 1
        _add(stages, refine=t1 - t0, landmarks=t2 - t1, align=clock() - t2)
        return Face(det, points, chip, quality, reason, unplaced)

    def landmarks(self, rgb: np.ndarray, det: Detection, refined: bool) -> np.ndarray:
        """dlib's 5 points for a detection. A head tilted more than ``UPRIGHT_ABOVE_DEG``
        (a camera on its side, a head on a shoulder) is first turned upright in a crop three
        faces wide, and its points are turned back: from an upright start the cascade settles
        on the wrong features of a face on its side."""
        eyes = det.keypoints[1] - det.keypoints[0]
        roll = float(np.arctan2(eyes[1], eyes[0]))
        if abs(roll) <= np.radians(UPRIGHT_ABOVE_DEG):
            return self.predictor.predict(rgb, self.landmark_box(det, refined))
        w, h = det.width, det.height
        centre = np.array([det.box[0] + w / 2, det.box[1] + h / 2])
        side = int(np.ceil(3 * max(w, h))) | 1
        crop = turned_crop(rgb, centre, roll, side)
        c, s = np.cos(roll), np.sin(roll)
        turn = np.array([[c, -s], [s, c]])  # crop offsets -> frame offsets
        half = (side - 1) / 2.0
        box = (half - w / 2, half - h / 2, half + w / 2, half + h / 2)
        upright = Detection(box, det.score, (det.keypoints - centre) @ turn + half)
        points = self.predictor.predict(crop, self.landmark_box(upright, refined))
        return np.asarray((points - half) @ turn.T + centre, np.float64)

    def _gate(self, quality: dict[str, float]) -> str | None:
        if quality["eye_distance"] < self.gates.min_eye_distance:
            return TOO_SMALL
        if abs(quality["yaw"]) > self.gates.max_yaw:
            return NOT_FRONTAL
        if quality["sharpness"] < self.gates.min_sharpness:
            return TOO_BLURRED
        return None

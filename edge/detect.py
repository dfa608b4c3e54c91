"""MediaPipe BlazeFace face detection on a TFLite interpreter.

Short range (128x128 input: a doorway, faces from about 1/8 of the frame's
longer side) and full range (192x192, a room: from about 1/18; ``FINDS_FROM``).
The frame is letterboxed into the square input (aspect ratio kept, padded), the
SSD anchors are decoded, overlapping detections are merged by weighted non-max
suppression, and boxes come back in frame pixels.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import threading
from typing import Any

import numpy as np
from PIL import Image

from facegate.errors import InputError
from facegate.interpreter import load_interpreter

# Pillow's reducing_gap for the letterbox: box-average by an integer factor first, then
# filter the rest of the way. 1.5 and 1.2 are 0.3-0.4 ms faster from 640x480 but found
# fewer faces 52-64 px wide (scripts/dev/letterbox_gap.py; BENCHMARKS.md, "Refinement at
# an 80 px input").
REDUCING_GAP = 2.0

# At the camera, each model finds a face from about 1/N of the frame's longer side, whatever
# the frame's size (scripts/dev/frame_reach.py: 1/8-1/9 and 1/18-1/20 from 640x480 to 2592x1944).
FINDS_FROM = {"face_detection_short_range.tflite": 8, "face_detection_full_range.tflite": 18}


def reach_warning(width: int, height: int, detector: str) -> str | None:
    """What to say of ``width`` x ``height`` frames read by ``detector`` (a model's file name):
    nothing unless the short-range model letterboxes a large frame, where it hides every face
    narrower than about 1/8 of it (240 px of an IP camera's 1920x1080 main stream: a person a
    metre from a wide lens)."""
    side = max(width, height)
    if side < 1200 or detector != "face_detection_short_range.tflite":
        return None
    full = FINDS_FROM["face_detection_full_range.tflite"]
    return (
        f"frames of {width}x{height}: the short-range detector finds a face from about "
        f"1/{FINDS_FROM[detector]} of their longer side ({side // FINDS_FROM[detector]} px here), so "
        f"a person farther off is not seen. models.detector: full finds one from about 1/{full} "
        f"({side // full} px); a 640x480 stream (camera.width and height, or an IP camera's second "
        "stream) costs less to read"
    )


# Anchor layouts, from MediaPipe's face_detection_{short,full}_range_common.pbtxt.
_ANCHORS = {
    128: {"strides": [8, 16, 16, 16], "two_per_layer": True},
    192: {"strides": [4], "two_per_layer": False},
}


@dataclasses.dataclass(frozen=True)
class Detection:
    """A face in frame pixels: box (left, top, right, bottom), score, 6 keypoints.

    Keypoints (x, y): 0 eye on the image's left, 1 eye on the image's right,
    2 nose tip, 3 mouth centre, 4 and 5 ear tragions.
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray  # (6, 2)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def ssd_anchors(size: int, model: int | None = None) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1] for a square BlazeFace input of ``size``, with the
    layout of the model made for input ``model`` (by default, ``size``)."""
    layout = _ANCHORS[model or size]
    strides: list[int] = layout["strides"]  # type: ignore[assignment]
    centres = []
    layer = 0
    while layer < len(strides):
        repeats = 0
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            repeats += 2 if layout["two_per_layer"] else 1
            last += 1
        cells = size // strides[layer]
        grid = (np.arange(cells) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), repeats, axis=0))
        layer = last
    return np.concatenate(centres).astype(np.float32)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (4,) box with (N, 4) boxes (l, t, r, b)."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-12))


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, threshold: float
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's weighted NMS: each cluster of overlapping detections becomes
    their score-weighted mean, with the best score of the cluster."""
    order = np.argsort(-scores)
    remaining = order
    merged = []
    while len(remaining):
        best = remaining[0]
        overlap = iou(boxes[best], boxes[remaining]) > threshold
        cluster = remaining[overlap]
        weights = scores[cluster][:, None]
        total = float(weights.sum())
        merged.append(
            (
                (boxes[cluster] * weights).sum(0) / total,
                float(scores[best]),
                (keypoints[cluster] * weights[:, :, None]).sum(0) / total,
            )
        )
        remaining = remaining[~overlap]
    return merged


class _Net:
    """One BlazeFace interpreter at one square input size, with its anchors."""

    def __init__(self, path: pathlib.Path, num_threads: int, runtime: str | None, size: int | None) -> None:
        self.interpreter: Any = load_interpreter(path, num_threads, runtime)
        detail = self.interpreter.get_input_details()[0]
        native = int(detail["shape"][1])
        if native not in _ANCHORS or int(detail["shape"][2]) != native:
            raise InputError(f"{path}: not a BlazeFace model (input {detail['shape']})")
        self.input = detail["index"]
        self.size = native if size is None else size
        if self.size != native:
            # The network is convolutional: a smaller square input gives the same kind of
            # outputs (offsets in input pixels) on a coarser anchor grid.
            if self.size % 16 or self.size < 32:
                raise InputError(f"a BlazeFace input side must be a multiple of 16, at least 32: {self.size}")
            self.interpreter.resize_tensor_input(self.input, [1, self.size, self.size, 3])
            self.interpreter.allocate_tensors()
        outputs = sorted(self.interpreter.get_output_details(), key=lambda d: int(d["shape"][-1]))
        # Looked up by shape, not name: the two models name their outputs differently.
        self.scores, self.regressors = outputs[0]["index"], outputs[1]["index"]
        self.anchors = ssd_anchors(self.size, native)
        self._lock = threading.Lock()

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw regressors (N, 16), logits (N,)) for one (size, size, 3) float input. One
        call at a time: the daemon's lookahead thread detects while the loop may refine or
        enroll on the same interpreter (``facegate.lookahead``)."""
        with self._lock:
            self.interpreter.set_tensor(self.input, tensor[None])
            self.interpreter.invoke()
            raw = self.interpreter.get_tensor(self.regressors)[0]  # get_tensor copies
            return raw, self.interpreter.get_tensor(self.scores)[0, :, 0]


class FaceDetector:
    """Loads a BlazeFace model once; ``detect(frame)`` returns faces in frame pixels.

    ``refine_size``: the input side that ``refine`` runs the model at (its crop is
    twice the face, so the face fills half of it); None keeps the model's own."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        min_score: float = 0.5,
        min_size: float = 0.0,
        nms_threshold: float = 0.3,
        num_threads: int = 1,
        runtime: str | None = None,
        refine_size: int | None = None,
    ) -> None:
        self.model_path = pathlib.Path(model_path)
        self._net = _Net(self.model_path, num_threads, runtime, None)
        self.size = self._net.size
        self._refine_net = (
            self._net
            if refine_size is None or refine_size == self.size
            else _Net(self.model_path, num_threads, runtime, refine_size)
        )
        self.refine_size = self._refine_net.size
        self.min_score = min_score
        self.min_size = min_size
        self.nms_threshold = nms_threshold

    def _letterbox(self, image: Image.Image, size: int) -> tuple[np.ndarray, float, float, float]:
        """Scale the frame to fit the square input of side ``size``, pad the rest; returns
        (input, scale, pad_x, pad_y) with frame = (input_px - pad) / scale."""
        w, h = image.size
        scale = size / max(h, w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        # reducing_gap: Pillow first box-averages by an integer factor, then filters the
        # last step (half the time of a full antialiased bilinear resize from 640x480).
        small = image.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP)
        resized = np.asarray(small)[:, :, :3]  # an RGBX image's fourth band is not a colour
        canvas = np.zeros((size, size, 3), np.float32)
        pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
        canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized * np.float32(1 / 127.5) - np.float32(1)
        return canvas, scale, pad_x, pad_y

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Faces in an HxWx3 uint8 RGB frame, best first."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise InputError(f"expected an HxWx3 uint8 RGB frame, got {frame.shape} {frame.dtype}")
        return self.detect_image(Image.fromarray(frame))

    def detect_image(self, image: Image.Image) -> list[Detection]:
        """The same for a Pillow image in mode RGB or RGBX: a camera's XBGR8888 buffer mapped
        without a copy (``facegate.perception.frame_image``) is detected as its RGB copy is."""
        if image.mode not in ("RGB", "RGBX"):
            raise InputError(f"expected an RGB or RGBX image, got mode {image.mode}")
        if min(image.size) < 2:
            return []
        return self._detect(image, self._net)

    def _detect(self, image: Image.Image, net: _Net) -> list[Detection]:
        size = net.size
        tensor, scale, pad_x, pad_y = self._letterbox(image, size)
        raw, logits = net.run(tensor)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        raw, scores, anchors = raw[keep], scores[keep], net.anchors[keep]
        # Offsets are in input pixels; anchors in [0, 1] (fixed anchor size 1).
        centre = raw[:, :2] / size + anchors
        half = raw[:, 2:4] / size / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1) * size
        keypoints = (raw[:, 4:16].reshape(-1, 6, 2) / size + anchors[:, None]) * size
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        found = []
        offset = np.array([pad_x, pad_y], np.float32)
        for box, score, points in weighted_nms(
            boxes[valid], scores[valid], keypoints[valid], self.nms_threshold
        ):
            lt = (box[:2] - offset) / scale
            rb = (box[2:] - offset) / scale
            detection = Detection(
                (float(lt[0]), float(lt[1]), float(rb[0]), float(rb[1])),
                score,
                ((points - offset) / scale).astype(np.float64),
            )
            if min(detection.width, detection.height) >= self.min_size:
                found.append(detection)
        return found

    def refine(self, frame: np.ndarray, det: Detection) -> Detection:
        """The detection again, from BlazeFace on a square crop twice its size around it.

        Letterboxed whole into the model's input, a face far from the camera is a dozen
        pixels wide, and BlazeFace's keypoints drift; the landmark box drifts with them
        and the cascade can settle on the wrong features. On the crop the face is half
        the input. Box and keypoints come from the crop, the score stays the frame's.
        No face found on the crop: the detection unchanged.
        """
        side = max(2, round(2.0 * max(det.width, det.height)))
        x0 = round((det.box[0] + det.box[2]) / 2 - side / 2)
        y0 = round((det.box[1] + det.box[3]) / 2 - side / 2)
        h, w = frame.shape[:2]
        sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
        if sx1 <= sx0 or sy1 <= sy0:
            return det
        crop = np.zeros((side, side, 3), np.uint8)  # outside the frame: black, as the letterbox
        crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = frame[sy0:sy1, sx0:sx1]
        found = self._detect(Image.fromarray(crop), self._refine_net)
        if not found:
            return det
        best = min(found, key=lambda d: abs(d.box[0] + d.box[2] - side) + abs(d.box[1] + d.box[3] - side))
        left, top, right, bottom = best.box
        return Detection(
            (left + x0, top + y0, right + x0, bottom + y0),
            det.score,
            best.keypoints + np.array([x0, y0], np.float64),
        )

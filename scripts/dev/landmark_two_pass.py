"""A second pass of the 5-point cascade, started from a box fitted to the first pass's
landmarks, on celeba-dev (BENCHMARKS.md: tried, not shipped).

The box map (centre = eye midpoint + (a * along-eyes + b * across) * eye distance,
side = k * eye distance) is fitted on the shared reference set's dlib boxes and
landmarks; then celeba-dev is scored with 1 pass (as shipped) and with 2.

    .venv/bin/python scripts/dev/landmark_two_pass.py ../shared/datasets/celeba-dev
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from facegate.convert.evaluate import DetectAlign
from facegate.convert.identify import evaluate_identify
from facegate.convert.reference import load_reference
from facegate.encoder import Encoder
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception


def _frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(eye midpoint, eye distance, unit along the eyes, unit across) for (N, 5, 2) points."""
    eye_a, eye_b = (points[:, 0] + points[:, 1]) / 2, (points[:, 2] + points[:, 3]) / 2
    along = eye_b - eye_a
    distance = np.linalg.norm(along, axis=1)
    ux = along / distance[:, None]
    return (eye_a + eye_b) / 2, distance, ux, np.stack([-ux[:, 1], ux[:, 0]], 1)


def fit_box_map() -> tuple[float, float, float]:
    ref = load_reference(None)
    mid, distance, ux, uy = _frame(ref.landmarks)
    centre = (ref.boxes[:, :2] + ref.boxes[:, 2:]) / 2
    offset = centre - mid
    a = float(np.median((offset * ux).sum(1) / distance))
    b = float(np.median((offset * uy).sum(1) / distance))
    k = float(np.median((ref.boxes[:, 2] - ref.boxes[:, 0]) / distance))
    return a, b, k


def with_passes(first: Callable[..., np.ndarray], passes: int, box_map: tuple[float, float, float]) -> Any:
    """``first`` (a cascade's predict), run again ``passes - 1`` times from fitted boxes."""
    a, b, k = box_map

    def predict(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        points = first(image, box)
        for _ in range(passes - 1):
            mid, distance, ux, uy = (v[0] for v in _frame(points[None]))
            centre, half = mid + (a * ux + b * uy) * distance, k * distance / 2
            points = first(image, (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half))
        return points

    return predict


def main(root: pathlib.Path) -> None:
    box_map = fit_box_map()
    print("box map fitted on the reference set: a={:.4f} b={:.4f} k={:.4f}".format(*box_map))
    encoder = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite", num_threads=2)
    for passes in (1, 2):
        perception = Perception(num_threads=2)
        perception.predictor.predict = with_passes(perception.predictor.predict, passes, box_map)  # type: ignore[method-assign]
        r = evaluate_identify(encoder, root, DetectAlign(perception, pick="largest"))
        print(
            f"{passes} pass(es): rank-1 {r['rank1']:.4f}, DIR at FPIR 1e-2 {r['dir_at_fpir']['0.01']:.4f}, "
            f"at the card's threshold {r['operating_point']}"
        )


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))

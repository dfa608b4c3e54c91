"""DEV: the perception figures quoted in docs/RESULTS.md, reproducible.

- landmarks from dlib's own HOG boxes vs dlib's landmarks (400 reference faces);
- landmarks from BlazeFace boxes (mapped) vs dlib's landmarks, mean px error;
- quality-gate statistics on 600 random lfw-dev images (random.seed(0)).

    python scripts/dev/perception_stats.py
"""

from __future__ import annotations

import random

import numpy as np

from facegate.convert.reference import load_reference, shared_root
from facegate.images import load_rgb
from facegate.perception import Perception


def main() -> None:
    lfw = shared_root() / "datasets" / "lfw-dev"
    ref = load_reference()
    p = Perception()
    exact, worst, mapped = 0, 0.0, []
    for path, box, marks in zip(ref.paths, ref.boxes, ref.landmarks):
        rgb = load_rgb(lfw / path)
        err = np.abs(np.rint(p.predictor.predict(rgb, tuple(box))) - marks).max()
        exact += err == 0
        worst = max(worst, float(err))
        dets = p.detector.detect(rgb)
        centre = (box[:2] + box[2:]) / 2
        det = min(dets, key=lambda d: float(np.hypot(*(np.add(d.box[:2], d.box[2:]) / 2 - centre))))
        points = p.predictor.predict(rgb, p.landmark_box(det))
        mapped.append(float(np.linalg.norm(points - marks, axis=1).mean()))
    print(f"landmarks from dlib's box: identical on {exact} of {len(ref.paths)}, worst {worst:.0f} px")
    print(f"landmarks from BlazeFace boxes: mean error {np.mean(mapped):.2f} px against dlib's")

    random.seed(0)
    paths = random.sample(sorted(str(f) for f in lfw.glob("*/*.jpg")), 600)
    stats = []
    for path in paths:
        faces = p.faces(load_rgb(path))
        if faces:
            face = min(
                faces,
                key=lambda f: (
                    abs(sum(f.detection.box[::2]) / 2 - 125) + abs(sum(f.detection.box[1::2]) / 2 - 125)
                ),
            )
            stats.append([face.quality["eye_distance"], abs(face.quality["yaw"]), face.quality["sharpness"]])
    q = np.array(stats)
    print(
        f"gates on {len(q)} lfw-dev faces: eye distance p0.5 {np.percentile(q[:, 0], 0.5):.1f} px, "
        f"|yaw| p99.5 {np.percentile(q[:, 1], 99.5):.2f}, sharpness p0.5 {np.percentile(q[:, 2], 0.5):.1f}"
    )


if __name__ == "__main__":
    main()

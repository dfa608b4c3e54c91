"""``facegate demo``: the main job on bundled photos, with no camera or set-up.

One photo enrolls a person (one-shot); the other photos are probes: each is
detected, aligned, embedded with the shipped int8 encoder, and compared with
the enrolled embedding at the model card's calibrated threshold (FAR 1e-3).
"""

from __future__ import annotations

import pathlib

import numpy as np

from edge.encoder import Encoder
from edge.errors import FacegateError
from edge.images import load_rgb
from edge.perception import Perception

PHOTOS = pathlib.Path(__file__).resolve().parent / "demo_photos"
ENROLL = {"obama": "obama.jpg"}
PROBES = [
    ("obama2.jpg", "obama"),
    ("obama3.jpg", "obama"),
    ("obama_partial_face.jpg", "obama"),
    ("biden.jpg", "a stranger"),
]


def operating_threshold(encoder: Encoder, far_key: str = "far_0.001") -> tuple[float, str]:
    entry = encoder.card.thresholds.get(far_key)
    if entry is None:
        raise FacegateError(f"{encoder.card.path}: no calibrated threshold {far_key}; run facegate calibrate")
    return float(entry["threshold"]), f"target FAR {entry['target_far']:g} on {entry['measured_on']}"


def largest_chip(perception: Perception, path: pathlib.Path) -> np.ndarray:
    faces = [f for f in perception.faces(load_rgb(path)) if f.rejected is None]
    if not faces:
        raise FacegateError(f"{path}: no usable face")
    return max(faces, key=lambda f: f.detection.width).chip


def run_demo(model: pathlib.Path) -> int:
    perception = Perception()
    encoder = Encoder(model)
    threshold, how = operating_threshold(encoder)
    print(f"model {encoder.card.name} ({encoder.card.sha256[:12]}), threshold {threshold:.4f} ({how})")
    gallery = {
        name: encoder.embed(largest_chip(perception, PHOTOS / photo))[0] for name, photo in ENROLL.items()
    }
    print(f"enrolled from one photo each: {', '.join(f'{n} <- {p}' for n, p in ENROLL.items())}")
    print(f"{'probe':<26}{'truth':<13}{'claim':<8}{'distance':>9}  decision")
    wrong = 0
    for photo, truth in PROBES:
        embedding = encoder.embed(largest_chip(perception, PHOTOS / photo))[0]
        for claim, enrolled in gallery.items():
            distance = float(np.linalg.norm(embedding - enrolled))
            accepted = distance < threshold
            wrong += accepted != (truth == claim)
            print(f"{photo:<26}{truth:<13}{claim:<8}{distance:>9.4f}  {'ACCEPT' if accepted else 'reject'}")
    print(f"{len(PROBES) - wrong} of {len(PROBES)} decisions right")
    return 0 if wrong == 0 else 1

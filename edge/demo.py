"""``facegate demo``: the main job on bundled photos, with no camera or set-up.

One photo enrolls a person (one-shot) into a throw-away gallery; the other
photos are probes: each is detected, aligned, embedded with the shipped int8
encoder, then verified against the claim "obama" and identified (1:N, open
set) at the model card's calibrated operating point (FAR 1e-3).
"""

from __future__ import annotations

import pathlib
import tempfile

from edge.decide import OperatingPoint, identify, verify
from edge.encoder import Encoder
from edge.enroll import Enroller, fingerprint
from edge.gallery import Gallery
from edge.perception import Perception

PHOTOS = pathlib.Path(__file__).resolve().parent / "demo_photos"
ENROLL = {"obama": "obama.jpg"}
PROBES = [
    ("obama2.jpg", "obama"),
    ("obama3.jpg", "obama"),
    ("obama_partial_face.jpg", "obama"),
    ("biden.jpg", None),
]


def run_demo(model: pathlib.Path) -> int:
    encoder = Encoder(model)
    enroller = Enroller(Perception(), encoder)
    op = OperatingPoint.from_card(encoder.card, 1e-3)
    entry = encoder.card.thresholds["far_0.001"]
    print(
        f"model {encoder.card.name} ({encoder.card.sha256[:12]}), threshold {op.threshold:.4f} "
        f"(target FAR {op.target_far:g}, calibrated on {entry['measured_on']})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        wrong = _enroll_and_probe(pathlib.Path(tmp) / "gallery.db", enroller, op)
    total = 2 * len(PROBES)
    print(f"{total - wrong} of {total} decisions right")
    return 0 if wrong == 0 else 1


def _enroll_and_probe(path: pathlib.Path, enroller: Enroller, op: OperatingPoint) -> int:
    """Enroll, then verify and identify each probe; returns the wrong decisions."""
    with Gallery.open(path, fingerprint(enroller.encoder)) as gallery:
        for name, photo in ENROLL.items():
            enroller.enroll(gallery, name, [PHOTOS / photo])
        print(f"enrolled from one photo each: {', '.join(f'{n} <- {p}' for n, p in ENROLL.items())}")
        templates = gallery.templates()
    print(f"{'probe':<26}{'truth':<10}{'verify obama':>20}  {'identify':<10}")
    wrong = 0
    for photo, truth in PROBES:
        embedding = enroller.sample(PHOTOS / photo).vector
        claim = verify(templates, embedding, "obama", op)
        found = identify(templates, embedding, op)
        wrong += claim.accepted != (truth == "obama")
        wrong += found.name != truth
        decision = f"{'ACCEPT' if claim.accepted else 'reject'} d={claim.distance:.3f}"
        print(f"{photo:<26}{truth or 'stranger':<10}{decision:>20}  {found.name or 'unknown':<10}")
    return wrong

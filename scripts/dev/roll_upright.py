"""Heads tilted far: landmarks found on an upright crop past ``UPRIGHT_ABOVE_DEG`` of roll.

dlib's cascade starts from an upright mean shape. For each setting of
``facegate.perception.UPRIGHT_ABOVE_DEG`` (180: never turned, the code before), the shipped
int8 pipeline (one thread) scores:
  - celeba-dev one-shot rank-1 and lfw-dev 10-fold, as they are (``evaluate`` commands'
    protocol: ``convert/identify.py``, ``convert/evaluate.py``);
  - celeba-dev rank-1 with every probe photo turned by 30, 45, 60, 90 and 180 degrees (Pillow,
    bilinear, canvas grown to hold it: black corners), the enrolled photos upright. Probes
    whose face is not found count as misses. Also the share of probes given a wrong name at
    the shipped threshold (nearest template another person's, and within the threshold).

    .venv/bin/python scripts/dev/roll_upright.py 180 45 30 > docs/results/roll-upright.txt
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

import numpy as np
from PIL import Image

from facegate import perception as perception_module
from facegate.convert.evaluate import DetectAlign, embed_images, parse_pairs, pick_face
from facegate.convert.identify import identification_metrics, identity_folders
from facegate.convert.metrics import ten_fold
from facegate.decide import OperatingPoint
from facegate.encoder import Encoder
from facegate.images import load_rgb
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception

CELEBA = pathlib.Path("../shared/datasets/celeba-dev")
LFW = pathlib.Path("../shared/datasets/lfw-dev")
ANGLES = (0, 30, 45, 60, 90, 180)


def turned_probes(
    encoder: Encoder, perception: Perception, folders: dict[str, list[str]], threshold: float
) -> dict[str, dict[str, float]]:
    """Rank-1 and wrong names at ``threshold`` by probe angle: each identity's first photo
    enrolled upright."""
    images = {p: load_rgb(CELEBA / p) for v in folders.values() for p in v}

    def embed(rgb: np.ndarray) -> np.ndarray | None:
        faces = perception.faces(rgb, "RGB")
        if not faces:
            return None
        face = faces[pick_face(faces, rgb.shape, "largest")]
        return None if face.rejected else encoder.embed(face.chip[None])[0]

    enrolled = {n: e for n, v in folders.items() if (e := embed(images[v[0]])) is not None}
    names = list(enrolled)
    gallery = np.stack([enrolled[n] for n in names])
    out = {}
    for angle in ANGLES:
        hits, wrong = [], []
        for n, v in folders.items():
            for p in v[1:]:
                turned = Image.fromarray(images[p]).rotate(angle, Image.Resampling.BILINEAR, expand=True)
                e = embed(np.asarray(turned))
                if e is None:
                    hits.append(False)
                    wrong.append(False)
                    continue
                d = np.linalg.norm(gallery - e, axis=1)
                best = int(np.argmin(d))
                hits.append(names[best] == n)
                wrong.append(names[best] != n and d[best] < threshold)
        out[f"{angle}"] = {
            "rank1": round(float(np.mean(hits)), 4),
            "wrong_name": round(float(np.mean(wrong)), 4),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", type=float, nargs="+", help="UPRIGHT_ABOVE_DEG values (180: never)")
    args = parser.parse_args()
    encoder = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite", num_threads=1)
    op = OperatingPoint.from_card(encoder.card, 1e-3)
    folders = identity_folders(CELEBA)
    pairs = parse_pairs(LFW / "pairs-dev.txt")
    crop = perception_module.turned_crop
    turned = [0]

    def counted(*args: Any) -> np.ndarray:  # how many faces were turned upright
        turned[0] += 1
        return crop(*args)

    perception_module.turned_crop = counted  # type: ignore[assignment]
    for setting in args.settings:
        perception_module.UPRIGHT_ABOVE_DEG = setting
        perception = Perception(num_threads=1)
        turned[0] = 0
        celeba, failed = embed_images(
            encoder, CELEBA, [p for v in folders.values() for p in v], DetectAlign(perception, "largest")
        )
        turned_celeba, turned[0] = turned[0], 0
        lfw, lfw_failed = embed_images(
            encoder, LFW, sorted({x for p in pairs for x in (p.a, p.b)}), DetectAlign(perception, "central")
        )
        turned_lfw = turned[0]
        d = np.array(
            [np.linalg.norm(lfw[p.a] - lfw[p.b]) if p.a in lfw and p.b in lfw else np.inf for p in pairs]
        )
        accuracy = ten_fold(d, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]))[
            "accuracy"
        ]
        row = {
            "upright_above_deg": setting,
            "celeba_rank1": round(identification_metrics(folders, celeba, op)["rank1"], 4),
            "lfw_10fold": round(accuracy, 4),
            "failed": len(failed) + len(lfw_failed),
            "faces_turned": {"celeba": turned_celeba, "lfw": turned_lfw},
            "celeba_probes_turned_by": turned_probes(encoder, perception, folders, op.threshold),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

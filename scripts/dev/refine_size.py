"""The detector's input side for the refinement (issue 19): speed and accuracy per side.

    .venv/bin/python scripts/dev/refine_size.py [--sizes 128 96 80 64]
    git show 0f3f00b:models/dlib_landmarks5.json > /tmp/card.json
    .venv/bin/python scripts/dev/refine_size.py --card /tmp/card.json   # a given card, as it is

For each side: one BlazeFace invoke at it (median of 300, 1 thread); the refined box map
fitted again at it on the 400 reference faces (``fit_box_maps``, as ``facegate convert
perception`` does); then, with a landmark card carrying that map (written to a temporary
folder beside a link to the shipped npz), ``evaluate identify`` on celeba-dev against the
lfw-dev strangers and ``evaluate pairs`` on lfw-dev, with the code of ``facegate evaluate``
and its default of 2 threads (so that the shipped side's row is the command's own figure).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

import numpy as np

from facegate.convert.evaluate import DetectAlign, evaluate_pairs
from facegate.convert.identify import evaluate_identify
from facegate.convert.perception_convert import fit_box_maps
from facegate.convert.reference import shared_root
from facegate.detect import FaceDetector
from facegate.encoder import Encoder
from facegate.modelcard import MODELS_DIR
from facegate.perception import Perception

SHORT = MODELS_DIR / "face_detection_short_range.tflite"
LANDMARKS = MODELS_DIR / "dlib_landmarks5.npz"
THREADS = 2  # facegate evaluate's default


def invoke_ms(size: int) -> float:
    net = FaceDetector(SHORT, refine_size=size)._refine_net
    tensor = np.zeros((size, size, 3), np.float32)
    times = []
    for _ in range(300):
        t0 = time.perf_counter()
        net.run(tensor)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def perception_at(size: int, folder: pathlib.Path) -> tuple[Perception, dict[str, float]]:
    maps = fit_box_maps(FaceDetector(SHORT, refine_size=size))
    card = json.loads(LANDMARKS.with_suffix(".json").read_text())
    card["alignment"].update(maps)
    return perception_with(card, folder), maps["box_from_blazeface_refined"]


def perception_with(card: dict[str, object], folder: pathlib.Path) -> Perception:
    """The pipeline with this landmark card beside a link to the shipped cascade."""
    (folder / LANDMARKS.name).symlink_to(LANDMARKS)
    (folder / LANDMARKS.with_suffix(".json").name).write_text(json.dumps(card))
    return Perception(landmarks=folder / LANDMARKS.name, num_threads=THREADS)


def score(encoder: Encoder, perception: Perception) -> str:
    data = shared_root() / "datasets"
    celeba = evaluate_identify(
        encoder, data / "celeba-dev", DetectAlign(perception, "largest"), strangers=data / "lfw-dev"
    )
    lfw = evaluate_pairs(
        encoder, data / "lfw-dev", data / "lfw-dev" / "pairs-dev.txt", DetectAlign(perception, "central")
    )
    dir1, dir01 = (celeba["dir_at_fpir"][f]["value"] for f in ("0.01", "0.001"))  # type: ignore[index]
    return (
        f"celeba-dev rank-1 {celeba['rank1']['value']:.2%}, DIR at FPIR 1% {dir1:.1%}, "  # type: ignore[index]
        f"0.1% {dir01:.1%} (6,409 lfw-dev strangers), images failed {celeba['failed']}; "
        f"lfw-dev 10-fold {lfw['accuracy']:.2%} (± {lfw['accuracy_std']:.2%}), failed {lfw['failed']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 96, 80, 64])
    parser.add_argument("--card", type=pathlib.Path, help="score this landmark card as it is")
    args = parser.parse_args()
    encoder = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite", num_threads=THREADS)
    if args.card:
        with tempfile.TemporaryDirectory() as tmp:
            perception = perception_with(json.loads(args.card.read_text()), pathlib.Path(tmp))
            print(f"{args.card}, refine at {perception.detector.refine_size}: {score(encoder, perception)}")
        return
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            perception, refined = perception_at(size, pathlib.Path(tmp))
            assert perception.detector.refine_size == size
            scores = score(encoder, perception)
        print(
            f"refine at {size}: invoke {invoke_ms(size):.2f} ms; refined map kx {refined['kx']:.5f} "
            f"ky {refined['ky']:.5f} k {refined['k']:.5f}; {scores}",
            flush=True,
        )


if __name__ == "__main__":
    main()

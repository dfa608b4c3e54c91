"""Issue 20: where facegate and dlib's own pipeline differ, one stage at a time, on the
same images. Embeds every image of a dataset root with each variant and saves them
(``<out>/<variant>.npz``: paths, embeddings), for ``open_set.py`` to score; only images
where dlib's HOG finds a face get the dlib-started variants.

    A    facegate: BlazeFace (refined) -> numpy 5-point -> facegate chip -> int8   (shipped)
    A32  as A, float32 encoder                                     (encoder precision)
    E    BlazeFace box -> dlib's 5-point (dlib's code, same box) -> facegate chip -> int8
                                                                   (landmark implementation)
    C    dlib HOG box -> dlib's 5-point -> facegate chip -> int8   (detection box)
    C2   dlib HOG box -> dlib's 5-point -> dlib.get_face_chip -> int8   (chip cutting)
    C32  as C2, float32 encoder                                    (encoder precision)
    D    dlib's own pipeline: HOG -> 5-point -> dlib's chip and ResNet (face_recognition)

A -> E -> C -> C2 -> C32 -> D moves one stage at a time from facegate to dlib; A -> A32 is
the precision alone on facegate's own chips. Runs in .venv-dlib (dlib, face_recognition,
facegate editable), one core:

    .venv-dlib/bin/python scripts/dev/stage_swap.py ../shared/datasets/celeba-dev /tmp/swap/celeba
    .venv-dlib/bin/python scripts/dev/stage_swap.py ../shared/datasets/lfw-dev /tmp/swap/lfw \\
        --pairs ../shared/datasets/lfw-dev/pairs-dev.txt

Pick: the largest face (celeba-dev) or the one nearest the centre (lfw-dev: LFW labels
the centred face), for both libraries alike.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

VARIANTS = ("A", "A32", "E", "C", "C2", "C32", "D")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=pathlib.Path)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--pick", choices=("largest", "central"), default=None)
    parser.add_argument("--pairs", type=pathlib.Path, help="only the images this pairs file names")
    args = parser.parse_args()

    import dlib
    import face_recognition
    import face_recognition.api as api

    from facegate.align import chip_transform, extract_chip
    from facegate.convert.evaluate import pick_face
    from facegate.encoder import Encoder
    from facegate.images import IMAGE_SUFFIXES, load_rgb
    from facegate.modelcard import MODELS_DIR
    from facegate.perception import Perception

    root: pathlib.Path = args.root
    pick = args.pick or ("central" if "lfw" in root.name else "largest")
    paths = sorted(
        f"{d.name}/{f.name}"
        for d in root.iterdir()
        if d.is_dir()
        for f in d.iterdir()
        if f.suffix.lower() in IMAGE_SUFFIXES
    )
    if args.pairs:
        from facegate.convert.evaluate import parse_pairs

        paths = sorted({p for pair in parse_pairs(args.pairs) for p in (pair.a, pair.b)})
    int8 = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite", num_threads=1)
    fp32 = Encoder(MODELS_DIR / "dlib_resnet_v1_float32.tflite", num_threads=1)
    perception = Perception()
    out: dict[str, dict[str, np.ndarray]] = {v: {} for v in VARIANTS}

    def choose(boxes: list[tuple[int, int, int, int]], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        if pick == "largest":
            return max(boxes, key=lambda b: (b[1] - b[3]) * (b[2] - b[0]))
        cy, cx = shape[0] / 2, shape[1] / 2
        return min(boxes, key=lambda b: np.hypot((b[1] + b[3]) / 2 - cx, (b[0] + b[2]) / 2 - cy))

    started = time.time()
    for n, rel in enumerate(paths):
        image = load_rgb(root / rel)
        detections = perception.detect(image)
        faces = [perception.face(image, d) for d in detections]
        face = None
        if faces:
            i = pick_face(faces, image.shape, pick)
            face = faces[i]
        if face is not None and face.rejected is None:
            out["A"][rel] = int8.embed(face.chip)[0]
            out["A32"][rel] = fp32.embed(face.chip)[0]
            refined = perception.refine and (
                detections[i].width * perception.detector.size / max(image.shape[:2])
                < perception.refine_below
            )
            # face.detection is already the refined detection where refinement ran
            left, top, right, bottom = perception.landmark_box(face.detection, refined)
            rect = dlib.rectangle(round(left), round(top), round(right), round(bottom))
            shape = api.pose_predictor_5_point(image, rect)
            pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
            out["E"][rel] = int8.embed(extract_chip(image, chip_transform(pts), 150)[None])[0]
        boxes = face_recognition.face_locations(image)
        if boxes:
            top, right, bottom, left = choose(boxes, image.shape)
            shape = api._raw_face_landmarks(image, [(top, right, bottom, left)], model="small")[0]
            pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
            out["C"][rel] = int8.embed(extract_chip(image, chip_transform(pts), 150)[None])[0]
            dchip = np.asarray(dlib.get_face_chip(image, shape, size=150, padding=0.25))
            out["C2"][rel] = int8.embed(dchip[None])[0]
            out["C32"][rel] = fp32.embed(dchip[None])[0]
            out["D"][rel] = np.array(api.face_encoder.compute_face_descriptor(image, shape, 1))
        if (n + 1) % 200 == 0:
            rate = (time.time() - started) / (n + 1)
            print(
                f"{n + 1}/{len(paths)}  {rate * (len(paths) - n - 1) / 60:.1f} min left",
                file=sys.stderr,
                flush=True,
            )
    args.out.mkdir(parents=True, exist_ok=True)
    for v, embeddings in out.items():
        keys = sorted(embeddings)
        np.savez(
            args.out / f"{v}.npz",
            paths=np.array(keys),
            embeddings=np.stack([embeddings[k] for k in keys]).astype(np.float32),
        )
        print(v, len(keys), "of", len(paths))


if __name__ == "__main__":
    main()

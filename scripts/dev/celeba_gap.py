"""Where facegate loses to dlib's own pipeline on celeba-dev (BENCHMARKS.md): the same
images, swapping one stage at a time, all scored by convert/identify.py.

    A  facegate: BlazeFace -> numpy 5-point -> chip -> int8 encoder
    B  dlib HOG box -> facegate's numpy 5-point -> chip -> int8
    C  dlib HOG box -> dlib's 5-point -> facegate's chip -> int8
    D  dlib HOG box -> dlib's 5-point -> dlib's own descriptor (face_recognition)

Runs in .venv-dlib (dlib + face_recognition + facegate editable), one core, ~10 min:
    .venv-dlib/bin/python scripts/dev/celeba_gap.py ../shared/datasets/celeba-dev
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np


def main(root: pathlib.Path) -> None:
    import face_recognition
    import face_recognition.api as api

    from facegate.align import chip_transform, extract_chip
    from facegate.convert.evaluate import DetectAlign
    from facegate.convert.identify import identification_metrics, identity_folders
    from facegate.decide import OperatingPoint
    from facegate.encoder import Encoder
    from facegate.gallery import Templates
    from facegate.images import load_rgb
    from facegate.modelcard import MODELS_DIR
    from facegate.perception import Perception

    folders = identity_folders(root)
    paths = [p for v in folders.values() for p in v]
    encoder = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite", num_threads=1)
    perception = Perception()
    ours = DetectAlign(perception, pick="largest")
    op = OperatingPoint.from_card(encoder.card, 1e-3)
    variants: dict[str, dict[str, np.ndarray]] = {"A": {}, "B": {}, "C": {}, "D": {}}
    for n, rel in enumerate(paths):
        image = load_rgb(root / rel)
        boxes = face_recognition.face_locations(image)
        if not boxes:
            continue  # only the images both pipelines can use
        chip = ours.chips(image, rel)
        if chip is None:
            continue
        variants["A"][rel] = encoder.embed(chip)[0]
        top, right, bottom, left = max(boxes, key=lambda b: (b[1] - b[3]) * (b[2] - b[0]))
        points = perception.predictor.predict(image, (left, top, right, bottom))
        variants["B"][rel] = encoder.embed(extract_chip(image, chip_transform(points), 150)[None])[0]
        shape = api._raw_face_landmarks(image, [(top, right, bottom, left)], model="small")[0]
        dlib_points = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
        variants["C"][rel] = encoder.embed(extract_chip(image, chip_transform(dlib_points), 150)[None])[0]
        variants["D"][rel] = np.array(api.face_encoder.compute_face_descriptor(image, shape, 1))
        if (n + 1) % 100 == 0:
            print(f"{n + 1}/{len(paths)}", file=sys.stderr, flush=True)

    def raw_06(templates: Templates, probe: np.ndarray) -> str | None:
        d = np.linalg.norm(templates.matrix - probe, axis=1)
        best = int(np.argmin(d))
        return templates.names[best] if d[best] < 0.6 else None

    out = {}
    for name, embeddings in variants.items():
        decide = raw_06 if name == "D" else None
        m = identification_metrics(folders, embeddings, op, decide=decide)
        out[name] = {k: m[k] for k in ("rank1", "dir_at_fpir", "operating_point", "probes")}
        print(name, json.dumps(out[name]))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))

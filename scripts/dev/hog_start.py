"""Issue 20: does dlib's own HOG box, as the landmark cascade's start, close the rank-1 gap
on all celeba-dev images? (The stage swap, ``stage_swap.py``, measured it only on the
images every variant could use, each identity enrolled from its first such image.)

``embed`` runs every image through facegate's shipped pipeline (A), then through these
variants of the same face (the one facegate picks; a HOG box counts when its centre lies
within half a face width of facegate's landmark box, else the variant keeps A's embedding):
    Hf   dlib's HOG on the whole image (face_recognition's call: upsampled once) ->
         facegate's numpy 5-point cascade -> facegate chip -> int8
    Hc   dlib's HOG on a crop three faces wide around facegate's face, at the image's
         resolution (what a device could run on one face) -> numpy cascade -> chip -> int8
    Hcd  as Hc, dlib's own 5-point code
    D    face_recognition itself on the Hf box: dlib's 5-point, chip and ResNet
``score`` gives one-shot rank-1 (``convert/identify.py``: each identity's first image
enrolled) on all images, and on the images where the whole-image HOG found the face, with
every variant scored on the same images and the same enrolled photos. In .venv-dlib:

    .venv-dlib/bin/python scripts/dev/hog_start.py embed ../shared/datasets/celeba-dev /tmp/hog
    .venv-dlib/bin/python scripts/dev/hog_start.py score /tmp/hog
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

VARIANTS = ("A", "Hf", "Hc", "Hcd", "D")


def embed(root: pathlib.Path, out: pathlib.Path, pairs: pathlib.Path | None = None) -> None:
    import dlib
    import face_recognition
    import face_recognition.api as api

    from facegate.align import chip_transform, extract_chip
    from facegate.convert.evaluate import pick_face
    from facegate.convert.identify import identity_folders
    from facegate.encoder import Encoder
    from facegate.images import load_rgb
    from facegate.modelcard import MODELS_DIR
    from facegate.perception import Perception

    pick = "central" if "lfw" in root.name else "largest"
    if pairs:
        from facegate.convert.evaluate import parse_pairs

        paths = sorted({p for pair in parse_pairs(pairs) for p in (pair.a, pair.b)})
    else:
        paths = [p for v in identity_folders(root, min_images=1).values() for p in v]
    int8 = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite", num_threads=1)
    perception, hog = Perception(), dlib.get_frontal_face_detector()
    found = {"whole image": 0, "crop": 0}
    whole_used: list[str] = []  # the images where the whole-image HOG found facegate's face
    out_: dict[str, dict[str, np.ndarray]] = {v: {} for v in VARIANTS}

    def chip_embedding(image: np.ndarray, points: np.ndarray) -> np.ndarray:
        return int8.embed(extract_chip(image, chip_transform(points), 150)[None])[0]

    def dlib_points(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        shape = api.pose_predictor_5_point(image, dlib.rectangle(*box))
        return np.array([[p.x, p.y] for p in shape.parts()], np.float64)

    started = time.time()
    for n, rel in enumerate(paths):
        image = load_rgb(root / rel)
        detections = perception.detect(image)
        faces = [perception.face(image, d) for d in detections]
        if not faces:
            continue
        i = pick_face(faces, image.shape, pick)
        if faces[i].rejected is not None:
            continue
        a = out_["A"][rel] = int8.embed(faces[i].chip)[0]
        for v in VARIANTS[1:]:
            out_[v][rel] = a
        refined = perception.refine and (
            detections[i].width * perception.detector.size / max(image.shape[:2]) < perception.refine_below
        )
        left, top, right, bottom = perception.landmark_box(faces[i].detection, refined)
        cx, cy, side = (left + right) / 2, (top + bottom) / 2, right - left

        def near(box: tuple[int, int, int, int], cx: float = cx, cy: float = cy) -> float:
            return float(np.hypot((box[0] + box[2]) / 2 - cx, (box[1] + box[3]) / 2 - cy))

        # (left, top, right, bottom), dlib's inclusive convention
        whole = [(lf, tp, rt, bm) for tp, rt, bm, lf in face_recognition.face_locations(image)]
        if whole and near(box := min(whole, key=near)) < side / 2:
            found["whole image"] += 1
            whole_used.append(rel)
            out_["Hf"][rel] = chip_embedding(image, perception.predictor.predict(image, box))
            shape = api._raw_face_landmarks(image, [(box[1], box[2], box[3], box[0])], model="small")[0]
            out_["D"][rel] = np.array(api.face_encoder.compute_face_descriptor(image, shape, 1))
        x0, y0 = int(max(0, cx - 1.5 * side)), int(max(0, cy - 1.5 * side))
        x1, y1 = int(min(image.shape[1], cx + 1.5 * side)), int(min(image.shape[0], cy + 1.5 * side))
        crop = [
            (r.left() + x0, r.top() + y0, r.right() + x0, r.bottom() + y0)
            for r in hog(np.ascontiguousarray(image[y0:y1, x0:x1]), 1)
        ]
        if crop and near(box := min(crop, key=near)) < side / 2:
            found["crop"] += 1
            out_["Hc"][rel] = chip_embedding(image, perception.predictor.predict(image, box))
            out_["Hcd"][rel] = chip_embedding(image, dlib_points(image, box))
        if (n + 1) % 200 == 0:
            left_min = (time.time() - started) / (n + 1) * (len(paths) - n - 1) / 60
            print(f"{n + 1}/{len(paths)} {left_min:.1f} min left", file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    for v, embeddings in out_.items():
        keys = sorted(embeddings)
        np.savez(out / f"{v}.npz", paths=np.array(keys), embeddings=np.stack([embeddings[k] for k in keys]))
    np.save(out / "whole_image_hog.npy", np.array(sorted(whole_used)))
    print(f"{len(out_['A'])} of {len(paths)} images with a face; HOG found it in {found}")


def score(folder: pathlib.Path) -> None:
    from facegate.convert.identify import group_by_identity, identification_metrics
    from facegate.decide import OperatingPoint
    from facegate.encoder import Encoder
    from facegate.modelcard import MODELS_DIR

    op = OperatingPoint.from_card(Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite").card, 1e-3)
    variants = {}
    for v in VARIANTS:
        data = np.load(folder / f"{v}.npz")
        variants[v] = dict(zip(data["paths"].tolist(), data["embeddings"].astype(np.float32)))
    subsets = {
        "all images": sorted(variants["A"]),
        "whole-image HOG found the face": np.load(folder / "whole_image_hog.npy").tolist(),
    }
    for label, keys in subsets.items():
        for v in VARIANTS:
            if v == "D" and label == "all images":
                continue  # D exists only where dlib found the face
            emb = {k: variants[v][k] for k in keys}
            folders = {k: x for k, x in group_by_identity(emb).items() if len(x) >= 2}
            m = identification_metrics(folders, emb, op)
            print(f"{label:32s} {v:4s} images {len(keys):4d} probes {m['probes']:4d} rank-1 {m['rank1']:.2%}")
    keys = subsets["whole-image HOG found the face"]
    a, d = (hits({k: variants[v][k] for k in keys}) for v in ("A", "D"))
    people = sorted({n for n, _ in a})
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(2000):  # paired bootstrap over identities: a person's photos are not independent
        chosen = rng.choice(len(people), len(people))
        rows = [i for c in chosen for i, (n, _) in enumerate(a) if n == people[c]]
        diffs.append(np.mean([a[i][1] for i in rows]) - np.mean([d[i][1] for i in rows]))
    point = np.mean([h for _, h in a]) - np.mean([h for _, h in d])
    low, high = np.percentile(diffs, [2.5, 97.5])
    print(f"A minus D, same images and enrolled photos: {point:+.2%} [{low:+.2%}, {high:+.2%}] (95%)")


def hits(emb: dict[str, np.ndarray]) -> list[tuple[str, bool]]:
    """Per probe: its identity and whether the nearest enrolled template is that identity's."""
    from facegate.convert.identify import group_by_identity, rank1_hits

    return rank1_hits({k: x for k, x in group_by_identity(emb).items() if len(x) >= 2}, emb)


if __name__ == "__main__":
    from augment_enroll import cli  # scripts/dev is on sys.path when run

    cli(embed, score)

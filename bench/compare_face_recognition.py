"""facegate side by side with face_recognition (dlib: HOG, 5-point landmarks, ResNet).

Same frames, same process, configurations interleaved round by round (A B C
A B C ...), so the ratios hold on a noisy machine. Needs an environment with
both installed (dlib builds from source, ~6 minutes):

    python -m venv .venv-dlib && .venv-dlib/bin/pip install dlib face_recognition==1.3.0 \\
        face-recognition-models==0.3.0 ai-edge-litert pyyaml "paho-mqtt>=2" && \\
        .venv-dlib/bin/pip install --no-deps -e .
    .venv-dlib/bin/python bench/compare_face_recognition.py [--rounds 5] [--runs 10] [--json]

Measures, for a 640x480 frame with one face and with four: frame in ->
embeddings out (detect, landmarks, align, encode every face); peak memory of
each library in its own child process; model sizes; 1:N matching.
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import subprocess
import sys
import time
from typing import Any

import numpy as np

from facegate.wire import dumps

ROOT = pathlib.Path(__file__).resolve().parent.parent


def frames() -> dict[str, np.ndarray]:
    from facegate.demo import PHOTOS, scene
    from facegate.perception import Perception

    p = Perception()
    one = scene(PHOTOS / "obama2.jpg", perception=p)
    four = np.full((480, 640, 3), 96, np.uint8)
    photos = ["obama2.jpg", "biden.jpg", "obama3.jpg", "obama.jpg"]
    for photo, (cx, cy) in zip(photos, [(160, 120), (480, 120), (160, 360), (480, 360)]):
        tile = scene(PHOTOS / photo, face_width=80.0, centre=(160.0, 120.0), size=(320, 240), perception=p)
        four[cy - 120 : cy + 120, cx - 160 : cx + 160] = tile
    return {"one face": one, "four faces": four}


class Facegate:
    def __init__(self, threads: int, model: str = "int8") -> None:
        from facegate.encoder import Encoder
        from facegate.modelcard import MODELS_DIR
        from facegate.perception import Perception

        self.perception = Perception(num_threads=threads)
        self.encoder = Encoder(MODELS_DIR / f"dlib_resnet_v1_{model}.tflite", num_threads=threads)
        self.name = f"facegate {model}, {threads} thread(s)"

    def __call__(self, frame: np.ndarray, stages: dict[str, float] | None = None) -> int:
        stages = {} if stages is None else stages
        chips = [f.chip for f in self.perception.faces(frame, "RGB", stages) if f.rejected is None]
        t0 = time.perf_counter()
        if chips:
            self.encoder.embed(np.stack(chips))
        stages["encode"] = time.perf_counter() - t0
        return len(chips)


class FaceRecognition:
    name = "face_recognition (dlib HOG + 5-point + ResNet)"

    def __init__(self) -> None:
        import face_recognition
        import face_recognition.api

        self.fr = face_recognition
        self.api = face_recognition.api

    def __call__(self, frame: np.ndarray, stages: dict[str, float] | None = None) -> int:
        """What ``face_encodings(frame, face_locations(frame), model="small")`` does, a stage
        at a time (dlib cuts the chip inside ``compute_face_descriptor``: align is in encode)."""
        stages = {} if stages is None else stages
        t0 = time.perf_counter()
        locations = self.fr.face_locations(frame)
        t1 = time.perf_counter()
        shapes = self.api._raw_face_landmarks(frame, locations, model="small")
        t2 = time.perf_counter()
        for shape in shapes:
            np.array(self.api.face_encoder.compute_face_descriptor(frame, shape, 1))
        t3 = time.perf_counter()
        stages.update(detect=t1 - t0, landmarks=t2 - t1, encode=t3 - t2)
        return len(locations)


STAGES = ("detect", "refine", "landmarks", "align", "encode")


def latency(rounds: int, runs: int) -> list[dict[str, Any]]:
    """Per-stage and frame-to-embeddings ms, medians and p95, every pipeline on the same
    frames, interleaved round by round."""
    pipelines: list[Facegate | FaceRecognition] = [
        Facegate(1),
        Facegate(2),
        Facegate(1, "float32"),
        Facegate(2, "float32"),
        FaceRecognition(),
    ]
    times: dict[tuple[str, str], dict[str, list[float]]] = {}
    found: dict[tuple[str, str], int] = {}
    test = frames()
    for pipe in pipelines:
        for frame in test.values():
            pipe(frame)  # warm-up
    for _ in range(rounds):
        for pipe in pipelines:
            for label, frame in test.items():
                for _ in range(runs):
                    stages: dict[str, float] = {}
                    t0 = time.perf_counter()
                    n = pipe(frame, stages)
                    stages["total"] = time.perf_counter() - t0
                    into = times.setdefault((pipe.name, label), {})
                    for stage, seconds in stages.items():
                        into.setdefault(stage, []).append(seconds * 1000)
                    found[(pipe.name, label)] = n
    return [
        {
            "pipeline": name,
            "frame": label,
            "faces_found": found[(name, label)],
            "median_ms": float(np.median(v["total"])),
            "p95_ms": float(np.percentile(v["total"], 95)),
            "stages": {
                s: {"median_ms": float(np.median(v[s])), "p95_ms": float(np.percentile(v[s], 95))}
                for s in STAGES
                if s in v
            },
        }
        for (name, label), v in times.items()
    ]


def _peak_child(which: str, frames_file: pathlib.Path) -> float:
    """Peak RSS of a fresh process that loads only ``which`` and runs 20 frames (frames from a file,
    so the other library is never imported there)."""
    code = "\n".join(
        [
            f"import sys, numpy as np; sys.path.insert(0, {str(ROOT)!r})",
            "import bench.compare_face_recognition as c",
            f"data = np.load({str(frames_file)!r}); f = [data[k] for k in data.files]",
            f"p = c.Facegate(1) if {which!r} == 'facegate' else c.FaceRecognition()",
            "[p(x) for x in f for _ in range(10)]",
            # VmHWM, not ru_maxrss: Linux carries the parent's ru_maxrss into a forked child.
            "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def peak_rss() -> dict[str, float]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "frames.npz"
        np.savez(path, *frames().values())
        return {which: _peak_child(which, path) for which in ("facegate", "face_recognition")}


def sizes() -> dict[str, float]:
    import face_recognition_models

    from facegate.modelcard import MODELS_DIR

    fr = pathlib.Path(face_recognition_models.__file__).parent / "models"
    ours = ["dlib_resnet_v1_int8.tflite", "face_detection_short_range.tflite", "dlib_landmarks5.npz"]
    return {
        "facegate (int8 encoder + BlazeFace + 5-point npz), MB": sum(
            (MODELS_DIR / f).stat().st_size for f in ours
        )
        / 1e6,
        "face_recognition (ResNet .dat + 5-point .dat; HOG is in dlib), MB": sum(
            (fr / f).stat().st_size
            for f in ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")
        )
        / 1e6,
    }


def matching(
    sizes_: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000), runs: int = 30
) -> list[dict[str, Any]]:
    import face_recognition

    from facegate.decide import OperatingPoint, identify
    from facegate.gallery import Templates

    rng = np.random.default_rng(0)
    op = OperatingPoint(1e-3, 0.38)
    out = []
    for n in sizes_:
        m = rng.standard_normal((n, 128)).astype(np.float32)
        m /= np.linalg.norm(m, axis=1, keepdims=True)
        known = m.astype(np.float64)  # face_recognition keeps float64 encodings in a list
        t = Templates(tuple(map(str, range(n))), m)
        probes = rng.standard_normal((runs, 128))
        timing: dict[str, list[float]] = {"facegate": [], "face_recognition": []}
        for probe in probes:
            t0 = time.perf_counter()
            identify(t, probe, op)
            t1 = time.perf_counter()
            d = face_recognition.face_distance(known, probe)
            int(np.argmin(d))
            t2 = time.perf_counter()
            timing["facegate"].append((t1 - t0) * 1000)
            timing["face_recognition"].append((t2 - t1) * 1000)
        out.append({"gallery": n, **{k: float(np.median(v)) for k, v in timing.items()}})
    return out


def at_fr_tolerance(templates: Any, probe: np.ndarray) -> str | None:
    """face_recognition's own decision: the nearest encoding if nearer than its tolerance 0.6."""
    d = np.linalg.norm(templates.matrix - probe, axis=1)
    best = int(np.argmin(d))
    return str(templates.names[best]) if d[best] < 0.6 else None


def _pick(locations: list[tuple[int, int, int, int]], shape: tuple[int, ...], pick: str) -> Any:
    """The face nearest the centre, or the largest; boxes are (top, right, bottom, left)."""
    h, w = shape[:2]
    if pick == "central":
        return min(locations, key=lambda b: abs((b[1] + b[3]) / 2 - w / 2) + abs((b[0] + b[2]) / 2 - h / 2))
    return max(locations, key=lambda b: (b[1] - b[3]) * (b[2] - b[0]))


def fr_embeddings(root: pathlib.Path, paths: list[str], pick: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """face_recognition's own pipeline on each image: HOG (upsample 1), one face (the one
    nearest the centre, or the largest, as facegate's evaluation picks), its 128-d encoding.
    Returns the encodings and the images where HOG found no face."""
    import face_recognition

    out: dict[str, np.ndarray] = {}
    failed: list[str] = []
    for i, rel in enumerate(paths):
        image = face_recognition.load_image_file(root / rel)
        locations = face_recognition.face_locations(image)
        if not locations:
            failed.append(rel)
            continue
        out[rel] = face_recognition.face_encodings(image, [_pick(locations, image.shape, pick)])[0]
        if (i + 1) % 250 == 0:
            print(f"  {i + 1}/{len(paths)} images", file=sys.stderr, flush=True)
    return out, failed


def lfw(root: pathlib.Path, pairs_file: pathlib.Path) -> dict[str, Any]:
    """face_recognition on LFW-format pairs: 10-fold accuracy and accuracy at its 0.6 tolerance."""
    from facegate.convert.evaluate import parse_pairs
    from facegate.convert.metrics import ten_fold

    pairs = parse_pairs(pairs_file)
    started = time.perf_counter()
    encodings, failed = fr_embeddings(root, sorted({x for p in pairs for x in (p.a, p.b)}), "central")
    d = np.array(
        [
            np.linalg.norm(encodings[p.a] - encodings[p.b])
            if p.a in encodings and p.b in encodings
            else np.inf
            for p in pairs
        ]
    )
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    return {
        "accuracy_10fold": ten_fold(d, same, folds)["accuracy"],
        "accuracy_at_tolerance_0.6": float(np.mean((d < 0.6) == same)),
        "images": len(encodings) + len(failed),
        "no_face_found": len(failed),
        "seconds": round(time.perf_counter() - started, 1),
    }


def celeba(root: pathlib.Path) -> dict[str, Any]:
    """One-shot identification by facegate's protocol (``convert.identify``, the same code
    scores both), on the same images in one run:

    - face_recognition, deciding as it does: nearest enrolled face by raw distance,
      accepted under its 0.6 tolerance;
    - facegate int8 on every image, and on only the images where face_recognition's HOG
      found a face (the like-for-like comparison), deciding at its card's FAR 1e-3 threshold.
    """
    from facegate.convert.evaluate import DetectAlign, embed_images
    from facegate.convert.identify import identification_metrics, identity_folders
    from facegate.decide import OperatingPoint
    from facegate.encoder import Encoder
    from facegate.modelcard import MODELS_DIR
    from facegate.perception import Perception

    folders = identity_folders(root)
    paths = [p for v in folders.values() for p in v]
    all_probes = sum(len(v) - 1 for v in folders.values())

    def scored(metrics: dict[str, Any], failed: list[str], seconds: float) -> dict[str, Any]:
        return {
            **metrics,
            # rank-1 over every probe image, one without a usable face counting as a miss
            "rank1_all_probes": metrics["rank1"] * metrics["probes"] / all_probes,
            "no_face_found": len(failed),
            "seconds": round(seconds, 1),
        }

    started = time.perf_counter()
    encodings, failed = fr_embeddings(root, paths, "largest")
    fr_seconds = time.perf_counter() - started

    fr = identification_metrics(folders, encodings, OperatingPoint(float("nan"), 0.6), decide=at_fr_tolerance)
    started = time.perf_counter()
    encoder = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite", num_threads=1)
    ours, ours_failed = embed_images(encoder, root, paths, DetectAlign(Perception(), pick="largest"))
    fg_seconds = time.perf_counter() - started
    op = OperatingPoint.from_card(encoder.card, 1e-3)
    subset = {p: e for p, e in ours.items() if p in encodings}
    return {
        "identities": len(folders),
        "images": len(paths),
        "probes": all_probes,
        "face_recognition": {**scored(fr, failed, fr_seconds), "no_face_images": failed},
        "facegate_int8": scored(identification_metrics(folders, ours, op), ours_failed, fg_seconds),
        "facegate_int8_on_face_recognition_images": scored(
            identification_metrics(folders, subset, op), sorted(set(paths) - set(subset)), fg_seconds
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--lfw", type=pathlib.Path, help="only run face_recognition on this LFW folder's pairs-dev.txt"
    )
    parser.add_argument(
        "--celeba", type=pathlib.Path, help="only run face_recognition one-shot on these identity folders"
    )
    args = parser.parse_args()
    if args.lfw:
        print(dumps(lfw(args.lfw, args.lfw / "pairs-dev.txt"), indent=2))
        return
    if args.celeba:
        print(dumps(celeba(args.celeba), indent=2))
        return
    report: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "latency": latency(args.rounds, args.runs),
        "peak_rss_mb": peak_rss(),
        "model_mb": sizes(),
        "matching_ms": matching(),
    }
    if args.json:
        print(dumps(report, indent=2))
        return
    fr = {
        r["frame"]: r["median_ms"] for r in report["latency"] if r["pipeline"].startswith("face_recognition")
    }
    print("median ms (p95) per 640x480 frame; align is inside encode for face_recognition")
    print(f"{'pipeline':<48}{'frame':<12}{'faces':>6}", *(f"{s:>16}" for s in (*STAGES, "total")), "  ratio")
    for r in report["latency"]:
        cells = [
            f"{st['median_ms']:>7.1f} ({st['p95_ms']:>6.1f})" if st else f"{'-':>16}"
            for st in (r["stages"].get(s) for s in STAGES)
        ]
        total = f"{r['median_ms']:>7.1f} ({r['p95_ms']:>6.1f})"
        ratio = fr[r["frame"]] / r["median_ms"]
        print(f"{r['pipeline']:<48}{r['frame']:<12}{r['faces_found']:>6}", *cells, total, f"{ratio:>6.1f}x")
    print(f"peak RSS (MB): {report['peak_rss_mb']}")
    print(f"model files (MB): {dumps(report['model_mb'])}")
    for m in report["matching_ms"]:
        print(
            f"1:N over {m['gallery']:>7}: facegate {m['facegate']:.3f} ms, "
            f"face_recognition.face_distance {m['face_recognition']:.3f} ms"
        )


if __name__ == "__main__":
    main()

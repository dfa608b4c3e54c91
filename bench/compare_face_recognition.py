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
import json
import pathlib
import platform
import subprocess
import sys
import time
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


def frames() -> dict[str, np.ndarray]:
    from edge.demo import PHOTOS, scene
    from edge.perception import Perception

    p = Perception()
    one = scene(PHOTOS / "obama2.jpg", perception=p)
    four = np.full((480, 640, 3), 96, np.uint8)
    photos = ["obama2.jpg", "biden.jpg", "obama3.jpg", "obama.jpg"]
    for photo, (cx, cy) in zip(photos, [(160, 120), (480, 120), (160, 360), (480, 360)]):
        tile = scene(PHOTOS / photo, face_width=80.0, centre=(160.0, 120.0), size=(320, 240), perception=p)
        four[cy - 120 : cy + 120, cx - 160 : cx + 160] = tile
    return {"one face": one, "four faces": four}


class Facegate:
    def __init__(self, threads: int) -> None:
        from edge.encoder import Encoder
        from edge.modelcard import MODELS_DIR
        from edge.perception import Perception

        self.perception = Perception(num_threads=threads)
        self.encoder = Encoder(MODELS_DIR / "dlib_resnet_v1_int8.tflite", num_threads=threads)
        self.name = f"facegate int8, {threads} thread(s)"

    def __call__(self, frame: np.ndarray) -> int:
        chips = [f.chip for f in self.perception.faces(frame) if f.rejected is None]
        if chips:
            self.encoder.embed(np.stack(chips))
        return len(chips)


class FaceRecognition:
    name = "face_recognition (dlib HOG + 5-point + ResNet)"

    def __init__(self) -> None:
        import face_recognition

        self.fr = face_recognition

    def __call__(self, frame: np.ndarray) -> int:
        locations = self.fr.face_locations(frame)
        self.fr.face_encodings(frame, locations, model="small")
        return len(locations)


def latency(rounds: int, runs: int) -> list[dict[str, Any]]:
    pipelines = [Facegate(1), Facegate(2), FaceRecognition()]
    results: dict[tuple[str, str], list[float]] = {}
    found: dict[tuple[str, str], int] = {}
    test = frames()
    for pipe in pipelines:
        for frame in test.values():
            pipe(frame)  # warm-up
    for _ in range(rounds):
        for pipe in pipelines:
            for label, frame in test.items():
                for _ in range(runs):
                    t0 = time.perf_counter()
                    n = pipe(frame)
                    results.setdefault((pipe.name, label), []).append((time.perf_counter() - t0) * 1000)
                    found[(pipe.name, label)] = n
    return [
        {
            "pipeline": name,
            "frame": label,
            "faces_found": found[(name, label)],
            "median_ms": float(np.median(v)),
            "p95_ms": float(np.percentile(v, 95)),
        }
        for (name, label), v in results.items()
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

    from edge.modelcard import MODELS_DIR

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


def matching(sizes_: tuple[int, ...] = (1_000, 10_000, 100_000), runs: int = 30) -> list[dict[str, Any]]:
    import face_recognition

    from edge.decide import OperatingPoint, identify
    from edge.gallery import Templates

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


def lfw(root: pathlib.Path, pairs_file: pathlib.Path) -> dict[str, Any]:
    """face_recognition's own pipeline on LFW-format pairs: HOG (upsample 1), the face
    nearest the centre, its 128-d encoding; 10-fold accuracy and accuracy at its 0.6 tolerance."""
    import face_recognition

    from convert.evaluate import parse_pairs
    from convert.metrics import ten_fold

    pairs = parse_pairs(pairs_file)
    encodings: dict[str, np.ndarray] = {}
    failed = 0
    started = time.perf_counter()
    for rel in sorted({x for p in pairs for x in (p.a, p.b)}):
        image = face_recognition.load_image_file(root / rel)
        locations = face_recognition.face_locations(image)
        if not locations:
            failed += 1
            continue
        h, w = image.shape[:2]
        top, right, bottom, left = min(
            locations, key=lambda b: abs((b[1] + b[3]) / 2 - w / 2) + abs((b[0] + b[2]) / 2 - h / 2)
        )
        encodings[rel] = face_recognition.face_encodings(image, [(top, right, bottom, left)])[0]
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
        "images": len(encodings) + failed,
        "no_face_found": failed,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--lfw", type=pathlib.Path, help="also run face_recognition on this LFW folder's pairs-dev.txt"
    )
    args = parser.parse_args()
    if args.lfw:
        print(json.dumps(lfw(args.lfw, args.lfw / "pairs-dev.txt"), indent=2))
        return
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "latency": latency(args.rounds, args.runs),
        "peak_rss_mb": peak_rss(),
        "model_mb": sizes(),
        "matching_ms": matching(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    fr = {
        r["frame"]: r["median_ms"] for r in report["latency"] if r["pipeline"].startswith("face_recognition")
    }
    print(f"{'pipeline':<50}{'frame':<12}{'faces':>6}{'median ms':>11}{'p95 ms':>9}{'speed-up':>10}")
    for r in report["latency"]:
        print(
            f"{r['pipeline']:<50}{r['frame']:<12}{r['faces_found']:>6}{r['median_ms']:>11.1f}"
            f"{r['p95_ms']:>9.1f}{fr[r['frame']] / r['median_ms']:>9.1f}x"
        )
    print(f"peak RSS (MB): {report['peak_rss_mb']}")
    print(f"model files (MB): {json.dumps(report['model_mb'])}")
    for m in report["matching_ms"]:
        print(
            f"1:N over {m['gallery']:>7}: facegate {m['facegate']:.3f} ms, "
            f"face_recognition.face_distance {m['face_recognition']:.3f} ms"
        )


if __name__ == "__main__":
    main()

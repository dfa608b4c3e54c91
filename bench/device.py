"""``facegate bench encoder``: median ms per face, models x threads x runtimes.

Rounds interleave every configuration (A B A B ...) so that a noisy machine
shifts all of them alike; other Python interpreters (for example a venv with
tflite-runtime, which needs numpy < 2) are run as child processes in the same
rounds.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys
import time
from typing import Any

import numpy as np

from facegate.encoder import Encoder


def _chips(encoder: Encoder, count: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, *encoder.input_shape), dtype=np.uint8)


def time_encoder(
    model: pathlib.Path, threads: int, runtime: str | None, runs: int, warmup: int = 3
) -> dict[str, Any]:
    """Per-face latency of one configuration (the interpreter is loaded once)."""
    encoder = Encoder(model, num_threads=threads, runtime=runtime, verify_sha256=False)
    chips = _chips(encoder)
    for i in range(warmup):
        encoder.descriptors(chips[i % len(chips)])
    times = []
    for i in range(runs):
        start = time.perf_counter()
        encoder.descriptors(chips[i % len(chips)])
        times.append((time.perf_counter() - start) * 1000)
    from facegate.interpreter import interpreter_class

    return {
        "model": model.name,
        "threads": threads,
        "runtime": interpreter_class(runtime)[0],
        "times_ms": times,
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: dict[tuple[str, int, str], list[float]] = {}
    for row in rows:
        merged.setdefault((row["model"], row["threads"], row["runtime"]), []).extend(row["times_ms"])
    out = []
    for (model, threads, runtime), times in merged.items():
        out.append(
            {
                "model": model,
                "threads": threads,
                "runtime": runtime,
                "runs": len(times),
                "median_ms": float(np.median(times)),
                "p95_ms": float(np.percentile(times, 95)),
            }
        )
    return out


def run_child(python: str, models: list[pathlib.Path], threads: list[int], runs: int) -> list[dict[str, Any]]:
    """One round in another interpreter (it must be able to import this package)."""
    code = (
        "import json, pathlib, sys; from facegate.bench.device import time_encoder; "
        "a = json.loads(sys.argv[1]); "
        "print(json.dumps([time_encoder(pathlib.Path(m), t, None, a['runs']) "
        "for m in a['models'] for t in a['threads']]))"
    )
    arg = json.dumps({"models": [str(m) for m in models], "threads": threads, "runs": runs})
    root = str(pathlib.Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([python, "-c", code, arg], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{python} failed: {done.stderr.strip().splitlines()[-1:]}")
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def bench_encoders(
    models: list[pathlib.Path],
    threads: list[int],
    runtimes: list[str | None],
    pythons: list[str],
    rounds: int,
    runs: int,
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for _ in range(rounds):
        for runtime in runtimes:
            for model in models:
                for t in threads:
                    rows.append(time_encoder(model, t, runtime, runs))
        for python in pythons:
            rows.extend(run_child(python, models, threads, runs))
    return {
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "rounds": rounds,
        "results": summarise(rows),
    }


def _cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_table(report: dict[str, Any]) -> str:
    rows = sorted(report["results"], key=lambda r: (r["runtime"], r["threads"], r["model"]))
    lines = [
        f"machine: {report['machine']['cpu']} ({report['machine']['cores']} cores), "
        f"python {report['machine']['python']}",
        f"{'runtime':<16}{'threads':>8}  {'model':<32}{'median ms':>10}{'p95 ms':>9}{'vs float32':>11}",
    ]
    base = {(r["runtime"], r["threads"]): r["median_ms"] for r in rows if "float32" in r["model"]}
    for r in rows:
        ref = base.get((r["runtime"], r["threads"]))
        ratio = f"{ref / r['median_ms']:.2f}x" if ref else "-"
        lines.append(
            f"{r['runtime']:<16}{r['threads']:>8}  {r['model']:<32}{r['median_ms']:>10.2f}"
            f"{r['p95_ms']:>9.2f}{ratio:>11}"
        )
    lines.append("vs float32: float32 median / this median on the same runtime and threads (>1 = faster)")
    return "\n".join(lines)


def bench_perception(frame: np.ndarray, threads: list[int], runs: int, rounds: int) -> dict[str, Any]:
    """Per-stage ms for one frame, as ``Perception.faces`` spends them (detect, refine,
    landmarks, align, and the whole call), with refinement off and on, interleaved."""
    from facegate.perception import Perception

    stages: dict[tuple[int, bool, str], list[float]] = {}
    pipelines = {(t, r): Perception(num_threads=t, refine=r) for t in threads for r in (False, True)}
    for _ in range(rounds):
        for (t, refine), p in pipelines.items():
            for _ in range(runs):
                spent: dict[str, float] = {}
                t0 = time.perf_counter()
                p.faces(frame, "RGB", spent)
                spent["total"] = time.perf_counter() - t0
                for stage, seconds in spent.items():
                    stages.setdefault((t, refine, stage), []).append(seconds * 1000)
    return {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count()},
        "frame": list(frame.shape),
        "results": [
            {
                "threads": t,
                "refine": refine,
                "stage": s,
                "median_ms": float(np.median(v)),
                "p95_ms": float(np.percentile(v, 95)),
                "runs": len(v),
            }
            for (t, refine, s), v in stages.items()
        ],
    }


def demo_frame(width: int = 640, height: int = 480) -> np.ndarray:
    """A 640x480 frame with one face: the bundled obama.jpg scaled into it."""
    from PIL import Image

    from facegate.demo import PHOTOS
    from facegate.images import load_rgb

    photo = Image.fromarray(load_rgb(PHOTOS / "obama.jpg"))
    scale = height / photo.height
    photo = photo.resize((round(photo.width * scale), height), Image.Resampling.BILINEAR)
    frame = np.zeros((height, width, 3), np.uint8)
    x = (width - photo.width) // 2
    frame[:, x : x + photo.width] = np.asarray(photo)
    return frame


def bench_match(sizes: list[int], dim: int = 128, runs: int = 50, seed: int = 0) -> dict[str, Any]:
    """Median ms of ``facegate.decide.identify`` against N random unit templates, and memory.

    Memory: the template matrix itself, and the peak of what one identify
    call allocates on top of it (tracemalloc sees numpy's buffers).
    """
    import tracemalloc

    from facegate.decide import OperatingPoint, identify
    from facegate.gallery import Templates

    rng = np.random.default_rng(seed)
    op = OperatingPoint(1e-3, 0.38)
    rows = []
    for n in sizes:
        matrix = rng.standard_normal((n, dim), dtype=np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        templates = Templates(tuple(f"p{i}" for i in range(n)), matrix)
        probes = rng.standard_normal((runs, dim), dtype=np.float32)
        identify(templates, probes[0], op)  # warm-up
        times = []
        for probe in probes:
            t0 = time.perf_counter()
            identify(templates, probe, op)
            times.append((time.perf_counter() - t0) * 1000)
        tracemalloc.start()
        identify(templates, probes[0], op)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append(
            {
                "gallery": n,
                "median_ms": float(np.median(times)),
                "p95_ms": float(np.percentile(times, 95)),
                "matrix_mb": matrix.nbytes / 1e6,
                "names_mb": sum(sys.getsizeof(s) for s in templates.names) / 1e6
                + sys.getsizeof(templates.names) / 1e6,
                "per_call_peak_mb": peak / 1e6,
            }
        )
        del templates, matrix
    return {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count()},
        "dim": dim,
        "runs": runs,
        "results": rows,
    }


def _rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_daemon_latency(tracks: int = 200, threads: int = 2) -> dict[str, Any]:
    """Frame in -> event at a subscriber on loopback, per decided track.

    A local broker (mosquitto, else amqtt); the daemon in this
    process fed 3 frames of a known face then 2 empty frames per track, as
    fast as it can take them. Latency = arrival at the subscriber minus the
    time the deciding frame entered the daemon (both on this machine's clock).
    """
    import tempfile
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from facegate.config import validate
    from facegate.daemon import Daemon
    from facegate.demo import PHOTOS, scene
    from facegate.demo.broker import start_broker
    from facegate.perception import Perception
    from facegate.sources import ArraySource

    port, stop_broker, broker, protocol = start_broker()
    perception = Perception()
    face = scene(PHOTOS / "obama2.jpg", perception=perception)
    blank = np.full_like(face, 96)
    clip = ([face] * 3 + [blank] * 2) * tracks
    arrivals: list[tuple[float, dict[str, Any]]] = []
    done = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        config = validate(
            {
                "device": {"id": "bench"},
                "camera": {"source": "folder", "path": tmp, "max_fps": 10_000},
                "models": {"threads": threads},
                "gallery": {"path": f"{tmp}/gallery.db"},
                "mqtt": {"port": port, "protocol": protocol, "outbox": f"{tmp}/outbox"},
                "decision": {"votes_to_decide": 3, "window": 5, "max_missing": 1},
                "homeassistant": {"discovery": False},
            }
        )
        daemon = Daemon(config, ArraySource(clip))
        daemon.gallery.add("obama", [daemon.enroller.sample(PHOTOS / "obama.jpg")])
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)

        def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
            arrivals.append((time.time(), json.loads(message.payload)))
            if len(arrivals) >= tracks:
                done.set()

        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        sub.subscribe("facegate/bench/event", qos=1)
        sub.loop_start()
        time.sleep(0.3)
        started = time.perf_counter()
        daemon.run()
        elapsed = time.perf_counter() - started
        done.wait(30)
        sub.loop_stop()
        sub.disconnect()
    stop_broker()
    latencies = np.array([(t - e["frame_time"]) * 1000 for t, e in arrivals])
    return {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count()},
        "broker": broker,
        "tracks": tracks,
        "events_received": len(arrivals),
        "unique_event_ids": len({e["event_id"] for _, e in arrivals}),
        "latency_ms": {
            "median": float(np.median(latencies)),
            "p99": float(np.percentile(latencies, 99)),
            "max": float(latencies.max()),
        },
        "frames": len(clip),
        "frames_per_s": len(clip) / elapsed,
        "rss_mb": _rss_mb(),
    }


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child_daemon(
    images: list[np.ndarray], fps: float, seconds: float, sample_s: float, extra: dict[str, Any] | None = None
) -> list[dict[str, float]]:
    """Run ``facegate run`` on ``images`` (looped at ``fps``) for ``seconds``;
    sample its RSS and CPU time every ``sample_s`` seconds."""
    import subprocess
    import tempfile

    import yaml
    from PIL import Image

    from facegate.demo.broker import start_broker

    port, stop_broker, _, protocol = start_broker()
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / "frames"
        folder.mkdir()
        for n, image in enumerate(images):
            Image.fromarray(image).save(folder / f"{n:05d}.png")
        config: dict[str, Any] = {
            "device": {"id": "bench"},
            "camera": {"source": "folder", "path": str(folder), "loop": True, "max_fps": fps},
            "gallery": {"path": f"{tmp}/gallery.db"},
            "mqtt": {"port": port, "protocol": protocol, "outbox": f"{tmp}/outbox"},
        }
        for section, values in (extra or {}).items():
            config.setdefault(section, {}).update(values)
        (pathlib.Path(tmp) / "config.yaml").write_text(yaml.safe_dump(config))
        child = subprocess.Popen(
            [sys.executable, "-m", "facegate", "run", "--config", f"{tmp}/config.yaml"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(5)  # start-up (models, first frames) is not what is measured
        started, cpu0 = time.monotonic(), _cpu_s(child.pid)
        try:
            while (elapsed := time.monotonic() - started) < seconds:
                time.sleep(min(sample_s, seconds - elapsed))
                if child.poll() is not None:
                    raise RuntimeError(f"daemon exited with {child.returncode}")
                wall = time.monotonic() - started
                samples.append(
                    {
                        "s": round(wall),
                        "rss_mb": round(_rss_mb(child.pid), 1),
                        "cpu_percent": round(100 * (_cpu_s(child.pid) - cpu0) / wall, 1),
                    }
                )
        finally:
            child.terminate()
            child.wait(30)
    stop_broker()
    return samples


def bench_daemon_rss(minutes: float, fps: float = 10.0, sample_s: float = 30.0) -> dict[str, Any]:
    """Resident memory (and CPU) of a real ``facegate run`` process fed frames for ``minutes``:
    people coming and going (2 s a face, 1 s nobody), looped."""
    from facegate.demo import PHOTOS, scene
    from facegate.perception import Perception

    perception = Perception()
    blank = np.full((480, 640, 3), 96, np.uint8)
    images: list[np.ndarray] = []
    for photo in ("obama2.jpg", "biden.jpg", "obama3.jpg"):
        images += [scene(PHOTOS / photo, perception=perception)] * int(2 * fps) + [blank] * int(fps)
    return {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count()},
        "minutes": minutes,
        "fps": fps,
        "samples": _child_daemon(images, fps, minutes * 60, sample_s),
    }


def bench_daemon_idle(seconds: float = 60.0, fps: float = 10.0) -> dict[str, Any]:
    """CPU of a daemon watching an empty, still scene, with and without the motion gate."""
    still = np.full((480, 640, 3), 96, np.uint8)
    still[200:280, 300:340] = 140  # something in the room, not a face
    out = {}
    for name, threshold in (("motion_gate_on", 2.0), ("motion_gate_off", 0.0)):
        samples = _child_daemon([still], fps, seconds, seconds, {"idle": {"motion_threshold": threshold}})
        out[name] = samples[-1]["cpu_percent"]
    return {"fps": fps, "seconds": seconds, "cpu_percent": out}


def board() -> str:
    """The board's name where the kernel says it (a Raspberry Pi does), else the CPU's."""
    try:
        return pathlib.Path("/proc/device-tree/model").read_text().strip("\x00\n ")
    except OSError:
        return _cpu_name()


def summary_line(rounds: int = 3, runs: int = 20) -> str:
    """``facegate bench summary``: one line to paste back, the figures a Pi owner is asked
    for (docs/RASPBERRY_PI.md): per frame with one face (640x480) and per face, 1 and 2 threads."""
    import importlib.metadata

    from facegate.cli import DEFAULT_MODEL
    from facegate.interpreter import interpreter_class

    runtime, _ = interpreter_class()
    try:
        os_name = next(
            line.split("=", 1)[1].strip('"')
            for line in pathlib.Path("/etc/os-release").read_text().splitlines()
            if line.startswith("PRETTY_NAME=")
        )
    except (OSError, StopIteration):
        os_name = platform.system()
    perception = bench_perception(demo_frame(), [1, 2], runs, rounds)["results"]
    encoder = bench_encoders([DEFAULT_MODEL], [1, 2], [None], [], rounds, runs)["results"]
    parts = []
    for t in (1, 2):
        frame = next(
            r["median_ms"] for r in perception if r["threads"] == t and r["refine"] and r["stage"] == "total"
        )
        face = next(r["median_ms"] for r in encoder if r["threads"] == t)
        parts.append(
            f"{t} thread{'s' * (t > 1)}: find+align {frame:.1f} + encode {face:.1f} = {frame + face:.1f} ms"
        )
    return (
        f"facegate {importlib.metadata.version('facegate')} | {board()} ({os.cpu_count()} cores) | {os_name} "
        f"{platform.machine()} | Python {platform.python_version()}, {runtime} "
        f"{importlib.metadata.version(runtime)}, numpy {np.__version__} | 640x480, one face, int8, median of "
        f"{rounds}x{runs}: " + "; ".join(parts)
    )

"""``facegate bench``: speed and memory figures (BENCHMARKS.md); loaded only when asked for."""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

from facegate.cli import AT_LEAST_ZERO, COUNT, NON_NEGATIVE, POSITIVE, SHIPPED_ENCODERS
from facegate.wire import dumps

COMMANDS = ("bench",)


def _cmd_bench_encoder(args: argparse.Namespace) -> int:
    from facegate.bench.device import bench_encoders, format_table

    report = bench_encoders(
        args.model, args.threads, args.runtime or [None], args.python, args.rounds, args.runs
    )
    if args.json:
        print(dumps(report, indent=2))
    else:
        print(format_table(report))
    return 0


def _cmd_bench_perception(args: argparse.Namespace) -> int:
    from facegate.bench.device import bench_perception, demo_frame

    report = bench_perception(demo_frame(), args.threads, args.runs, args.rounds)
    if args.json:
        print(dumps(report, indent=2))
        return 0
    print(
        f"machine: {report['machine']['cpu']} ({report['machine']['cores']} cores), frame {report['frame']}"
    )
    print(f"{'threads':>7}  {'refine':<8}{'stage':<12}{'median ms':>10}{'p95 ms':>9}")
    for r in report["results"]:
        refine = "on" if r["refine"] else "off"
        print(f"{r['threads']:>7}  {refine:<8}{r['stage']:<12}{r['median_ms']:>10.2f}{r['p95_ms']:>9.2f}")
    return 0


def _cmd_bench_match(args: argparse.Namespace) -> int:
    from facegate.bench.device import bench_match

    report = bench_match(args.sizes, runs=args.runs)
    if args.json:
        print(dumps(report, indent=2))
        return 0
    print(
        f"machine: {report['machine']['cpu']} ({report['machine']['cores']} cores), 128-d float32 templates"
    )
    print(
        f"{'gallery':>9}{'median ms':>11}{'p95 ms':>9}{'matrix MB':>11}{'names MB':>10}{'call peak MB':>14}"
    )
    for r in report["results"]:
        print(
            f"{r['gallery']:>9}{r['median_ms']:>11.3f}{r['p95_ms']:>9.3f}{r['matrix_mb']:>11.1f}"
            f"{r['names_mb']:>10.1f}{r['per_call_peak_mb']:>14.2f}"
        )
    return 0


def _cmd_bench_fleet(args: argparse.Namespace) -> int:
    from facegate.bench.fleet import bench_fleet, format_fleet

    report = bench_fleet(
        args.people, args.devices, args.workers, max_queued=args.max_queued, resync_s=args.resync_s
    )
    print(dumps(report, indent=2) if args.json else format_fleet(report))
    return 0


def _cmd_bench_daemon(args: argparse.Namespace) -> int:
    from facegate.bench.device import bench_daemon_idle, bench_daemon_latency, bench_daemon_rss

    report: dict[str, Any] = {"latency": bench_daemon_latency(args.tracks, args.threads)}
    if args.rss_minutes > 0:
        report["rss"] = bench_daemon_rss(args.rss_minutes, args.fps)
    if args.idle_seconds > 0:
        report["idle"] = bench_daemon_idle(args.idle_seconds, args.fps)
    if args.json:
        print(dumps(report, indent=2))
        return 0
    lat = report["latency"]
    print(f"machine: {lat['machine']['cpu']} ({lat['machine']['cores']} cores), broker: {lat['broker']}")
    print(
        f"frame in -> event at subscriber, {lat['events_received']} of {lat['tracks']} tracks "
        f"({lat['unique_event_ids']} unique ids): median {lat['latency_ms']['median']:.1f} ms, "
        f"p99 {lat['latency_ms']['p99']:.1f} ms, max {lat['latency_ms']['max']:.1f} ms; "
        f"{lat['frames_per_s']:.1f} frames/s"
    )
    if "rss" in report:
        rss = report["rss"]
        trail = ", ".join(f"{s['s']}s {s['rss_mb']}MB" for s in rss["samples"])
        print(f"daemon RSS over {rss['minutes']} min at {rss['fps']} fps: {trail}")
        print(f"daemon CPU over that run: {rss['samples'][-1]['cpu_percent']}% of one core")
    if "idle" in report:
        idle = report["idle"]["cpu_percent"]
        print(
            f"still empty scene at {report['idle']['fps']} fps: CPU {idle['motion_gate_on']}% of one core "
            f"with the motion gate, {idle['motion_gate_off']}% without"
        )
    return 0


def _cmd_bench_standing(args: argparse.Namespace) -> int:
    from facegate.bench.door import bench_standing, standing_line

    report = bench_standing(args.seconds, args.fps, args.threads, args.rounds)
    print(dumps(report, indent=2) if args.json else standing_line(report))
    return 0


def _cmd_bench_latency(args: argparse.Namespace) -> int:
    from facegate.bench.door import bench_latency, latency_line

    report = bench_latency(
        args.threads, args.appearances, args.fps, args.camera_fps, args.rounds, args.present_s
    )
    print(dumps(report, indent=2) if args.json else latency_line(report))
    return 0


def _cmd_bench_summary(args: argparse.Namespace) -> int:
    from facegate.bench.device import summary_line

    print(summary_line(args.rounds, args.runs))
    return 0


def _cmd_bench_parity_collect(args: argparse.Namespace) -> int:
    from facegate.bench.parity import collect, save

    save(collect(args.images), args.out)
    print(f"parity: wrote {args.out}")
    return 0


def _cmd_bench_parity_compare(args: argparse.Namespace) -> int:
    from facegate.bench.parity import run_compare

    return run_compare(args.reference, args.other, args.markdown)


def add_commands(sub: Any) -> None:
    """Register ``bench`` and its stages on ``facegate``'s subparsers."""
    be = sub.add_parser("bench", help="print speed figures").add_subparsers(
        dest="what", required=True, metavar="STAGE"
    )
    p = be.add_parser("encoder", help="median ms per face: models x threads x runtimes")
    p.add_argument(
        "--model",
        type=pathlib.Path,
        nargs="+",
        default=SHIPPED_ENCODERS,
    )
    p.add_argument("--threads", type=COUNT, nargs="+", default=[1, 2])
    p.add_argument(
        "--runtime",
        nargs="+",
        choices=["ai-edge-litert", "tflite-runtime", "tensorflow"],
        help="runtimes in this interpreter (default: the one the device would pick)",
    )
    p.add_argument(
        "--python",
        nargs="*",
        default=[],
        help="other Python interpreters to time in the same rounds (e.g. a tflite-runtime venv)",
    )
    p.add_argument("--rounds", type=COUNT, default=3)
    p.add_argument("--runs", type=COUNT, default=40, help="timed faces per configuration per round")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench_encoder)
    p = be.add_parser(
        "perception",
        help="640x480 frame, one face: detect, refine, landmarks, align, total; refine off and on",
    )
    p.add_argument("--threads", type=COUNT, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=COUNT, default=3)
    p.add_argument("--runs", type=COUNT, default=30)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench_perception)
    p = be.add_parser("match", help="1:N identify latency and memory for growing galleries")
    p.add_argument("--sizes", type=COUNT, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    p.add_argument("--runs", type=COUNT, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench_match)
    p = be.add_parser("fleet", help="one authority, many simulated devices on mosquitto: convergence times")
    p.add_argument("--people", type=COUNT, default=10_000)
    p.add_argument("--devices", type=COUNT, default=100)
    p.add_argument("--workers", type=COUNT, default=2, help="processes the devices are spread over")
    p.add_argument(
        "--max-queued", type=AT_LEAST_ZERO, default=0, help="mosquitto max_queued_messages (0: no cap)"
    )
    p.add_argument("--resync-s", type=POSITIVE, default=30.0, help="devices re-fetch missing entries after")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench_fleet)
    p = be.add_parser("daemon", help="frame-to-subscriber latency over MQTT; daemon memory over time")
    p.add_argument("--tracks", type=COUNT, default=200)
    p.add_argument("--threads", type=COUNT, default=2)
    p.add_argument(
        "--rss-minutes", type=NON_NEGATIVE, default=0.0, help="also run a daemon this long and sample its RSS"
    )
    p.add_argument(
        "--idle-seconds", type=NON_NEGATIVE, default=0.0, help="also measure CPU on a still, empty scene"
    )
    p.add_argument("--fps", type=POSITIVE, default=10.0, help="frame rate for the RSS and idle runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench_daemon)
    p = be.add_parser(
        "standing",
        help="a known person standing in view: the daemon's CPU time, every frame vs followed; one line",
    )
    p.add_argument("--seconds", type=POSITIVE, default=60.0)
    p.add_argument("--fps", type=POSITIVE, default=10.0, help="frames per second of standing (fed unpaced)")
    p.add_argument("--threads", type=COUNT, default=1)
    p.add_argument("--rounds", type=COUNT, default=2)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench_standing)
    p = be.add_parser(
        "latency", help="a person appears -> their event at a subscriber, median and p95; one line"
    )
    p.add_argument("--threads", type=COUNT, nargs="+", default=[1, 2])
    p.add_argument("--appearances", type=COUNT, default=10)
    p.add_argument("--fps", type=POSITIVE, default=10.0, help="the daemon's camera.max_fps")
    p.add_argument("--camera-fps", type=POSITIVE, default=30.0, help="the simulated camera's frame rate")
    p.add_argument(
        "--present-s",
        type=POSITIVE,
        default=1.0,
        help="seconds the person stays in view each time (longer on a board slower than 3 frames a second)",
    )
    p.add_argument("--rounds", type=COUNT, default=1)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench_latency)
    p = be.add_parser("summary", help="one line to paste back: this board's time per frame and per face")
    p.add_argument("--rounds", type=COUNT, default=3)
    p.add_argument("--runs", type=COUNT, default=20)
    p.set_defaults(func=_cmd_bench_summary)
    pa = be.add_parser(
        "parity", help="the same images on two machines: chips, embeddings, decisions (scripts/pi-check)"
    ).add_subparsers(dest="step", required=True, metavar="STEP")
    p = pa.add_parser("collect", help="run images through the device pipeline, keep every stage's output")
    p.add_argument("images", type=pathlib.Path, nargs="+", help="image files or folders")
    p.add_argument("--out", type=pathlib.Path, required=True, help="the .npz to write")
    p.set_defaults(func=_cmd_bench_parity_collect)
    p = pa.add_parser("compare", help="set other machines' files beside a reference; exit 1 on a flip")
    p.add_argument("reference", type=pathlib.Path)
    p.add_argument("other", nargs="+", help="NAME=FILE.npz (or FILE.npz)")
    p.add_argument("--markdown", type=pathlib.Path, help="also write the report here")
    p.set_defaults(func=_cmd_bench_parity_compare)

"""The ``facegate`` command: parse arguments, configure logging, dispatch.

Workstation subcommands (convert, evaluate) import ``convert`` and TensorFlow
lazily, so the device never needs them.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from edge import __version__
from edge.errors import FacegateError
from edge.modelcard import MODELS_DIR

DEFAULT_MODEL = MODELS_DIR / "dlib_resnet_v1_int8.tflite"

log = logging.getLogger("facegate")


def _cmd_convert_dlib(args: argparse.Namespace) -> int:
    from convert.dlib_convert import convert_dlib

    cards = convert_dlib(args.dat, args.out, args.calibration)
    for card in cards:
        print(f"{args.out / card['file']}  {card['bytes']} bytes  sha256 {card['sha256']}")
    return 0


def _chip_source(args: argparse.Namespace, pick: str) -> Any:
    from convert.evaluate import DetectAlign, FixedCrop
    from edge.perception import Perception

    if args.alignment == "fixed-crop":
        return FixedCrop()
    if args.alignment == "given":
        from convert.evaluate import GivenLandmarks

        if args.landmarks is None:
            raise FacegateError("--alignment given needs --landmarks FILE.npz")
        return GivenLandmarks(args.landmarks, args.landmarks.name)
    from edge.perception import Gates

    detector = MODELS_DIR / f"face_detection_{args.detector}_range.tflite"
    gates = Gates(min_eye_distance=0.0, max_yaw=float("inf"), min_sharpness=0.0) if args.no_gates else None
    return DetectAlign(Perception(detector=detector, gates=gates, num_threads=args.threads), pick=pick)


def _cmd_convert_perception(args: argparse.Namespace) -> int:
    from convert.perception_convert import convert_perception

    for card in convert_perception(args.out):
        print(f"{args.out / card['file']}  {card['bytes']} bytes  sha256 {card['sha256']}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from edge.demo import run_demo

    return run_demo(args.model)


def _cmd_evaluate_pairs(args: argparse.Namespace) -> int:
    from convert.evaluate import evaluate_pairs
    from edge.encoder import Encoder

    encoder = Encoder(args.model, num_threads=args.threads)
    result = evaluate_pairs(encoder, args.root, args.pairs, _chip_source(args, "central"))
    _print_result(result, args.json)
    return 0


def _cmd_evaluate_identify(args: argparse.Namespace) -> int:
    from convert.identify import evaluate_identify
    from edge.encoder import Encoder

    encoder = Encoder(args.model, num_threads=args.threads)
    source = _chip_source(args, "largest")
    result = evaluate_identify(encoder, args.root, source, seed=args.seed)
    _print_result(result, args.json)
    return 0


def _cmd_evaluate_parity(args: argparse.Namespace) -> int:
    from convert.dlib_convert import parity

    result = {str(m): parity(m, start=args.start) for m in args.model}
    _print_result(result, args.json)
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from convert.calibrate import calibrate
    from edge.encoder import Encoder

    encoder = Encoder(args.model, num_threads=args.threads)
    entry = calibrate(
        encoder,
        args.root,
        args.pairs,
        _chip_source(args, "central"),
        args.far,
        write=not args.dry_run,
    )
    _print_result(entry, args.json)
    if not args.dry_run:
        print(f"wrote thresholds.far_{args.far:g} to {encoder.card.path}", file=sys.stderr)
    return 0


def _cmd_bench_encoder(args: argparse.Namespace) -> int:
    from edge.bench import bench_encoders, format_table

    report = bench_encoders(
        args.model, args.threads, args.runtime or [None], args.python, args.rounds, args.runs
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
    return 0


def _cmd_bench_perception(args: argparse.Namespace) -> int:
    from edge.bench import bench_perception, demo_frame

    report = bench_perception(demo_frame(), args.threads, args.runs, args.rounds)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"machine: {report['machine']['cpu']} ({report['machine']['cores']} cores), frame {report['frame']}"
    )
    print(f"{'threads':>7}  {'stage':<14}{'median ms':>10}{'p95 ms':>9}")
    for r in sorted(report["results"], key=lambda r: (r["threads"], r["stage"])):
        print(f"{r['threads']:>7}  {r['stage']:<14}{r['median_ms']:>10.2f}{r['p95_ms']:>9.2f}")
    return 0


def _print_result(result: object, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items() if isinstance(result, dict) else []:
            print(f"{key}: {value}")


def _add_pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=pathlib.Path, default=DEFAULT_MODEL)
    p.add_argument(
        "--alignment",
        choices=["detect", "fixed-crop", "given"],
        default="detect",
        help="detect + align faces (default); lfw's fixed crop, or landmarks from --landmarks "
        "(for comparison)",
    )
    p.add_argument("--landmarks", type=pathlib.Path, help="with --alignment given: .npz of paths, landmarks5")
    p.add_argument("--detector", choices=["short", "full"], default="short", help="BlazeFace range")
    p.add_argument(
        "--no-gates", action="store_true", help="keep faces that fail the quality gates (size, yaw, blur)"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facegate", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"facegate {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    conv = sub.add_parser("convert", help="workstation: build the device's models").add_subparsers(
        dest="what", required=True, metavar="SOURCE"
    )
    p = conv.add_parser("dlib", help="dlib's ResNet .dat -> float32 + int8 TFLite with model cards")
    p.add_argument("--dat", type=pathlib.Path, help="the .dat (default: from face-recognition-models)")
    p.add_argument("--out", type=pathlib.Path, default=MODELS_DIR, help="output folder (default: models/)")
    p.add_argument("--calibration", type=int, default=200, help="int8 calibration chips (default 200)")
    p.set_defaults(func=_cmd_convert_dlib)

    p = conv.add_parser("perception", help="BlazeFace detectors + dlib 5-point landmarks into models/")
    p.add_argument("--out", type=pathlib.Path, default=MODELS_DIR, help="output folder (default: models/)")
    p.set_defaults(func=_cmd_convert_perception)

    p = sub.add_parser("demo", help="enroll from a bundled photo, verify the others (no set-up needed)")
    p.add_argument("--model", type=pathlib.Path, default=DEFAULT_MODEL)
    p.set_defaults(func=_cmd_demo)

    ev = sub.add_parser("evaluate", help="workstation: accuracy of a model").add_subparsers(
        dest="what", required=True, metavar="PROTOCOL"
    )
    p = ev.add_parser("pairs", help="10-fold verification accuracy on LFW-format pairs")
    p.add_argument("--root", type=pathlib.Path, required=True, help="image folder (name/name_0001.jpg)")
    p.add_argument("--pairs", type=pathlib.Path, required=True, help="pairs.txt")
    _add_pipeline_args(p)
    p.set_defaults(func=_cmd_evaluate_pairs)
    p = ev.add_parser("identify", help="one-shot open-set identification on identity folders")
    p.add_argument("--root", type=pathlib.Path, required=True, help="one folder per identity")
    p.add_argument("--seed", type=int, default=0, help="which half of the identities is left out")
    _add_pipeline_args(p)
    p.set_defaults(func=_cmd_evaluate_identify)
    p = ev.add_parser("parity", help="cosine to dlib's descriptors on the shared reference chips")
    p.add_argument(
        "--model",
        type=pathlib.Path,
        nargs="+",
        default=[MODELS_DIR / "dlib_resnet_v1_float32.tflite", DEFAULT_MODEL],
    )
    p.add_argument("--start", type=int, default=0, help="first reference row (200 = held out of calibration)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_evaluate_parity)

    p = sub.add_parser("calibrate", help="workstation: threshold for a target FAR, into the model card")
    p.add_argument("--root", type=pathlib.Path, required=True, help="image folder (name/name_0001.jpg)")
    p.add_argument("--pairs", type=pathlib.Path, required=True, help="pairs.txt")
    p.add_argument("--far", type=float, default=1e-3, help="target false accept rate (default 1e-3)")
    p.add_argument("--dry-run", action="store_true", help="print, do not write the card")
    _add_pipeline_args(p)
    p.set_defaults(func=_cmd_calibrate)

    be = sub.add_parser("bench", help="print speed figures").add_subparsers(
        dest="what", required=True, metavar="STAGE"
    )
    p = be.add_parser("encoder", help="median ms per face: models x threads x runtimes")
    p.add_argument(
        "--model",
        type=pathlib.Path,
        nargs="+",
        default=[MODELS_DIR / "dlib_resnet_v1_float32.tflite", DEFAULT_MODEL],
    )
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
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
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=40, help="timed faces per configuration per round")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench_encoder)
    p = be.add_parser("perception", help="640x480 frame, one face: detector, landmarks, warp, total")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench_perception)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except FacegateError as exc:
        print(f"facegate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facegate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

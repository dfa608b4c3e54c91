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

from edge import __version__
from edge.errors import FacegateError

MODELS_DIR = pathlib.Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = MODELS_DIR / "dlib_resnet_v1_int8.tflite"

log = logging.getLogger("facegate")


def _cmd_convert_dlib(args: argparse.Namespace) -> int:
    from convert.dlib_convert import convert_dlib

    cards = convert_dlib(args.dat, args.out, args.calibration)
    for card in cards:
        print(f"{args.out / card['file']}  {card['bytes']} bytes  sha256 {card['sha256']}")
    return 0


def _cmd_evaluate_pairs(args: argparse.Namespace) -> int:
    from convert.evaluate import FixedCrop, evaluate_pairs
    from edge.encoder import Encoder

    encoder = Encoder(args.model, num_threads=args.threads)
    result = evaluate_pairs(encoder, args.root, args.pairs, FixedCrop())
    _print_result(result, args.json)
    return 0


def _cmd_evaluate_parity(args: argparse.Namespace) -> int:
    from convert.dlib_convert import parity

    result = {str(m): parity(m, start=args.start) for m in args.model}
    _print_result(result, args.json)
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


def _print_result(result: object, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items() if isinstance(result, dict) else []:
            print(f"{key}: {value}")


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

    ev = sub.add_parser("evaluate", help="workstation: accuracy of a model").add_subparsers(
        dest="what", required=True, metavar="PROTOCOL"
    )
    p = ev.add_parser("pairs", help="10-fold verification accuracy on LFW-format pairs")
    p.add_argument("--root", type=pathlib.Path, required=True, help="image folder (name/name_0001.jpg)")
    p.add_argument("--pairs", type=pathlib.Path, required=True, help="pairs.txt")
    p.add_argument("--model", type=pathlib.Path, default=DEFAULT_MODEL)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_evaluate_pairs)
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

"""``facegate convert | train | evaluate | calibrate``: the workstation's commands.

``facegate.cli`` loads this module only when one of these commands is asked for, and each
command imports TensorFlow (or whatever it needs) only when it runs: the device runtime
never imports the workstation side.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

from facegate.cli import (
    AT_LEAST_ZERO,
    COUNT,
    DEFAULT_MODEL,
    NON_NEGATIVE,
    POSITIVE,
    RATE,
    SHIPPED_ENCODERS,
    print_result,
)
from facegate.errors import FacegateError
from facegate.modelcard import MODELS_DIR

COMMANDS = ("convert", "train", "evaluate", "calibrate")


def _cmd_convert_dlib(args: argparse.Namespace) -> int:
    from facegate.convert.dlib_convert import convert_dlib

    cards = convert_dlib(args.dat, args.out, args.calibration)
    for card in cards:
        print(f"{args.out / card['file']}  {card['bytes']} bytes  sha256 {card['sha256']}")
    return 0


def _chip_source(args: argparse.Namespace, pick: str) -> Any:
    from facegate.convert.evaluate import DetectAlign, FixedCrop
    from facegate.perception import Perception

    if args.alignment == "fixed-crop":
        return FixedCrop()
    if args.alignment == "given":
        from facegate.convert.evaluate import GivenLandmarks

        if args.landmarks is None:
            raise FacegateError("--alignment given needs --landmarks FILE.npz")
        return GivenLandmarks(args.landmarks, args.landmarks.name)
    from facegate.modelcard import load_card
    from facegate.perception import Gates

    card = load_card(args.model.with_suffix(".json"))  # the encoder's chip size and padding
    gates = Gates(min_eye_distance=0.0, max_yaw=float("inf"), min_sharpness=0.0) if args.no_gates else None
    perception = Perception.for_encoder(
        card, detector=args.detector, threads=args.threads, refine=args.refine == "on", gates=gates
    )
    return DetectAlign(perception, pick=pick)


def _cmd_convert_perception(args: argparse.Namespace) -> int:
    from facegate.convert.perception_convert import convert_perception

    for card in convert_perception(args.out):
        print(f"{args.out / card['file']}  {card['bytes']} bytes  sha256 {card['sha256']}")
    return 0


def _cmd_evaluate_pairs(args: argparse.Namespace) -> int:
    from facegate.convert.evaluate import evaluate_pairs
    from facegate.encoder import Encoder

    encoder = Encoder(args.model, num_threads=args.threads)
    result = evaluate_pairs(
        encoder,
        args.root,
        args.pairs,
        _chip_source(args, "central"),
        folds=_folds(args),
        all_pairs=args.all_pairs,
        far=args.far,
    )
    print_result(result, args.json)
    return 0


def _cmd_evaluate_identify(args: argparse.Namespace) -> int:
    """``evaluate identify`` and ``evaluate corrections``: the same folders, two protocols."""
    from facegate.convert.corrections import evaluate_corrections
    from facegate.convert.identify import evaluate_identify
    from facegate.encoder import Encoder

    encoder = Encoder(args.model, num_threads=args.threads)
    source = _chip_source(args, "largest")
    if args.what == "corrections":
        result = evaluate_corrections(encoder, args.root, source, seed=args.seed, far=args.far)
    else:
        result = evaluate_identify(
            encoder, args.root, source, seed=args.seed, far=args.far, strangers=args.strangers
        )
    print_result(result, args.json)
    return 0


def _cmd_evaluate_report(args: argparse.Namespace) -> int:
    from facegate.convert.report import build_report

    result = build_report(args.model, args.root, args.pairs, args.out, _folds(args), args.threads)
    print_result(result, args.json)
    return 0


def _cmd_evaluate_parity(args: argparse.Namespace) -> int:
    from facegate.convert.dlib_convert import parity

    result = {str(m): parity(m, start=args.start) for m in args.model}
    print_result(result, args.json)
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from facegate.convert.calibrate import calibrate
    from facegate.encoder import Encoder

    encoder = Encoder(args.model, num_threads=args.threads)
    source = _chip_source(args, "central")
    if args.track_frames:
        from facegate.convert.calibrate import calibrate_tracks

        entry = calibrate_tracks(
            encoder,
            args.root,
            args.pairs,
            source,
            args.far,
            args.track_frames,
            not args.dry_run,
            _folds(args),
        )
        key = "track_thresholds"
    else:
        entry = calibrate(
            encoder,
            args.root,
            args.pairs,
            source,
            args.far,
            write=not args.dry_run,
            folds=_folds(args),
            all_pairs=args.all_pairs,
        )
        key = "thresholds"
    print_result(entry, args.json)
    if not args.dry_run:
        print(f"wrote {key}.far_{args.far:g} to {encoder.card.path}", file=sys.stderr)
    return 0


def _cmd_convert_head(args: argparse.Namespace) -> int:
    from facegate.convert.head import train_heads
    from facegate.encoder import Encoder

    encoder = Encoder(args.model, num_threads=args.threads)
    source = _chip_source(args, "central")
    report = train_heads(encoder, args.root, args.pairs, source, write=not args.dry_run)
    print_result(report, args.json)
    return 0


def _folds(args: argparse.Namespace) -> set[int] | None:
    from facegate.convert.evaluate import parse_folds

    return parse_folds(args.folds) if args.folds else None


def _add_pairs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=pathlib.Path, required=True, help="image folder (name/name_0001.jpg)")
    p.add_argument("--pairs", type=pathlib.Path, required=True, help="pairs.txt")
    p.add_argument("--folds", help="only these folds of the pairs file, e.g. 0-4 or 5,6,7")
    p.add_argument(
        "--all-pairs",
        action="store_true",
        help="every pair among the images of identities only the selected folds name (not the listed pairs)",
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from facegate.convert.training_data import run_training

    report = run_training(args)
    print_result(report, args.json)
    return 0


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
        "--refine",
        choices=["on", "off"],
        default="on",
        help="detect each face again on a crop around it before its landmarks, as the device "
        "does (models.refine); off: the whole-frame detection only",
    )
    p.add_argument(
        "--no-gates", action="store_true", help="keep faces that fail the quality gates (size, yaw, blur)"
    )
    p.add_argument("--threads", type=COUNT, default=2)
    p.add_argument("--json", action="store_true")


def add_commands(sub: Any) -> None:
    """Register this group's commands on ``facegate``'s subparsers."""
    conv = sub.add_parser("convert", help="workstation: build the device's models").add_subparsers(
        dest="what", required=True, metavar="SOURCE"
    )
    p = conv.add_parser("dlib", help="dlib's ResNet .dat -> float32 + int8 TFLite with model cards")
    p.add_argument("--dat", type=pathlib.Path, help="the .dat (default: from face-recognition-models)")
    p.add_argument("--out", type=pathlib.Path, default=MODELS_DIR, help="output folder (default: models/)")
    p.add_argument("--calibration", type=COUNT, default=200, help="int8 calibration chips (default 200)")
    p.set_defaults(func=_cmd_convert_dlib)

    p = conv.add_parser("perception", help="BlazeFace detectors + dlib 5-point landmarks into models/")
    p.add_argument("--out", type=pathlib.Path, default=MODELS_DIR, help="output folder (default: models/)")
    p.set_defaults(func=_cmd_convert_perception)

    p = conv.add_parser("head", help="distance vs logistic heads on |f(a)-f(b)|, chi-square; into the card")
    p.add_argument("--root", type=pathlib.Path, required=True, help="image folder (name/name_0001.jpg)")
    p.add_argument("--pairs", type=pathlib.Path, required=True, help="pairs.txt (10 folds)")
    p.add_argument("--dry-run", action="store_true", help="print, do not write the card")
    _add_pipeline_args(p)
    p.set_defaults(func=_cmd_convert_head)

    p = sub.add_parser("train", help="workstation: train an encoder (triplet loss, optional distillation)")
    p.add_argument("--root", type=pathlib.Path, required=True, help="identity folders (e.g. lfw-dev)")
    p.add_argument(
        "--pairs", type=pathlib.Path, help="pairs file whose --holdout-folds are kept out and validated on"
    )
    p.add_argument(
        "--holdout-folds", default="5-9", help="folds of --pairs whose identities are never trained on"
    )
    p.add_argument("--extra", type=pathlib.Path, nargs="*", default=[], help="more identity-folder datasets")
    p.add_argument(
        "--unlabelled", type=pathlib.Path, nargs="*", default=[], help="folders of unlabelled photos"
    )
    p.add_argument("--mode", choices=["triplet", "distill"], default="distill")
    p.add_argument("--epochs", type=COUNT, default=30)
    p.add_argument("--steps-per-epoch", type=AT_LEAST_ZERO, default=0, help="0: one pass over the faces")
    p.add_argument("--size", type=COUNT, default=96, help="chip size of the student (px)")
    p.add_argument("--width", type=POSITIVE, default=1.0, help="channel width multiplier")
    p.add_argument("--miner", choices=["batch-hard", "batch-all"], default="batch-hard")
    p.add_argument("--margin", type=NON_NEGATIVE, default=0.2)
    p.add_argument("--lr", type=POSITIVE, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=pathlib.Path, required=True, help="run folder: checkpoints, history.json")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--stop-after", type=COUNT, help="end this call after N epochs (resume later)")
    p.add_argument("--cache", type=pathlib.Path, default=pathlib.Path.home() / ".cache" / "facegate")
    p.add_argument(
        "--export", type=pathlib.Path, help="write the int8 model and its card here (e.g. models/)"
    )
    p.add_argument("--name", default="facegate_student_v1")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_train)

    ev = sub.add_parser("evaluate", help="workstation: accuracy of a model").add_subparsers(
        dest="what", required=True, metavar="PROTOCOL"
    )
    p = ev.add_parser("pairs", help="10-fold verification accuracy on LFW-format pairs")
    _add_pairs_args(p)
    p.add_argument("--far", type=RATE, default=1e-3, help="operating point to report (default 1e-3)")
    _add_pipeline_args(p)
    p.set_defaults(func=_cmd_evaluate_pairs)
    for protocol, what in (
        ("identify", "one-shot open-set identification on identity folders"),
        ("corrections", "replay 'that was not alice' corrections on identity folders"),
    ):
        p = ev.add_parser(protocol, help=what)
        p.add_argument("--root", type=pathlib.Path, required=True, help="one folder per identity")
        p.add_argument("--seed", type=int, default=0, help="which half of the identities is left out")
        p.add_argument("--far", type=RATE, default=1e-3, help="operating point to report (default 1e-3)")
        if protocol == "identify":
            p.add_argument(
                "--strangers",
                type=pathlib.Path,
                help="identity folders of other people: every image a stranger probe, every --root "
                "identity enrolled; figures with 95%% bootstrap intervals",
            )
        _add_pipeline_args(p)
        p.set_defaults(func=_cmd_evaluate_identify)
    p = ev.add_parser("report", help="Markdown report with ROC/DET curves and histograms for several models")
    p.add_argument("--root", type=pathlib.Path, required=True)
    p.add_argument("--pairs", type=pathlib.Path, required=True)
    p.add_argument("--folds", help="only these folds, e.g. 5-9")
    p.add_argument("--model", type=pathlib.Path, nargs="+", default=[DEFAULT_MODEL])
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("docs/report"))
    p.add_argument("--threads", type=COUNT, default=1)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_evaluate_report)
    p = ev.add_parser("parity", help="cosine to dlib's descriptors on the shared reference chips")
    p.add_argument(
        "--model",
        type=pathlib.Path,
        nargs="+",
        default=SHIPPED_ENCODERS,
    )
    p.add_argument(
        "--start", type=AT_LEAST_ZERO, default=0, help="first reference row (200 = held out of calibration)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_evaluate_parity)

    p = sub.add_parser("calibrate", help="workstation: threshold for a target FAR, into the model card")
    _add_pairs_args(p)
    p.add_argument("--far", type=RATE, default=1e-3, help="target false accept rate (default 1e-3)")
    p.add_argument("--dry-run", action="store_true", help="print, do not write the card")
    p.add_argument(
        "--track-frames",
        type=COUNT,
        help="calibrate the threshold for decision.aggregate: mean over this many faces of a track "
        "(tracks of photos of the identities only --folds name; written to track_thresholds)",
    )
    _add_pipeline_args(p)
    p.set_defaults(func=_cmd_calibrate)

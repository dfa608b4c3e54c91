"""``facegate train`` end to end: which faces train, which validate, then train and export.

Held-out identities: every identity named by the ``--holdout-folds`` of the
pairs file is left out of training entirely (all its images), and those
folds' pairs are the validation set, scored each epoch with the 10-fold
protocol restricted to them. So validation faces are of people the network
never saw.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

import numpy as np

from facegate.convert.evaluate import parse_folds, parse_pairs
from facegate.convert.facebank import FaceBank, Source, build
from facegate.convert.train import PairSet, TrainConfig, export_student, train
from facegate.errors import FacegateError


def holdout_sets(
    root: pathlib.Path, pairs_file: pathlib.Path, folds: set[int]
) -> tuple[frozenset[str], list[Any]]:
    """(every image of the held-out identities, the held-out pairs)."""
    pairs = [p for p in parse_pairs(pairs_file) if p.fold in folds]
    if not pairs:
        raise FacegateError(f"{pairs_file}: no pairs in folds {sorted(folds)}")
    people = {x.split("/", 1)[0] for p in pairs for x in (p.a, p.b)}
    images = frozenset(f"{i}/{f.name}" for i in people for f in (root / i).iterdir() if f.is_file())
    return images, pairs


def validation_pairs(root: pathlib.Path, pairs: list[Any], size: int, cache: pathlib.Path) -> PairSet:
    wanted = {x for p in pairs for x in (p.a, p.b)}
    every = {f.relative_to(root).as_posix() for f in root.rglob("*") if f.is_file()}
    bank = build([Source(root, True, frozenset(every - wanted))], size, cache)
    where = {str(path).split("/", 1)[1]: k for k, path in enumerate(bank.paths)}
    blank = len(bank.chips)  # an image without a usable face: a blank chip, almost surely a wrong answer
    chips = np.concatenate([bank.chips, np.zeros_like(bank.chips[:1])])
    a = np.array([where.get(p.a, blank) for p in pairs])
    b = np.array([where.get(p.b, blank) for p in pairs])
    return PairSet(chips, a, b, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]))


def run_training(args: argparse.Namespace) -> dict[str, Any]:
    config = TrainConfig(
        mode=args.mode,
        size=args.size,
        width=args.width,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        miner=args.miner,
        margin=args.margin,
        learning_rate=args.lr,
        seed=args.seed,
    )
    held_out: frozenset[str] = frozenset()
    val = None
    if args.pairs:
        held_out, pairs = holdout_sets(args.root, args.pairs, parse_folds(args.holdout_folds))
        val = validation_pairs(args.root, pairs, config.size, args.cache)
    sources = [Source(args.root, True, held_out)] + [Source(d, True) for d in args.extra]
    sources += [Source(d, False) for d in args.unlabelled]
    bank: FaceBank = build(sources, config.size, args.cache, all_faces=[d.name for d in args.unlabelled])
    if config.mode == "triplet":
        bank = bank.subset(bank.labels >= 0)
    labelled = int((bank.labels >= 0).sum())
    result = train(config, bank, args.out, val, resume=args.resume, stop_after=args.stop_after)
    report: dict[str, Any] = {
        "faces": len(bank),
        "labelled_faces": labelled,
        "identities": len(np.unique(bank.labels[bank.labels >= 0])),
        "held_out_images": len(held_out),
        "validation_pairs": 0 if val is None else len(val.same),
        "epochs": len(result["history"]),
        "last_epoch": result["history"][-1] if result["history"] else None,
        "seconds_per_epoch": float(np.mean([h["seconds"] for h in result["history"]]))
        if result["history"]
        else 0,
        "model": result["model"],
    }
    if args.export:
        rng = np.random.default_rng(config.seed)
        calibration = bank.chips[rng.choice(len(bank), min(300, len(bank)), replace=False)]
        card = export_student(
            pathlib.Path(result["model"]),
            calibration,
            args.export,
            args.name,
            config,
            {
                "command": "facegate train " + " ".join(_argv(args)),
                "faces": len(bank),
                "labelled_faces": labelled,
                "held_out": f"every identity in folds {args.holdout_folds} of {args.pairs}"
                if args.pairs
                else None,
                "history": result["history"],
                "teacher": "models/dlib_resnet_v1_int8.tflite" if config.mode == "distill" else None,
                "calibration": f"{len(calibration)} training chips (int8 ranges)",
            },
        )
        report["exported"] = {"file": card["file"], "bytes": card["bytes"], "sha256": card["sha256"]}
    return report


def _argv(args: argparse.Namespace) -> list[str]:
    out = []
    for key, value in sorted(vars(args).items()):
        if key in ("func", "json", "verbose", "command", "resume") or value in (None, False, []):
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif isinstance(value, list):
            out += [flag, *map(str, value)]
        else:
            out += [flag, str(value)]
    return out

"""The ``facegate`` command: parse arguments, configure logging, dispatch.

Workstation subcommands (convert, evaluate) import ``convert`` and TensorFlow
lazily, so the device never needs them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import pathlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from edge import __version__
from edge.errors import FacegateError
from edge.modelcard import MODELS_DIR
from edge.wire import dumps

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
    from edge.modelcard import load_card
    from edge.perception import Gates

    card = load_card(args.model.with_suffix(".json"))  # the encoder's chip size and padding
    detector = MODELS_DIR / f"face_detection_{args.detector}_range.tflite"
    gates = Gates(min_eye_distance=0.0, max_yaw=float("inf"), min_sharpness=0.0) if args.no_gates else None
    perception = Perception(
        detector=detector,
        gates=gates,
        num_threads=args.threads,
        chip_size=card.chip_size,
        padding=card.chip_padding,
        refine=args.refine == "on",
    )
    return DetectAlign(perception, pick=pick)


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
    result = evaluate_pairs(
        encoder,
        args.root,
        args.pairs,
        _chip_source(args, "central"),
        folds=_folds(args),
        all_pairs=args.all_pairs,
        far=args.far,
    )
    _print_result(result, args.json)
    return 0


def _cmd_evaluate_identify(args: argparse.Namespace) -> int:
    from convert.identify import evaluate_identify
    from edge.encoder import Encoder

    encoder = Encoder(args.model, num_threads=args.threads)
    source = _chip_source(args, "largest")
    result = evaluate_identify(encoder, args.root, source, seed=args.seed, far=args.far)
    _print_result(result, args.json)
    return 0


def _cmd_evaluate_report(args: argparse.Namespace) -> int:
    from convert.report import build_report

    result = build_report(args.model, args.root, args.pairs, args.out, _folds(args), args.threads)
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
        folds=_folds(args),
        all_pairs=args.all_pairs,
    )
    _print_result(entry, args.json)
    if not args.dry_run:
        print(f"wrote thresholds.far_{args.far:g} to {encoder.card.path}", file=sys.stderr)
    return 0


def _cmd_convert_head(args: argparse.Namespace) -> int:
    from convert.head import train_heads
    from edge.encoder import Encoder

    encoder = Encoder(args.model, num_threads=args.threads)
    source = _chip_source(args, "central")
    report = train_heads(encoder, args.root, args.pairs, source, write=not args.dry_run)
    _print_result(report, args.json)
    return 0


def _folds(args: argparse.Namespace) -> set[int] | None:
    from convert.evaluate import parse_folds

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


def default_gallery() -> pathlib.Path:
    """$FACEGATE_GALLERY, else $XDG_DATA_HOME/facegate/gallery.db (~/.local/share/...)."""
    if os.environ.get("FACEGATE_GALLERY"):
        return pathlib.Path(os.environ["FACEGATE_GALLERY"])
    data = os.environ.get("XDG_DATA_HOME") or str(pathlib.Path.home() / ".local" / "share")
    return pathlib.Path(data) / "facegate" / "gallery.db"


def _open_gallery(args: argparse.Namespace, create: bool = False, any_model: bool = False) -> Any:
    from edge.enroll import fingerprint
    from edge.gallery import Gallery

    return Gallery.open(args.gallery, fingerprint(_encoder(args)), create=create, any_model=any_model)


def _encoder(args: argparse.Namespace) -> Any:
    from edge.encoder import Encoder

    if getattr(args, "_encoder", None) is None:
        args._encoder = Encoder(args.model, num_threads=args.threads)
    return args._encoder


def _enroller(args: argparse.Namespace) -> Any:
    from edge.enroll import Enroller
    from edge.perception import Perception

    encoder = _encoder(args)
    card = encoder.card
    return Enroller(
        Perception(num_threads=args.threads, chip_size=card.chip_size, padding=card.chip_padding), encoder
    )


def _cmd_enroll(args: argparse.Namespace) -> int:
    if bool(args.dir) == bool(args.name):
        raise FacegateError("give NAME IMAGE... or --dir DIR (one sub-folder per person), not both")
    if args.name and not args.images:
        raise FacegateError(f"no images given for {args.name!r}")
    enroller = _enroller(args)
    with _open_gallery(args, create=True) as gallery:
        if args.dir:
            outcomes = enroller.enroll_dir(gallery, args.dir, args.keep_images, args.replace)
        else:
            outcomes = [
                enroller.enroll(
                    gallery, args.name, args.images, args.keep_images, args.replace, args.display_name
                )
            ]
    failed = 0
    for o in outcomes:
        for reason in o.refused:
            print(f"refused: {reason}", file=sys.stderr)
        if o.person is None:
            failed += 1
            print(f"{o.name}: NOT enrolled (no usable image)", file=sys.stderr)
        else:
            print(f"{o.name}: +{o.added} embedding(s), {o.person.embeddings} in all")
    return 1 if failed else 0


def _cmd_gallery(args: argparse.Namespace) -> int:
    action = args.action
    if action == "rebuild":
        from edge.enroll import rebuild

        with _open_gallery(args, any_model=True) as gallery:
            count = rebuild(gallery, _enroller(args))
        print(f"rebuilt {count} embedding(s) with {args.model.name}")
        return 0
    with _open_gallery(args, any_model=action == "list") as gallery:
        if action == "list":
            people = gallery.people()
            if args.json:
                print(dumps([dataclasses.asdict(p) for p in people], indent=2))
            else:
                print(f"{gallery.path}: {len(people)} people, model {gallery.model.name}")
                for p in people:
                    extra = f" ({p.display_name})" if p.display_name != p.name else ""
                    print(f"  {p.name}{extra}: {p.embeddings} embedding(s), {p.images} kept image(s)")
        elif action == "remove":
            for name in args.names:
                gallery.remove(name)
                print(f"removed {name}")
        elif action == "rename":
            gallery.rename(args.old, args.new)
            print(f"renamed {args.old} -> {args.new}")
        elif action == "export":
            count = gallery.export(args.file, images=args.images)
            print(f"exported {count} people to {args.file} (private: contains biometric data)")
        elif action == "import":
            imported, skipped = gallery.import_(args.file, replace=args.replace)
            print(f"imported {len(imported)} people")
            for name in skipped:
                print(f"skipped {name}: already enrolled (use --replace)", file=sys.stderr)
    return 0


def _probe(args: argparse.Namespace) -> tuple[Any, Any]:
    from edge.decide import OperatingPoint
    from edge.images import load_rgb

    encoder = _encoder(args)
    face = _enroller(args)
    sample = face.sample_from_rgb(load_rgb(args.image), str(args.image))
    return sample.vector, OperatingPoint.from_card(encoder.card, args.far)


def _cmd_verify(args: argparse.Namespace) -> int:
    from edge.decide import verify

    embedding, op = _probe(args)
    with _open_gallery(args) as gallery:
        result = verify(gallery.templates(), embedding, args.claim, op)
    print(dumps(result.as_dict()))
    return 0 if result.accepted else 1


def _cmd_identify(args: argparse.Namespace) -> int:
    from edge.decide import identify

    embedding, op = _probe(args)
    with _open_gallery(args) as gallery:
        result = identify(gallery.templates(), embedding, op)
    print(dumps(result.as_dict()))
    return 0


def _add_gallery_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--gallery", type=pathlib.Path, default=default_gallery(), help=f"(default: {default_gallery()})"
    )
    p.add_argument("--model", type=pathlib.Path, default=DEFAULT_MODEL)
    p.add_argument("--threads", type=int, default=2)


def _cmd_run(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.daemon import Daemon

    return Daemon(load_config(args.config)).run()


def _cmd_watch(args: argparse.Namespace) -> int:
    """Print what a device publishes: events, replies, availability, state."""
    import paho.mqtt.client as mqtt

    from edge.config import load_config, validate
    from edge.mqtt import client_for

    config = load_config(args.config) if args.config else validate({})
    m = config["mqtt"]
    client = client_for(config)
    topic = f"{m['prefix']}/{args.device or config['device']['id']}/#"

    def show(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        print(f"{message.topic} {message.payload.decode(errors='replace')}", flush=True)

    client.on_message = show
    client.connect(args.host or m["host"], args.port or m["port"])
    client.subscribe(topic, qos=1)
    print(f"watching {topic} (Ctrl-C to stop)", file=sys.stderr)
    client.loop_forever()
    return 0


def _cmd_fleet(args: argparse.Namespace) -> int:
    from edge import fleet
    from edge.config import load_config

    if args.action == "keygen":
        private, public = fleet.keygen(args.out, args.name)
        print(f"wrote {private} (0600: the authority's, keep it off the devices) and {public} (for devices)")
        return 0
    config = load_config(args.config)
    if not config["fleet"]["prefix"]:
        raise FacegateError(f"{args.config}: fleet.prefix is empty")
    result = fleet.publish(config, full=args.full) if args.action == "publish" else fleet.status(config)
    if args.json:
        print(dumps(result, indent=2))
        return 0
    if args.action == "publish":
        print(
            f"published {result['published']} message(s): {result['people']} people, manifest "
            f"{result['seq']} ({result['manifest_hash'][:12]}), {result['tombstones']} tombstone(s) kept"
        )
    else:
        hash_ = (result["manifest_hash"] or "")[:12]
        print(f"manifest {result['seq']} ({hash_}): {result['people']} people")
    for device, r in result["devices"].items():
        state = "converged" if r["converged"] else "NOT converged"
        print(f"  {device}: manifest {r['seq']} ({(r['hash'] or '')[:12]}), {r['people']} people, {state}")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from edge.doctor import run_doctor

    return run_doctor(args.config)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from edge.config import load_config

    config = load_config(args.config)
    for warning in config.warnings:
        print(f"{args.config}: warning: {warning}", file=sys.stderr)
    print(f"{args.config}: OK" + (f" ({len(config.warnings)} warning(s))" if config.warnings else ""))
    if args.verbose_config:
        print(dumps({k: v for k, v in config.data.items()}, indent=2, default=str))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from convert.training_data import run_training

    report = run_training(args)
    _print_result(report, args.json)
    return 0


def _cmd_bench_encoder(args: argparse.Namespace) -> int:
    from edge.bench import bench_encoders, format_table

    report = bench_encoders(
        args.model, args.threads, args.runtime or [None], args.python, args.rounds, args.runs
    )
    if args.json:
        print(dumps(report, indent=2))
    else:
        print(format_table(report))
    return 0


def _cmd_bench_perception(args: argparse.Namespace) -> int:
    from edge.bench import bench_perception, demo_frame

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
    from edge.bench import bench_match

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
    from edge.bench_fleet import bench_fleet, format_fleet

    report = bench_fleet(
        args.people, args.devices, args.workers, max_queued=args.max_queued, resync_s=args.resync_s
    )
    print(dumps(report, indent=2) if args.json else format_fleet(report))
    return 0


def _cmd_bench_daemon(args: argparse.Namespace) -> int:
    from edge.bench import bench_daemon_idle, bench_daemon_latency, bench_daemon_rss

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


def _print_result(result: object, as_json: bool) -> None:
    if as_json:
        print(dumps(result, indent=2))
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
        "--refine",
        choices=["on", "off"],
        default="on",
        help="detect each face again on a crop around it before its landmarks, as the device "
        "does (models.refine); off: the whole-frame detection only",
    )
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

    p = conv.add_parser("head", help="distance vs logistic heads on |f(a)-f(b)|, chi-square; into the card")
    p.add_argument("--root", type=pathlib.Path, required=True, help="image folder (name/name_0001.jpg)")
    p.add_argument("--pairs", type=pathlib.Path, required=True, help="pairs.txt (10 folds)")
    p.add_argument("--dry-run", action="store_true", help="print, do not write the card")
    _add_pipeline_args(p)
    p.set_defaults(func=_cmd_convert_head)

    p = sub.add_parser("enroll", help="add people to the gallery from photos (one face each)")
    p.add_argument("name", nargs="?", help="who (letters, digits, _ . -)")
    p.add_argument("images", nargs="*", type=pathlib.Path, help="photos of that person")
    p.add_argument("--dir", type=pathlib.Path, help="a folder with one sub-folder of photos per person")
    p.add_argument("--display-name", help="a free-form name to show (default: NAME)")
    p.add_argument(
        "--replace", action="store_true", help="replace the person's embeddings (default: add to them)"
    )
    p.add_argument(
        "--keep-images",
        action="store_true",
        help="store the photos in the gallery too, so `gallery rebuild` can re-embed them for a new model",
    )
    _add_gallery_args(p)
    p.set_defaults(func=_cmd_enroll)

    ga = sub.add_parser("gallery", help="list, remove, rename, export, import, rebuild").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = ga.add_parser("list", help="the enrolled people")
    p.add_argument("--json", action="store_true")
    _add_gallery_args(p)
    p = ga.add_parser("remove", help="forget people and their embeddings")
    p.add_argument("names", nargs="+")
    _add_gallery_args(p)
    p = ga.add_parser("rename", help="rename a person")
    p.add_argument("old")
    p.add_argument("new")
    _add_gallery_args(p)
    p = ga.add_parser("export", help="write everyone to a private JSON file")
    p.add_argument("file", type=pathlib.Path)
    p.add_argument("--images", action="store_true", help="include kept enrollment images")
    _add_gallery_args(p)
    p = ga.add_parser("import", help="add the people of an export (same model only)")
    p.add_argument("file", type=pathlib.Path)
    p.add_argument("--replace", action="store_true", help="overwrite people who are already enrolled")
    _add_gallery_args(p)
    p = ga.add_parser("rebuild", help="re-embed kept enrollment images with --model (after a model change)")
    _add_gallery_args(p)
    for choice in ga.choices.values():
        choice.set_defaults(func=_cmd_gallery)

    for name, func, what in (
        ("verify", _cmd_verify, "is the face in IMAGE the claimed person? (exit 0 yes, 1 no)"),
        ("identify", _cmd_identify, "who is the face in IMAGE, or unknown"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("image", type=pathlib.Path)
        if name == "verify":
            p.add_argument("--claim", required=True, help="the enrolled name claimed")
        p.add_argument("--far", type=float, default=1e-3, help="operating point by target FAR (default 1e-3)")
        _add_gallery_args(p)
        p.set_defaults(func=func)

    p = sub.add_parser("run", help="the daemon: watch the camera, publish decisions over MQTT")
    p.add_argument("--config", type=pathlib.Path, default=pathlib.Path("/etc/facegate/config.yaml"))
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("watch", help="print what a device publishes over MQTT (events, replies, state)")
    p.add_argument("--config", type=pathlib.Path, help="the device's config (broker, prefix, device id)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--device", help="device id (default: from the config)")
    p.set_defaults(func=_cmd_watch)
    fl = sub.add_parser("fleet", help="share one gallery with many devices over MQTT").add_subparsers(
        dest="action", required=True
    )
    p = fl.add_parser("keygen", help="a new Ed25519 key pair for a fleet")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("."))
    p.add_argument("--name", default="fleet")
    p.set_defaults(func=_cmd_fleet)
    for action, what in (
        ("publish", "the authority: publish this gallery's changes to the fleet (retained, signed)"),
        ("status", "the fleet's manifest and what each device reports"),
    ):
        p = fl.add_parser(action, help=what)
        p.add_argument("--config", type=pathlib.Path, required=True, help="with mqtt and fleet sections")
        p.add_argument("--json", action="store_true")
        if action == "publish":
            p.add_argument("--full", action="store_true", help="publish every entry again, not only changes")
        p.set_defaults(func=_cmd_fleet)
    p = sub.add_parser("doctor", help="check camera, models, gallery, broker, permissions, clock, disk")
    p.add_argument("--config", type=pathlib.Path, default=pathlib.Path("/etc/facegate/config.yaml"))
    p.set_defaults(func=_cmd_doctor)
    p = sub.add_parser("check-config", help="validate a config file without starting anything")
    p.add_argument("config", type=pathlib.Path)
    p.add_argument("--print", dest="verbose_config", action="store_true", help="print it with the defaults")
    p.set_defaults(func=_cmd_check_config)

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
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps-per-epoch", type=int, default=0, help="0: one pass over the faces")
    p.add_argument("--size", type=int, default=96, help="chip size of the student (px)")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    p.add_argument("--miner", choices=["batch-hard", "batch-all"], default="batch-hard")
    p.add_argument("--margin", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=pathlib.Path, required=True, help="run folder: checkpoints, history.json")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--stop-after", type=int, help="end this call after N epochs (resume later)")
    p.add_argument("--cache", type=pathlib.Path, default=pathlib.Path.home() / ".cache" / "facegate")
    p.add_argument(
        "--export", type=pathlib.Path, help="write the int8 model and its card here (e.g. models/)"
    )
    p.add_argument("--name", default="facegate_student_v1")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("demo", help="enroll from a bundled photo, verify the others (no set-up needed)")
    p.add_argument("--model", type=pathlib.Path, default=DEFAULT_MODEL)
    p.set_defaults(func=_cmd_demo)

    ev = sub.add_parser("evaluate", help="workstation: accuracy of a model").add_subparsers(
        dest="what", required=True, metavar="PROTOCOL"
    )
    p = ev.add_parser("pairs", help="10-fold verification accuracy on LFW-format pairs")
    _add_pairs_args(p)
    p.add_argument("--far", type=float, default=1e-3, help="operating point to report (default 1e-3)")
    _add_pipeline_args(p)
    p.set_defaults(func=_cmd_evaluate_pairs)
    p = ev.add_parser("identify", help="one-shot open-set identification on identity folders")
    p.add_argument("--root", type=pathlib.Path, required=True, help="one folder per identity")
    p.add_argument("--seed", type=int, default=0, help="which half of the identities is left out")
    p.add_argument("--far", type=float, default=1e-3, help="operating point to report (default 1e-3)")
    _add_pipeline_args(p)
    p.set_defaults(func=_cmd_evaluate_identify)
    p = ev.add_parser("report", help="Markdown report with ROC/DET curves and histograms for several models")
    p.add_argument("--root", type=pathlib.Path, required=True)
    p.add_argument("--pairs", type=pathlib.Path, required=True)
    p.add_argument("--folds", help="only these folds, e.g. 5-9")
    p.add_argument("--model", type=pathlib.Path, nargs="+", default=[DEFAULT_MODEL])
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("docs/report"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_evaluate_report)
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
    _add_pairs_args(p)
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
    p = be.add_parser(
        "perception",
        help="640x480 frame, one face: detect, refine, landmarks, align, total; refine off and on",
    )
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench_perception)
    p = be.add_parser("match", help="1:N identify latency and memory for growing galleries")
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench_match)
    p = be.add_parser("fleet", help="one authority, many simulated devices on mosquitto: convergence times")
    p.add_argument("--people", type=int, default=10_000)
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--workers", type=int, default=2, help="processes the devices are spread over")
    p.add_argument("--max-queued", type=int, default=0, help="mosquitto max_queued_messages (0: no cap)")
    p.add_argument("--resync-s", type=float, default=30.0, help="devices re-fetch missing entries after")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench_fleet)
    p = be.add_parser("daemon", help="frame-to-subscriber latency over MQTT; daemon memory over time")
    p.add_argument("--tracks", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--rss-minutes", type=float, default=0.0, help="also run a daemon this long and sample its RSS"
    )
    p.add_argument("--idle-seconds", type=float, default=0.0, help="also measure CPU on a still, empty scene")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate for the RSS and idle runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench_daemon)
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

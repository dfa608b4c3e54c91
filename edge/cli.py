"""The ``facegate`` command: the device's commands, and the groups that load on demand.

The device's commands (enroll, gallery, verify, identify, run, watch, fleet,
doctor, check-config) live here. Review (``facegate.review_cli``), the
workstation's (convert, train, evaluate, calibrate), the benchmarks and the
demo are groups in their own modules, imported only when their command is
asked for (``GROUPS``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import math
import os
import pathlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from facegate import __version__
from facegate.errors import FacegateError
from facegate.modelcard import MODELS_DIR
from facegate.wire import dumps

DEFAULT_MODEL = MODELS_DIR / "dlib_resnet_v1_int8.tflite"
SHIPPED_ENCODERS = [MODELS_DIR / "dlib_resnet_v1_float32.tflite", DEFAULT_MODEL]
DESCRIPTION = (
    "On-device face verification: enroll people from a photo, verify and identify faces, and run "
    "the camera daemon that publishes decisions over MQTT."
)
# command -> (the module that adds it, its one-line help): loaded only when asked for
GROUPS: dict[str, tuple[str, str]] = {
    "convert": ("facegate.convert.cli", "workstation: build the device's models"),
    "train": ("facegate.convert.cli", "workstation: train an encoder (triplet loss, optional distillation)"),
    "evaluate": ("facegate.convert.cli", "workstation: accuracy of a model"),
    "calibrate": ("facegate.convert.cli", "workstation: threshold for a target FAR, into the model card"),
    "review": ("facegate.review_cli", "the unknown faces kept by the daemon, and corrections"),
    "bench": ("facegate.bench.cli", "print speed and memory figures"),
    "demo": ("facegate.demo.cli", "enroll from a bundled photo, verify the others, then a live run"),
}

log = logging.getLogger("facegate")


def default_gallery() -> pathlib.Path:
    """$FACEGATE_GALLERY, else $XDG_DATA_HOME/facegate/gallery.db (~/.local/share/...)."""
    if os.environ.get("FACEGATE_GALLERY"):
        return pathlib.Path(os.environ["FACEGATE_GALLERY"])
    data = os.environ.get("XDG_DATA_HOME") or str(pathlib.Path.home() / ".local" / "share")
    return pathlib.Path(data) / "facegate" / "gallery.db"


def _open_gallery(args: argparse.Namespace, create: bool = False, any_model: bool = False) -> Any:
    from facegate.enroll import fingerprint
    from facegate.gallery import Gallery

    return Gallery.open(args.gallery, fingerprint(_encoder(args)), create=create, any_model=any_model)


def _encoder(args: argparse.Namespace) -> Any:
    from facegate.encoder import Encoder

    if getattr(args, "_encoder", None) is None:
        args._encoder = Encoder(args.model, num_threads=args.threads)
    return args._encoder


def _enroller(args: argparse.Namespace) -> Any:
    from facegate.enroll import Enroller
    from facegate.perception import Perception

    encoder = _encoder(args)
    return Enroller(Perception.for_encoder(encoder.card, threads=args.threads), encoder)


def _cmd_enroll(args: argparse.Namespace) -> int:
    if bool(args.dir) == bool(args.name):
        which = "not both" if args.dir else "one of them"
        raise FacegateError(f"give NAME IMAGE... or --dir DIR (one sub-folder per person), {which}")
    if args.name and not args.images:
        raise FacegateError(f"no images given for {args.name!r}")
    from facegate.decide import OperatingPoint

    enroller = _enroller(args)
    op = OperatingPoint.from_card(enroller.encoder.card, args.far)  # the service's, for look-alikes
    with _open_gallery(args, create=True) as gallery:
        if args.dir:
            outcomes = enroller.enroll_dir(gallery, args.dir, args.keep_images, args.replace, op)
        else:
            outcomes = [
                enroller.enroll(
                    gallery, args.name, args.images, args.keep_images, args.replace, args.display_name, op
                )
            ]
    failed = 0
    for o in outcomes:
        for reason in o.refused:
            print(f"refused: {reason}", file=sys.stderr)
        for alike in o.look_alikes:
            print(f"warning: {alike}", file=sys.stderr)
        if o.person is None:
            failed += 1
            print(f"{o.name}: NOT enrolled (no usable image)", file=sys.stderr)
        else:
            again = f"; {o.again} photo(s) already enrolled, not added again" if o.again else ""
            shown = f" ({o.person.display_name})" if o.person.display_name != o.name else ""
            print(f"{o.name}{shown}: +{o.added} embedding(s), {o.person.embeddings} in all{again}")
    return 1 if failed else 0


def _cmd_gallery(args: argparse.Namespace) -> int:
    action = args.action
    if action == "rebuild":
        from facegate.enroll import rebuild

        with _open_gallery(args, any_model=True) as gallery:
            count = rebuild(gallery, _enroller(args))
        print(f"rebuilt {count} embedding(s) with {args.model.name}")
        return 0
    from facegate.fleet.store import (
        refuse_if_fleet_owned,
    )  # remove and rename: the fleet's people stay its own

    # import and restore are how a new device gets its people: they make the gallery they fill
    with _open_gallery(args, create=action in ("import", "restore"), any_model=action == "list") as gallery:
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
                refuse_if_fleet_owned(gallery, name)
                gallery.remove(name)
                print(f"removed {name}")
        elif action == "rename":
            refuse_if_fleet_owned(gallery, args.old, "rename")
            gallery.rename(args.old, args.new)
            print(f"renamed {args.old} -> {args.new}")
        elif action == "export":
            from facegate import transfer

            count = transfer.export(gallery, args.file, images=args.images)
            print(f"exported {count} people to {args.file} (private: contains biometric data)")
        elif action == "import":
            from facegate import transfer

            imported, skipped = transfer.import_(gallery, args.file, replace=args.replace)
            print(f"imported {len(imported)} people")
            for name in skipped:
                print(f"skipped {name}: already enrolled (use --replace)", file=sys.stderr)
        elif action == "backup":
            from facegate import transfer

            count = transfer.backup(gallery, args.file)
            print(f"backed up {count} people to {args.file} (private: contains biometric data)")
        elif action == "restore":
            from facegate import transfer

            count = transfer.restore(gallery, args.file)
            print(f"restored {count} people from {args.file} into {gallery.path}")
    return 0


def _probe(args: argparse.Namespace) -> tuple[Any, Any]:
    from facegate.decide import OperatingPoint
    from facegate.images import load_rgb

    encoder = _encoder(args)
    face = _enroller(args)
    advice = "crop the photo to the one face to check"
    sample = face.sample_from_rgb(load_rgb(args.image), str(args.image), advice=advice)
    return sample.vector, OperatingPoint.from_card(encoder.card, args.far)


def _cmd_verify(args: argparse.Namespace) -> int:
    from facegate.decide import verify

    embedding, op = _probe(args)
    with _open_gallery(args) as gallery:
        result = verify(gallery.templates(), embedding, args.claim, op)
    print(dumps(result.as_dict()))
    return 0 if result.accepted else 1


def _cmd_identify(args: argparse.Namespace) -> int:
    from facegate.decide import identify

    embedding, op = _probe(args)
    with _open_gallery(args) as gallery:
        result = identify(gallery.templates(), embedding, op)
    print(dumps(result.as_dict()))
    return 0


def _add_gallery_args(p: argparse.ArgumentParser, config: bool = True, far: bool = False) -> None:
    """``--gallery``, ``--model``, ``--threads``: accepted before the command as after it (the
    defaults are filled in by ``_fill_defaults``, so neither place overrides the other); and,
    after it, ``--config``: the service's gallery, encoder and operating point, from its config;
    ``--far`` where the command decides."""
    if config:
        p.add_argument(
            "--config",
            dest="service_config",
            type=pathlib.Path,
            help="the service's config (e.g. /etc/facegate/config.yaml): its gallery, encoder and "
            "decision.far, unless --gallery, --model or --far say otherwise",
        )
    if far:
        p.add_argument(
            "--far",
            type=RATE,
            default=argparse.SUPPRESS,
            help="operating point by target FAR (default: decision.far of --config, else 1e-3)",
        )
    p.add_argument(
        "--gallery",
        type=pathlib.Path,
        default=argparse.SUPPRESS,
        help=f"the gallery file (default: $FACEGATE_GALLERY, else {default_gallery()})",
    )
    p.add_argument(
        "--model",
        type=pathlib.Path,
        default=argparse.SUPPRESS,
        help=f"encoder (default: {DEFAULT_MODEL.name})",
    )
    p.add_argument(
        "--threads", type=COUNT, default=argparse.SUPPRESS, help="interpreter threads (default: 2)"
    )


def _fill_defaults(args: argparse.Namespace) -> None:
    """What was not given: from ``--config`` where it was given (enrolling into the service's
    gallery with its encoder, as `sudo -u facegate facegate enroll --config ...`), else the
    user's own gallery and the shipped encoder."""
    from facegate.config import DecisionConfig, load_config

    defaults: tuple[tuple[str, Any], ...] = (
        ("gallery", default_gallery()),
        ("model", DEFAULT_MODEL),
        ("far", DecisionConfig().far),  # the daemon's default operating point
    )
    args.service = None  # the loaded --config, read once (review takes its review file from it)
    if getattr(args, "service_config", None) is not None:
        args.service = service = load_config(args.service_config)
        defaults = (
            ("gallery", pathlib.Path(service.gallery.path)),
            ("model", pathlib.Path(service.models.encoder)),
            ("far", service.decision.far),
        )
    for key, value in (*defaults, ("threads", 2)):
        if not hasattr(args, key):
            setattr(args, key, value)


def _cmd_run(args: argparse.Namespace) -> int:
    import contextlib
    import faulthandler
    import io

    from facegate.config import load_config
    from facegate.daemon import Daemon

    # systemd stops a daemon that stopped feeding its watchdog with SIGABRT: every thread's
    # stack then goes to the journal, which says where it hung (a stderr that is no file, as
    # when run inside a test, has nowhere to put it). faulthandler reads the other threads'
    # stacks without stopping them, so rarely the dump faults part way and the process ends
    # with SIGSEGV instead: cut short, and restarted by systemd all the same.
    with contextlib.suppress(io.UnsupportedOperation, AttributeError, ValueError):
        faulthandler.enable(all_threads=True)
    return Daemon(load_config(args.config)).run()


def _cmd_watch(args: argparse.Namespace) -> int:
    """Print what a device publishes: events, replies, availability, state. Subscribes on every
    (re)connection, so a broker restart does not end the watch in silence."""
    import paho.mqtt.client as mqtt

    from facegate.commands import verify_published
    from facegate.config import load_config, validate
    from facegate.mqtt import client_for, refused, unreachable
    from facegate.wire import printable

    config = load_config(args.config) if args.config else validate({})
    m = config.mqtt
    client = client_for(config)
    device = args.device or config.device.id
    base = f"{m.prefix}/{device}"
    topic = f"{base}/#"
    secret = config.command_secret
    host, port = args.host or m.host, args.port or m.port
    refusals: list[str] = []

    def connected(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:  # a wrong login, say: retrying will not mend it
            refusals.append(str(reason))
            client.disconnect()
            return
        client.subscribe(topic, qos=1)
        print(f"watching {topic} on {host}:{port} (Ctrl-C to stop)", file=sys.stderr, flush=True)

    def show(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """One line per message, whatever it holds: anyone on the broker may publish here, so
        control characters are shown escaped, never sent to the terminal as they are. With
        the command secret, events and replies say whether the device published them."""
        line = f"{printable(message.topic)} {printable(message.payload.decode(errors='replace'))}"
        signed = message.topic == f"{base}/event" or message.topic.startswith(f"{base}/reply")
        if secret is not None and signed:
            ok = verify_published(secret, device, message.topic, bytes(message.payload))
            line += "  [hmac ok]" if ok else f"  [NOT FROM {device}: hmac missing or wrong]"
        print(line, flush=True)

    client.on_connect = connected
    client.on_message = show
    try:
        client.connect(host, port)
    except (OSError, ValueError) as exc:
        raise FacegateError(unreachable(host, port, exc)) from None
    client.loop_forever()
    if refusals:
        raise FacegateError(refused(host, port, refusals[0]))
    return 0


def _cmd_fleet(args: argparse.Namespace) -> int:
    from facegate import fleet
    from facegate.config import load_config
    from facegate.wire import printable

    if args.action == "keygen":
        private, public = fleet.keygen(args.out, args.name)
        print(f"wrote {private} (0600: the authority's, keep it off the devices) and {public} (for devices)")
        return 0
    config = load_config(args.config)
    if not config.fleet.prefix:
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
        if result["manifest_refused"]:
            print(f"the retained manifest is not this fleet's ({printable(result['manifest_refused'])})")
        else:
            hash_ = (result["manifest_hash"] or "")[:12]
            print(f"manifest {result['seq']} ({hash_}): {result['people']} people")
    for device, r in result["devices"].items():
        state = "converged" if r["converged"] else "NOT converged"
        print(f"  {device}: manifest {r['seq']} ({(r['hash'] or '')[:12]}), {r['people']} people, {state}")
    if result["ignored_reports"]:
        print(f"  {result['ignored_reports']} report(s) ignored: not what a device publishes (see the log)")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from facegate.doctor import run_doctor

    return run_doctor(args.config)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from facegate.config import EXAMPLE, load_config

    if args.example:
        if args.config is not None:
            raise FacegateError("give FILE or --example, not both")
        sys.stdout.write(EXAMPLE.read_text(encoding="utf-8"))
        return 0
    if args.config is None:
        raise FacegateError("give the config FILE to check (or --example, to print one to start from)")
    config = load_config(args.config)
    for warning in config.warnings:
        print(f"{args.config}: warning: {warning}", file=sys.stderr)
    print(f"{args.config}: OK" + (f" ({len(config.warnings)} warning(s))" if config.warnings else ""))
    if args.verbose_config:
        print(dumps(config.as_dict(), indent=2, default=str))
    return 0


def _number(kind: Callable[[str], Any], ok: Callable[[Any], bool], wants: str) -> Callable[[str], Any]:
    """An argparse ``type`` that reads a number and refuses, as a usage error naming the
    option, one that is not finite or not ``ok`` (not a traceback, or a run of nothing)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
            fine = math.isfinite(value) and ok(value)
        except (ValueError, OverflowError):  # not a number; an int too large for a float
            fine = False
        if not fine:
            raise argparse.ArgumentTypeError(f"expected {wants}, got {text!r}")
        return value

    return parse


COUNT = _number(int, lambda v: v >= 1, "a whole number >= 1")
AT_LEAST_ZERO = _number(int, lambda v: v >= 0, "a whole number >= 0")
POSITIVE = _number(float, lambda v: v > 0, "a number > 0")
NON_NEGATIVE = _number(float, lambda v: v >= 0, "a number >= 0")
RATE = _number(float, lambda v: 0 < v < 1, "a rate between 0 and 1, such as 1e-3")
PORT = _number(int, lambda v: 0 < v < 65536, "a port from 1 to 65535")


def print_result(result: object, as_json: bool) -> None:
    if as_json:
        print(dumps(result, indent=2))
    else:
        for key, value in result.items() if isinstance(result, dict) else []:
            print(f"{key}: {value}")


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the group module ``load`` (from ``GROUPS``) imported and added; every
    other group appears by name and help only."""
    parser = argparse.ArgumentParser(prog="facegate", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"facegate {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    _add_gallery_args(parser, config=False)  # before the command, --config is not the service's
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    what = "list, remove, rename, export, import, backup, restore, rebuild"
    ga = sub.add_parser("gallery", help=what).add_subparsers(dest="action", required=True, metavar="ACTION")
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
    p = ga.add_parser("backup", help="copy the whole gallery to a private file (safe while the service runs)")
    p.add_argument("file", type=pathlib.Path)
    _add_gallery_args(p)
    p = ga.add_parser("restore", help="make the gallery exactly a backup (stop the service first)")
    p.add_argument("file", type=pathlib.Path)
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
        _add_gallery_args(p, far=True)
        p.set_defaults(func=func)

    p = sub.add_parser("run", help="the daemon: watch the camera, publish decisions over MQTT")
    p.add_argument("--config", type=pathlib.Path, default=pathlib.Path("/etc/facegate/config.yaml"))
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("watch", help="print what a device publishes over MQTT (events, replies, state)")
    p.add_argument("--config", type=pathlib.Path, help="the device's config (broker, prefix, device id)")
    p.add_argument("--host")
    p.add_argument("--port", type=PORT)
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
    p = sub.add_parser("doctor", help="check camera, models, gallery, broker, access, clock, disk, power")
    p.add_argument("--config", type=pathlib.Path, default=pathlib.Path("/etc/facegate/config.yaml"))
    p.set_defaults(func=_cmd_doctor)
    p = sub.add_parser(
        "check-config", help="validate a config file without starting anything, or print an example"
    )
    p.add_argument("config", type=pathlib.Path, nargs="?")
    p.add_argument(
        "--example", action="store_true", help="print a config with every key, its default and what it does"
    )
    p.add_argument("--print", dest="verbose_config", action="store_true", help="print it with the defaults")
    p.set_defaults(func=_cmd_check_config)

    for name, (module, what) in GROUPS.items():
        if module != load:
            sub.add_parser(name, help=what, add_help=False)
    if load is not None:
        importlib.import_module(load).add_commands(sub)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The command word: the first argument that is not an option or an option's value."""
    takes_value = {"--gallery", "--model", "--threads"}
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in takes_value:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    group = GROUPS.get(_command(argv) or "")
    args = build_parser(group[0] if group else None).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        _fill_defaults(args)  # a --config that cannot be read is one line, as any other error
        return func(args)
    except FacegateError as exc:
        print(f"facegate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facegate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

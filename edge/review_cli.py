"""``facegate review``: the unknown faces the daemon kept, and corrections, from a shell.

Works on the files the daemon uses, while it runs (SQLite WAL; the daemon sees a change at
its next frame): ``--config`` reads their paths from the daemon's config, else ``--gallery``
and the review file beside it. Run it as the service user (``sudo -u facegate``): the files
are private to it.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import Any

from facegate.errors import FacegateError
from facegate.wire import dumps


def _paths(args: argparse.Namespace) -> tuple[pathlib.Path, pathlib.Path, float]:
    """(gallery, review file, FAR of the operating point): what was given, else from --config
    (``facegate.cli._fill_defaults`` filled the gallery and FAR from it), else beside the gallery."""
    from facegate.review import path_beside

    config = args.service
    if args.review is not None:
        review = args.review
    elif config is not None and config.review.path:
        review = pathlib.Path(config.review.path)
    else:
        review = path_beside(args.gallery)
    return args.gallery, review, args.far


def _run(args: argparse.Namespace) -> int:
    from facegate.cli import _encoder, print_result
    from facegate.decide import OperatingPoint
    from facegate.enroll import fingerprint
    from facegate.gallery import Gallery
    from facegate.review import ReviewStore, correct

    gallery_path, review_path, far = _paths(args)
    if args.action != "corrections" and not review_path.exists():
        raise FacegateError(f"{review_path}: no review file (is review.enabled on in the daemon's config?)")
    encoder = _encoder(args)
    model = fingerprint(encoder)
    op = OperatingPoint.from_card(encoder.card, far)
    result: Any
    if args.action == "corrections":
        with Gallery.open(gallery_path, model, create=False) as gallery:
            if args.clear:
                result = {"name": args.name, "cleared": gallery.clear_negatives(args.name)}
            else:
                gallery.person(args.name)
                rows = gallery.negatives(args.name)
                result = [{"id": r[0], "source": r[1], "created": r[2]} for r in rows]
        print_result(result, args.json)
        return 0
    with ReviewStore.open(review_path, model, op.threshold) as store:
        if args.action == "list":
            groups = store.groups()
            if args.json:
                print(dumps([g.as_dict() for g in groups], indent=2))
                return 0
            print(f"{review_path}: {len(groups)} group(s) of unknown faces")
            for g in groups:
                crop = "" if g.has_crop else ", no crop"
                print(
                    f"  {g.id:>5}  {g.status:<8} {g.faces} face(s) kept, "
                    f"seen {g.seen}x, last {g.last_seen}{crop}"
                )
            return 0
        if args.action == "show":
            data = store.crop(args.group)
            try:
                fd = os.open(args.out, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)  # a face: private
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
            except OSError as exc:
                raise FacegateError(f"{args.out}: cannot write the face there ({exc.strerror})") from None
            print(f"wrote group {args.group}'s best face to {args.out} ({len(data)} bytes)")
            return 0
        if args.action == "purge":
            result = {"deleted": store.purge()}
        elif args.action in ("ignore", "delete"):
            getattr(store, args.action)(args.group)
            result = {"group": args.group, args.action + "d": True}
        else:
            with Gallery.open(gallery_path, model, create=args.action == "assign") as gallery:
                if args.action == "assign":
                    person, alike = store.assign(args.group, args.name, gallery, args.display_name, op)
                    for warning in alike:
                        print(f"warning: {warning}", file=sys.stderr)
                    result = {"group": args.group, "name": person.name, "embeddings": person.embeddings}
                else:
                    result = correct(store, gallery, args.event_id, op, args.name)
    print_result(result, args.json)
    return 0


def add_commands(sub: Any) -> None:
    from facegate.cli import COUNT, _add_gallery_args

    rv = sub.add_parser(
        "review", help="the unknown faces kept by the daemon, and corrections"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    actions = {
        "list": "the groups of unknown faces, newest first",
        "show": "write a group's best face to a JPEG file (private)",
        "assign": "enroll a group's best faces under a name, then forget the group",
        "ignore": "stop reporting this stranger (faces deleted, the group's mean kept)",
        "delete": "forget a group and its faces",
        "purge": "apply the age and count bounds now",
        "correct": "record that an accepted event's face was not who it said",
        "corrections": "the corrections recorded against a person (--clear: forget them)",
    }
    for action, what in actions.items():
        p = rv.add_parser(action, help=what)
        if action in ("show", "assign", "ignore", "delete"):
            p.add_argument("group", type=COUNT)
        if action == "show":
            p.add_argument("out", type=pathlib.Path)
        if action == "assign":
            p.add_argument("name")
            p.add_argument("--display-name")
        if action == "correct":
            p.add_argument("event_id")
            p.add_argument("--name", help="the name the event gave (checked)")
        if action == "corrections":
            p.add_argument("name")
            p.add_argument("--clear", action="store_true")
        p.add_argument("--review", type=pathlib.Path, help="the review file (default: beside the gallery)")
        p.add_argument("--json", action="store_true")
        _add_gallery_args(p, far=True)
        p.set_defaults(func=_run)

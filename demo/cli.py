"""``facegate demo``: loaded only when asked for (the demo and its photos are not the device
runtime)."""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

from facegate.cli import DEFAULT_MODEL

COMMANDS = ("demo",)


def _cmd_demo(args: argparse.Namespace) -> int:
    from facegate.demo import run_demo

    return run_demo(args.model)


def add_commands(sub: Any) -> None:
    """Register ``demo`` on ``facegate``'s subparsers."""
    p = sub.add_parser("demo", help="enroll from a bundled photo, verify the others (no set-up needed)")
    p.add_argument("--model", type=pathlib.Path, default=DEFAULT_MODEL)
    p.set_defaults(func=_cmd_demo)

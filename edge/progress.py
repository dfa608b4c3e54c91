"""A dependency-free progress line on stderr for long loops (enrolment, evaluation)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def progress(items: Sequence[T], label: str, every: float = 1.0) -> Iterator[T]:
    """Yield ``items``, printing ``label: i/n (rate/s, eta)`` to stderr at most every ``every`` s."""
    total = len(items)
    start = last = time.monotonic()
    tty = sys.stderr.isatty()
    for i, item in enumerate(items):
        yield item
        now = time.monotonic()
        if now - last >= every or i + 1 == total:
            last = now
            rate = (i + 1) / max(now - start, 1e-9)
            eta = (total - i - 1) / rate
            line = f"{label}: {i + 1}/{total} ({rate:.0f}/s, eta {eta:.0f}s)"
            sys.stderr.write(("\r" + line) if tty else line + "\n")
            if tty and i + 1 == total:
                sys.stderr.write("\n")
            sys.stderr.flush()

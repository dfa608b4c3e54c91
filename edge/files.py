"""Small file helpers shared by the gallery, the outbox and the fleet."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any


def write_private_json(path: pathlib.Path, doc: Any, durable: bool = False, **dump: Any) -> None:
    """Write ``doc`` as JSON to ``path``, readable by its owner only (0600), atomically: a
    crash leaves the old file or the new one, never half of one (a stray ``NAME.tmp`` at
    most). ``durable`` also fsyncs before the rename, for state that must survive power loss."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, **dump)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)

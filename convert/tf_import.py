"""Lazy TensorFlow import for the workstation commands."""

from __future__ import annotations

import os
from typing import Any

from facegate.errors import FacegateError


class MissingExtraError(FacegateError):
    """A workstation command needs an optional dependency that is not installed."""


def require_tensorflow() -> Any:
    """Import TensorFlow, or say which extra installs it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise MissingExtraError(
            f"this command needs TensorFlow ({exc.name or 'tensorflow'} is not importable); "
            "install the workstation extra: pip install 'facegate[convert]'"
        ) from None
    return tf

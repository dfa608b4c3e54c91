"""Errors that the user can act on: each names the file and the problem."""

from __future__ import annotations

import importlib.util
import os


class FacegateError(Exception):
    """Base class for errors shown to the user as one clear line."""


class ModelFileError(FacegateError):
    """A model file (``.dat``, ``.tflite``, model card) is missing or unusable."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class InputError(FacegateError):
    """An image or array handed to a stage has the wrong shape or type."""


def installed(module: str) -> bool:
    """Whether the top-level ``module`` is there to import (looked for, not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except Exception:  # ValueError where sys.modules holds a failed import
        return False


def not_importable(exc: Exception, module: str) -> str:
    """Why ``module`` did not import: "is not installed", or, where it is but failed (OpenCV
    without libGL on a headless Pi, a compiled part built for another numpy), what it said."""
    if not installed(module):
        return "is not installed"
    return f"is installed but does not import ({type(exc).__name__}: {str(exc)[:200]})"

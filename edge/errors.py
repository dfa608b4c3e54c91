"""Errors that the user can act on: each names the file and the problem."""

from __future__ import annotations

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

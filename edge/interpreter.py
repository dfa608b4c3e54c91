"""One place that picks the TFLite interpreter: ai-edge-litert, else tflite-runtime.

ai-edge-litert is the maintained successor of tflite-runtime and has wheels
for newer Pythons; tflite-runtime 2.14 still serves Python <= 3.11 (with
numpy < 2). TensorFlow's own interpreter is a last resort on a workstation.
"""

from __future__ import annotations

import importlib
import logging
import os
import pathlib
from typing import Any

from facegate.errors import FacegateError, ModelFileError, installed, not_importable

log = logging.getLogger(__name__)

# (name shown to users, module, attribute holding the Interpreter class)
RUNTIMES = {
    "ai-edge-litert": ("ai_edge_litert.interpreter", "Interpreter"),
    "tflite-runtime": ("tflite_runtime.interpreter", "Interpreter"),
    "tensorflow": ("tensorflow.lite", "Interpreter"),
}


def available_runtimes() -> list[str]:
    found = []
    for name, (module, _) in RUNTIMES.items():
        try:
            importlib.import_module(module)
        except Exception:  # ImportError, or a compiled part built for another numpy
            continue
        found.append(name)
    return found


def interpreter_class(runtime: str | None = None) -> tuple[str, Any]:
    """Return (runtime name, Interpreter class); ``runtime=None`` picks the first installed."""
    names = [runtime] if runtime else list(RUNTIMES)
    broken = []  # installed, but failed to import: say so, not "not installed"
    for name in names:
        if name not in RUNTIMES:
            raise FacegateError(f"unknown TFLite runtime {name!r}; choose one of {', '.join(RUNTIMES)}")
        module, attr = RUNTIMES[name]
        try:
            if name == "tensorflow":
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            return name, getattr(importlib.import_module(module), attr)
        except Exception as exc:  # ImportError, or a compiled part built for another numpy
            top = module.split(".")[0]
            if installed(top):
                problem = not_importable(exc, top)
                log.warning("TFLite runtime %s %s", name, problem)
                broken.append(f"{name} {problem}")
    if broken:
        raise FacegateError(
            f"no TFLite interpreter imports: {'; '.join(broken)}. tflite-runtime needs numpy < 2; "
            "ai-edge-litert (pip install ai-edge-litert) needs none"
        )
    raise FacegateError(
        "no TFLite interpreter is installed: pip install ai-edge-litert "
        "(or tflite-runtime on Python <= 3.11 with numpy < 2)"
        if runtime is None
        else f"TFLite runtime {runtime!r} is not installed"
    )


def load_interpreter(path: str | os.PathLike[str], num_threads: int = 1, runtime: str | None = None) -> Any:
    """Load and allocate a ``.tflite`` model once; errors name the file."""
    path = pathlib.Path(path)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(path, f"cannot read model: {exc.strerror}") from None
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ModelFileError(path, "not a TFLite model (no 'TFL3' identifier); corrupt or wrong file")
    name, cls = interpreter_class(runtime)
    try:
        interpreter = cls(model_content=content, num_threads=num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelFileError(path, f"TFLite cannot load it ({name}): {str(exc).splitlines()[0]}") from None
    log.debug("loaded %s with %s, %d thread(s)", path, name, num_threads)
    return interpreter

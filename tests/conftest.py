"""Shared fixtures: the repo's models, the shared datasets (skipped when absent)."""

from __future__ import annotations

import contextlib
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from facegate.convert.reference import shared_root

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
FLOAT_MODEL = MODELS / "dlib_resnet_v1_float32.tflite"
INT8_MODEL = MODELS / "dlib_resnet_v1_int8.tflite"
# The start of an iPhone photo: an ISO BMFF file-type box of brand heic (HEIF), then padding.
HEIC_BYTES = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)


@contextlib.contextmanager
def read_only(folder: pathlib.Path) -> Iterator[None]:
    """``folder`` as a read-only disk (a bind mount onto itself, remounted read-only), as an SD
    card the kernel remounted after errors; skipped where this process may not mount."""
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs a bind mount to make a read-only disk: {mounted.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def shared_path(*parts: str) -> pathlib.Path:
    path = shared_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (shared datasets not beside the checkout; set FACEGATE_SHARED)")
    return path


@pytest.fixture(scope="session")
def lfw_root() -> pathlib.Path:
    return shared_path("datasets", "lfw-dev")


@pytest.fixture(scope="session")
def dat_path() -> pathlib.Path:
    models = pytest.importorskip("face_recognition_models", reason="face-recognition-models not installed")
    return pathlib.Path(models.__file__).parent / "models" / "dlib_face_recognition_resnet_model_v1.dat"


@pytest.fixture(scope="session")
def obama_sample() -> Any:
    """The bundled obama.jpg as an enrollment sample (int8 encoder): the daemon tests' known person."""
    from facegate.demo import PHOTOS
    from facegate.encoder import Encoder
    from facegate.enroll import Enroller
    from facegate.perception import Perception

    return Enroller(Perception(), Encoder(INT8_MODEL)).sample(PHOTOS / "obama.jpg")


@pytest.fixture(scope="session")
def reference_subset(lfw_root: pathlib.Path) -> dict[str, np.ndarray]:
    """Held-out dlib reference rows (fixture) with their chips cut from lfw-dev."""
    from facegate.align import align_face
    from facegate.images import load_rgb

    with np.load(FIXTURES / "dlib_reference_subset.npz") as data:
        fixture = {key: data[key] for key in data.files}
    fixture["chips"] = np.stack(
        [
            align_face(load_rgb(lfw_root / str(path)), points.astype(np.float64))
            for path, points in zip(fixture["paths"], fixture["landmarks5"])
        ]
    )
    return fixture


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real mosquitto on a free loopback port, one per test module."""
    from tests.mqtt_support import Broker

    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()


ROBUSTNESS: list[str] = []  # what the fault tests did, one line each, for the summary


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print how many inputs the robustness fuzzing tried (tests/test_robustness.py) and
    what the fault tests did (broker killed, daemon killed, soak)."""
    module = next((m for name, m in sys.modules.items() if name.endswith("test_robustness")), None)
    counts = getattr(module, "COUNTS", None)
    if counts:
        tried = ", ".join(f"{n} {what}" for what, n in counts.items())
        terminalreporter.write_line(f"robustness fuzzing tried: {tried}; no crash")
    # pytest imports this file as `conftest`, the tests as `tests.conftest`: two module objects
    found = {id(m): getattr(m, "ROBUSTNESS", []) for n, m in list(sys.modules.items()) if "conftest" in n}
    for line in (line for lines in found.values() for line in lines):
        terminalreporter.write_line(f"robustness: {line}")


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> Any:
    """tests/fakes/picamera2 imported as ``picamera2`` (the only faked part)."""
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "tests" / "fakes"))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    return importlib.import_module("picamera2")


@pytest.fixture(scope="module")
def frames() -> dict[str, np.ndarray]:
    """640x480 camera frames of the bundled photos (``facegate.demo.scene``) and an empty one."""
    from facegate.demo import PHOTOS, scene
    from facegate.perception import Perception

    p = Perception()
    return {
        "obama": scene(PHOTOS / "obama2.jpg", perception=p),
        "obama3": scene(PHOTOS / "obama3.jpg", perception=p),
        "obama_left": scene(PHOTOS / "obama3.jpg", centre=(200.0, 220.0), perception=p),
        "biden": scene(PHOTOS / "biden.jpg", perception=p),
        "blank": np.full((480, 640, 3), 96, np.uint8),
    }

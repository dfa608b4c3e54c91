"""The package as a user gets it: one `facegate` namespace, models inside, the device runtime
apart from the workstation, and a wheel that works in a fresh venv with nothing else set."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT

DEVICE_CHECK = r"""
import importlib, pkgutil, sys
for blocked in ("tensorflow", "keras", "tf_keras", "face_recognition_models", "matplotlib"):
    sys.modules[blocked] = None  # importing any of them now fails
import facegate
names = sorted(m.name for m in pkgutil.iter_modules(facegate.__path__) if m.name != "__main__")
for name in names:
    importlib.import_module(f"facegate.{name}")
apart = ("facegate.convert", "facegate.bench", "facegate.demo")
loaded = [m for m, module in sys.modules.items() if module is not None]  # None: blocked above
outside = sorted(m for m in loaded if m.startswith(apart) or m.split(".")[0] == "tensorflow")
print(len(names), outside)
"""


def test_every_device_module_imports_without_tensorflow_or_the_workstation() -> None:
    done = subprocess.run([sys.executable, "-c", DEVICE_CHECK], capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    count, outside = done.stdout.split(" ", 1)
    assert int(count) >= 25 and outside.strip() == "[]", done.stdout


def test_workstation_commands_load_only_when_asked() -> None:
    code = (
        "import sys; from facegate import cli\n"
        "cli.build_parser().parse_args(['check-config', 'x'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('facegate.convert', 'facegate.bench', "
        "'facegate.demo'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "facegate", "--help"], capture_output=True, text=True, cwd="/"
    ).stdout
    for command in ("enroll", "run", "convert", "train", "evaluate", "calibrate", "bench", "demo"):
        assert f"    {command} " in help_text, command
    assert "dispatch" not in help_text  # a user's description, not a developer's docstring


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Warning" not in done.stderr.replace("WARNING: Location", ""), done.stderr[-3000:]
    (found,) = out.glob("facegate-*.whl")
    return found


def test_wheel_holds_one_namespace_with_the_models(wheel: pathlib.Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"facegate"}, top  # no generic `edge` or `convert` in site-packages
    for needed in (
        "facegate/models/dlib_resnet_v1_int8.tflite",
        "facegate/models/dlib_resnet_v1_int8.json",
        "facegate/models/face_detection_short_range.tflite",
        "facegate/models/dlib_landmarks5.npz",
        "facegate/demo/photos/obama.jpg",
        "facegate/config.example.yaml",
        "facegate/convert/cli.py",
    ):
        assert needed in names, needed
    assert not [n for n in names if "/tests/" in n or n.endswith((".pyc", ".db"))]


def test_wheel_in_a_fresh_venv_enrolls_identifies_verifies_and_runs_the_demo(
    wheel: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """Installed with pip (its dependencies from the registry), run from another folder with no
    FACEGATE_* variable: no checkout on the path, nothing but the wheel."""
    if shutil.which("mosquitto") is None and not pathlib.Path("/usr/sbin/mosquitto").exists():
        pytest.skip("the demo's live part needs mosquitto here (CI installs it)")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    assert "setuptools" not in pip.stderr.lower() or "warning" not in pip.stderr.lower(), pip.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACEGATE_", "PYTHONPATH"))}
    env["HOME"] = str(tmp_path)  # the default gallery lands here
    facegate = str(venv / "bin" / "facegate")
    photos = ROOT / "demo" / "photos"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([facegate, *args], capture_output=True, text=True, env=env, cwd=tmp_path)

    enrolled = run("enroll", "obama", str(photos / "obama.jpg"))
    assert enrolled.returncode == 0, enrolled.stderr[-2000:]
    assert (tmp_path / ".local/share/facegate/gallery.db").exists()
    found = run("identify", str(photos / "obama2.jpg"))
    assert found.returncode == 0, found.stderr[-2000:]
    result = json.loads(found.stdout, parse_constant=lambda c: pytest.fail(f"{c} in strict JSON"))
    assert result["name"] == "obama" and result["margin"] is None  # one person: no second, null
    assert run("verify", "--claim", "obama", str(photos / "obama3.jpg")).returncode == 0
    assert run("verify", "--claim", "obama", str(photos / "biden.jpg")).returncode == 1
    example = run("check-config", "--example")  # what a pip user starts a config from
    assert example.returncode == 0 and "Every key is optional" in example.stdout, example.stderr
    demo = run("demo")
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "8 of 8 decisions right" in demo.stdout and "live: 5 events, as expected" in demo.stdout
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert not (site / "edge").exists() and not (site / "convert").exists()


def _device_imports() -> dict[str, set[str]]:
    """facegate.X -> the facegate modules it imports (anywhere in it, functions included)."""
    import ast

    graph: dict[str, set[str]] = {}
    edge = ROOT / "edge"
    for path in sorted(edge.rglob("*.py")):
        parts = path.relative_to(edge).with_suffix("").parts
        name = ".".join(("facegate", *(p for p in parts if p != "__init__")))
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("facegate"):
                targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("facegate")}
        graph[name] = {t for t in targets if t != name}
    return graph


def test_device_modules_import_in_one_direction() -> None:
    """No import circle among the device runtime's modules (a package importing its own
    submodules to re-export them is the one allowed pattern), and none reaches the
    workstation, the benchmarks or the demo."""
    graph = _device_imports()
    for module, targets in graph.items():
        assert not {
            t for t in targets if t.startswith(("facegate.convert", "facegate.bench", "facegate.demo"))
        }, module

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and not seen.add(nxt) and reaches(nxt, goal, seen)):
                return True
        return False

    circles = [
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if not target.startswith(module + ".")
        and reaches(target, module, set())
        and not module.startswith(target + ".")  # a submodule importing its package's re-exports
    ]
    assert not circles, circles


def _module_imports(path: pathlib.Path) -> set[str]:
    """Modules imported at the top level of a file (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_pi_subset_covers_the_device_and_imports_only_what_a_device_has() -> None:
    """scripts/pi-check runs `pytest -m pi` on the files holding `pi` tests, in a venv with
    the device install and pytest only: those files must not need the workstation or dev
    extras, and the subset must reach the encoder, perception, gallery, daemon and MQTT."""
    files = sorted(p for p in (ROOT / "tests").glob("test_*.py") if "@pytest.mark.pi\n" in p.read_text())
    assert {p.stem for p in files} >= {"test_encoder", "test_perception", "test_gallery", "test_daemon"}
    not_on_a_device = {"hypothesis", "tensorflow", "face_recognition_models", "av", "cryptography", "amqtt"}
    for path in [*files, ROOT / "tests" / "conftest.py", ROOT / "tests" / "mqtt_support.py"]:
        imported = _module_imports(path)
        tops = {m.split(".")[0] for m in imported}
        assert not tops & not_on_a_device, f"{path.name} imports {tops & not_on_a_device}"
        workstation = {m for m in imported if m.startswith("facegate.convert.")} - {
            "facegate.convert.reference"
        }
        assert not workstation, f"{path.name} imports {workstation}"
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "pi", "-p", "no:cacheprovider"]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert collected.returncode == 0, collected.stdout[-2000:]
    names = collected.stdout.splitlines()
    assert sum("test_daemon.py::" in n for n in names) >= 4  # the daemon loop over a real mosquitto
    assert sum("test_perception.py::" in n for n in names) >= 4

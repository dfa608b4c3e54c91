"""Parity files (facegate.bench.parity): what scripts/pi-check compares between machines."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from facegate.bench import parity
from facegate.demo import PHOTOS


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The bundled photos laid out as FOLDER/PERSON/file, the layout that names people."""
    root = tmp_path_factory.mktemp("people") / "bundled"
    for photo in sorted(PHOTOS.glob("*.jpg")):
        person = "biden" if photo.stem == "biden" else "obama"
        (root / person).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, root / person / photo.name)
    return root


@pytest.fixture(scope="module")
def reference(people: pathlib.Path) -> dict[str, np.ndarray]:
    return parity.collect([people])


def _rotate(vectors: np.ndarray, angle: float, seed: int = 0) -> np.ndarray:
    """Each vector turned by ``angle`` radians towards a random direction, as another
    machine's arithmetic might move it."""
    rng = np.random.default_rng(seed)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    noise = rng.normal(size=unit.shape)
    noise -= np.sum(noise * unit, axis=1, keepdims=True) * unit
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return (np.cos(angle) * unit + np.sin(angle) * noise).astype(np.float32)


def test_collect_keeps_every_stage_and_names_images_by_folder(
    reference: dict[str, np.ndarray], people: pathlib.Path
) -> None:
    names = list(reference["images"])
    assert names == sorted(names) and all(n.startswith("bundled/") for n in names)
    faces = len(reference["chip"])
    assert faces == len(names)  # one face in each bundled photo
    assert reference["chip"].shape == (faces, 150, 150, 3) and reference["chip"].dtype == np.uint8
    for kind in parity.MODELS:
        assert reference[f"embedding_{kind}"].shape == (faces, 128)
        assert 0.2 < float(reference[f"threshold_{kind}"]) < 1.0


def test_a_machine_matches_itself(reference: dict[str, np.ndarray]) -> None:
    side = parity.compare(reference, "same", dict(reference))
    assert side.ok and side.missing == [] and side.chip_identical == 1.0
    assert side.decisions == 2 * len(reference["chip"])
    assert all(side.decision_flips[k] == 0 and side.max_shift[k] == 0 for k in parity.MODELS)
    # biden has no other photo: never identified right; the four obamas are
    assert side.right["int8"][0] == pytest.approx(4 / 5)


def test_small_arithmetic_differences_pass(reference: dict[str, np.ndarray]) -> None:
    other = dict(reference)
    other["embedding_int8"] = _rotate(reference["embedding_int8"], 0.005)
    side = parity.compare(reference, "close", other)
    assert side.ok, side
    assert side.cosine["int8"][0] == pytest.approx(np.cos(0.005), abs=1e-4)


def test_a_flipped_device_decision_fails(reference: dict[str, np.ndarray]) -> None:
    other = dict(reference)
    emb = reference["embedding_int8"].copy()
    obama = [i for i, n in enumerate(reference["images"][reference["image"]]) if "/obama/" in n]
    emb[obama[0]] = _rotate(emb[obama[:1]], 0.9)[0]  # one obama photo now far from the others
    other["embedding_int8"] = emb
    side = parity.compare(reference, "broken", other)
    assert side.decision_flips["int8"] > 0 and side.max_shift["int8"] > parity.MAX_SHIFT
    assert not side.ok


def test_a_lost_face_fails_and_is_named(reference: dict[str, np.ndarray]) -> None:
    keep = np.arange(len(reference["chip"])) != 0
    other = {k: (v[keep] if k not in ("images", "meta") and v.ndim else v) for k, v in reference.items()}
    side = parity.compare(reference, "lost", other)
    assert side.missing == [str(reference["images"][0])] and not side.ok
    assert side.faces == len(reference["chip"]) - 1


def test_other_images_are_refused(reference: dict[str, np.ndarray]) -> None:
    other = dict(reference)
    other["images"] = reference["images"][::-1]
    with pytest.raises(parity.FacegateError, match="other images"):
        parity.compare(reference, "other", other)


def test_cli_writes_files_and_fails_on_a_flip(
    reference: dict[str, np.ndarray], people: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    exe = [sys.executable, "-m", "facegate.cli", "bench", "parity"]
    ref = tmp_path / "x86.npz"
    done = subprocess.run([*exe, "collect", str(people), "--out", str(ref)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    broken = dict(parity.load(ref))
    broken["embedding_float32"] = _rotate(broken["embedding_float32"], 0.6)
    parity.save(broken, tmp_path / "broken.npz")
    report = tmp_path / "report.md"
    done = subprocess.run(
        [
            *exe,
            "compare",
            str(ref),
            f"same={ref}",
            f"broken={tmp_path / 'broken.npz'}",
            "--markdown",
            str(report),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "FAILED on broken" in done.stderr
    assert "| same | int8 | 1.00000" in report.read_text()
    bad = subprocess.run(
        [*exe, "compare", str(ref), str(tmp_path / "absent.npz")], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "not a parity file" in bad.stderr

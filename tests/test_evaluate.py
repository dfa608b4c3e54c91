"""The pairs protocol: parsing, and a real run on part of lfw-dev."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from facegate.convert.evaluate import parse_pairs
from facegate.errors import FacegateError
from tests.conftest import INT8_MODEL, ROOT


def test_parse_pairs(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "pairs.txt"
    f.write_text("2 1\nA 1 2\nA 1 B 3\nC 2 4\nC 1 D 1\n")
    pairs = parse_pairs(f)
    assert [p.same for p in pairs] == [True, False, True, False]
    assert [p.fold for p in pairs] == [0, 0, 1, 1]
    assert pairs[1].b == "B/B_0003.jpg"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "first line"),
        ("x y\n", "first line"),
        ("1 1\nA 1 2\n", "promises 2 pairs"),
        ("1 1\nA 1 2\nA 1\n", ":3: expected 3 or 4 fields"),
        ("1 1\nA one 2\nA 1 B 2\n", ":2: invalid literal"),
    ],
)
def test_bad_pairs_files_are_refused(tmp_path: pathlib.Path, text: str, problem: str) -> None:
    f = tmp_path / "pairs.txt"
    f.write_text(text)
    with pytest.raises(FacegateError, match=problem):
        parse_pairs(f)


def _pairs_subset(lfw_root: pathlib.Path, tmp_path: pathlib.Path, per: int) -> pathlib.Path:
    """The first ``per`` same and different pairs of each of pairs-dev's 10 folds."""
    lines = (lfw_root / "pairs-dev.txt").read_text().splitlines()
    folds, n = map(int, lines[0].split())
    body = lines[1:]
    keep = [f"{folds} {per}"]
    for fold in range(folds):
        start = fold * 2 * n
        keep += body[start : start + per] + body[start + n : start + n + per]
    f = tmp_path / "pairs-subset.txt"
    f.write_text("\n".join(keep) + "\n")
    return f


def test_cli_evaluate_pairs_json(lfw_root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    pytest.importorskip("PIL")
    pairs = _pairs_subset(lfw_root, tmp_path, per=6)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "facegate.cli",
            "evaluate",
            "pairs",
            "--root",
            str(lfw_root),
            "--pairs",
            str(pairs),
            "--model",
            str(INT8_MODEL),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for key in ("accuracy", "accuracy_std", "tar_at_far", "pairs", "failed", "alignment", "model"):
        assert key in result
    assert result["pairs"] == 120
    assert result["failed"] == 0
    assert result["accuracy"] >= 0.9  # the full run measures ~98%; 120 pairs are noisier
    assert result["model"] == json.loads(INT8_MODEL.with_suffix(".json").read_text())["sha256"]
    assert result["alignment"].startswith("detected and aligned")


def test_cli_reports_a_missing_pairs_file(tmp_path: pathlib.Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "facegate.cli",
            "evaluate",
            "pairs",
            "--root",
            str(tmp_path),
            "--pairs",
            str(tmp_path / "nope.txt"),
            "--model",
            str(INT8_MODEL),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    assert done.returncode == 2
    assert "nope.txt" in done.stderr and "cannot read pairs file" in done.stderr

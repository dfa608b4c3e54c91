"""ruff and mypy stay clean (skipped where the dev extra is not installed)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("tool", [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]])
def test_tool_is_clean(tool: list[str]) -> None:
    exe = shutil.which(tool[0], path=str(ROOT / ".venv" / "bin")) or shutil.which(tool[0])
    if exe is None:
        pytest.skip(f"{tool[0]} is not installed (pip install 'facegate[dev]')")
    done = subprocess.run([exe, *tool[1:]], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

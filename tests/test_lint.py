"""ruff and mypy stay clean (skipped where the dev extra is not installed)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("tool", [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]])
def test_tool_is_clean(tool: list[str]) -> None:
    exe = shutil.which(tool[0], path=str(ROOT / ".venv" / "bin")) or shutil.which(tool[0])
    if exe is None:
        pytest.skip(f"{tool[0]} is not installed (pip install 'facegate[dev]')")
    command = [exe, *tool[1:]]
    if tool[0] == "mypy":  # over the `facegate` namespace as installed (scripts/typecheck)
        command = [str(ROOT / "scripts" / "typecheck")]
    env = {**os.environ, "MYPY": exe}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stdout + done.stderr

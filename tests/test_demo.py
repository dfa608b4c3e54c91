"""The README's first command, and the embedded broker it falls back on."""

from __future__ import annotations

import pytest

from edge.demo import run_demo
from edge.minibroker import topic_matches
from tests.conftest import INT8_MODEL


@pytest.mark.parametrize("broker", ["auto", "embedded"])
def test_demo_runs_end_to_end(
    broker: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if broker == "embedded":
        monkeypatch.setenv("FACEGATE_DEMO_BROKER", "embedded")  # MQTT 3.1.1 only: the daemon falls back
    assert run_demo(INT8_MODEL) == 0
    out = capsys.readouterr().out
    assert "8 of 8 decisions right" in out
    assert "live: 5 events, as expected" in out
    assert "reply  id=demo-1 ok=True accepted=True" in out


def test_topic_matching() -> None:
    assert topic_matches("a/+/c", "a/b/c") and topic_matches("a/#", "a/b/c") and topic_matches("#", "x")
    assert not topic_matches("a/+", "a/b/c") and not topic_matches("a/b", "a/c")

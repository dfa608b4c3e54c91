"""The README's first command, and the embedded broker it falls back on."""

from __future__ import annotations

import pytest

from facegate.demo import run_demo
from tests.conftest import INT8_MODEL


@pytest.mark.parametrize("broker", ["auto", "amqtt"])
def test_demo_runs_end_to_end(
    broker: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if broker == "amqtt":
        pytest.importorskip("amqtt", reason="the demo extra (amqtt) is not installed")
        monkeypatch.setenv("FACEGATE_DEMO_BROKER", "amqtt")  # MQTT 3.1.1 only: the daemon falls back
    assert run_demo(INT8_MODEL) == 0
    out = capsys.readouterr().out
    assert "8 of 8 decisions right" in out
    assert "live: 5 events, as expected" in out
    assert "reply  id=demo-1 ok=True accepted=True" in out

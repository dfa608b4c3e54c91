"""Memory over a long run of frames: a real ``facegate run`` child process, people coming
and going in front of the camera (2 s a face, 1 s nobody), its RSS sampled as it goes.

The stated bound: after the first sample, resident memory grows by at most
``BOUND_MB``. The default run soaks for 30 s; the soak mode for as long as
``FACEGATE_SOAK_MINUTES`` says (``FACEGATE_SOAK_MINUTES=60 pytest -m soak -s``). The broker
is mosquitto where installed, else amqtt (``facegate.demo.broker.start_broker``).
"""

from __future__ import annotations

import os

import pytest

from facegate.bench.device import bench_daemon_rss
from tests.conftest import ROBUSTNESS

BOUND_MB = 10.0
SOAK_MINUTES = float(os.environ.get("FACEGATE_SOAK_MINUTES", "0") or 0)


def _soak(minutes: float, sample_s: float) -> None:
    samples = bench_daemon_rss(minutes, fps=20.0, sample_s=sample_s)["samples"]
    first, peak, last = samples[0]["rss_mb"], max(s["rss_mb"] for s in samples), samples[-1]["rss_mb"]
    ROBUSTNESS.append(
        f"soak {minutes * 60:.0f} s at 20 fps, {len(samples)} samples: RSS {first} MB -> {last} MB "
        f"(peak {peak} MB, growth {peak - first:+.1f} MB, bound {BOUND_MB} MB), "
        f"CPU {samples[-1]['cpu_percent']}% of a core"
    )
    assert peak - first <= BOUND_MB, samples


def test_memory_is_bounded_over_30_seconds() -> None:
    _soak(0.5, 5.0)


@pytest.mark.soak
@pytest.mark.skipif(not SOAK_MINUTES, reason="soak mode: set FACEGATE_SOAK_MINUTES")
def test_memory_is_bounded_in_a_long_soak() -> None:
    _soak(SOAK_MINUTES, 30.0)

"""The one-shot identification protocols of ``facegate evaluate identify`` on embeddings
made to order: the figures, their intervals, and the refusal of overlapping sets."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from facegate.convert.identify import evaluate_identify, stranger_pool_metrics
from facegate.decide import OperatingPoint
from facegate.errors import FacegateError

OP = OperatingPoint(1e-3, 0.6)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _people(
    rng: np.random.Generator, prefix: str, n: int, images: int, spread: float
) -> dict[str, np.ndarray]:
    out = {}
    for i in range(n):
        centre = _unit(rng.normal(size=128))
        for j in range(images):
            out[f"{prefix}{i}/{j}.jpg"] = _unit(centre + spread * rng.normal(size=128) / np.sqrt(128))
    return out


def _folders(embeddings: dict[str, np.ndarray]) -> dict[str, list[str]]:
    folders: dict[str, list[str]] = {}
    for key in sorted(embeddings):
        folders.setdefault(key.split("/")[0], []).append(key)
    return folders


def test_separated_people_and_strangers_score_perfectly_with_intervals() -> None:
    rng = np.random.default_rng(1)
    known = _people(rng, "k", 20, 4, 0.2)
    strangers = _people(rng, "s", 50, 3, 0.2)
    m = stranger_pool_metrics(_folders(known), known, strangers, OP, rounds=50)
    assert m["rank1"] == {"value": 1.0, "ci95": [1.0, 1.0]}
    assert m["dir_at_fpir"]["0.01"]["value"] == 1.0
    op = m["operating_point"]
    assert op["dir"]["value"] == 1.0 and op["fpir"]["value"] == 0.0 and op["misidentified"]["value"] == 0.0
    assert (m["enrolled"], m["probes"], m["stranger_probes"], m["stranger_identities"]) == (20, 60, 150, 50)


def test_interval_brackets_a_noisy_figure() -> None:
    rng = np.random.default_rng(2)
    known = _people(rng, "k", 40, 5, 3.0)  # noisy: some probes land nearer another person
    strangers = _people(rng, "s", 60, 3, 3.0)
    m = stranger_pool_metrics(_folders(known), known, strangers, OP, rounds=200)
    low, high = m["rank1"]["ci95"]
    assert 0.0 < m["rank1"]["value"] < 1.0
    assert low < m["rank1"]["value"] < high
    low, high = m["dir_at_fpir"]["0.01"]["ci95"]
    assert low <= m["dir_at_fpir"]["0.01"]["value"] <= high and low < high


def test_a_stranger_set_sharing_people_is_refused(tmp_path: pathlib.Path) -> None:
    for root in ("a", "b"):
        for person in ("ann", "bob"):
            (tmp_path / root / person).mkdir(parents=True)
            for i in range(2):
                (tmp_path / root / person / f"{i}.jpg").write_bytes(b"")
    with pytest.raises(FacegateError, match="shares identities"):
        evaluate_identify(None, tmp_path / "a", None, strangers=tmp_path / "b")  # type: ignore[arg-type]


def test_track_distances_pair_every_template_with_every_track_mean() -> None:
    from facegate.convert.calibrate import track_distances

    rng = np.random.default_rng(3)
    people = _people(rng, "p", 4, 7, 0.3)  # 7 images: 1 enrolled + 2 tracks of 3
    people.update(_people(rng, "q", 3, 2, 0.3))  # too few for a track: impostor templates only
    d, same, identities, tracks = track_distances(people, 3)
    assert (identities, tracks) == (7, 8) and d.shape == (7 * 8,)
    assert same.sum() == 8  # each track against its own template once
    assert d[same].max() < d[~same].min()  # separated people: every mean is nearest its own
    first = people["p0/0.jpg"]
    mean = np.mean([people[f"p0/{j}.jpg"] for j in (1, 2, 3)], axis=0)
    assert d[0] == pytest.approx(np.linalg.norm(first - mean / np.linalg.norm(mean)), abs=1e-6)
    with pytest.raises(FacegateError, match="3-frame tracks"):
        track_distances(_people(rng, "r", 3, 3, 0.3), 3)

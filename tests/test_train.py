"""Triplet loss, mining, batches and a tiny seeded training run with resume."""

from __future__ import annotations

import itertools
import json
import pathlib

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf
tf = pytest.importorskip("tensorflow", reason="the convert extra (TensorFlow) is not installed")

from facegate.convert.facebank import FaceBank  # noqa: E402
from facegate.convert.train import (  # noqa: E402
    TrainConfig,
    augment,
    build_student,
    pairwise_distances,
    pk_batches,
    train,
    triplet_loss,
)
from facegate.errors import FacegateError  # noqa: E402


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _brute(e: np.ndarray, labels: np.ndarray, margin: float) -> tuple[list[float], list[float]]:
    """Every valid triplet's loss, and batch-hard's per-anchor loss, by explicit loops."""
    d = np.linalg.norm(e[:, None] - e[None], axis=2)
    all_losses, hard = [], []
    for a in range(len(e)):
        if labels[a] < 0:
            continue
        pos = [p for p in range(len(e)) if p != a and labels[p] == labels[a]]
        neg = [n for n in range(len(e)) if labels[n] >= 0 and labels[n] != labels[a]]
        for p, n in itertools.product(pos, neg):
            all_losses.append(max(d[a, p] - d[a, n] + margin, 0.0))
        if pos and neg:
            hard.append(max(max(d[a, p] for p in pos) - min(d[a, n] for n in neg) + margin, 0.0))
    return all_losses, hard


HAND_MADE = _unit(np.array([[1, 0], [0.8, 0.6], [0, 1], [-0.6, 0.8], [0.6, 0.8], [1, 0.1]], np.float64))
LABELS = np.array([0, 0, 1, 1, 2, -1])  # the last one is unlabelled: never in a triplet


def test_pairwise_distances() -> None:
    d = pairwise_distances(tf.constant(HAND_MADE)).numpy()
    np.testing.assert_allclose(d, np.linalg.norm(HAND_MADE[:, None] - HAND_MADE[None], axis=2), atol=1e-6)
    assert np.all(np.diag(d) == 0)


@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_batch_hard_matches_the_definition(margin: float) -> None:
    _, hard = _brute(HAND_MADE, LABELS, margin)
    loss, active = triplet_loss(tf.constant(HAND_MADE), tf.constant(LABELS), margin, "batch-hard")
    assert float(loss) == pytest.approx(np.mean(hard), abs=1e-5)
    assert float(active) == pytest.approx(np.mean(np.array(hard) > 0), abs=1e-6)


@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_batch_all_matches_the_definition(margin: float) -> None:
    losses, _ = _brute(HAND_MADE, LABELS, margin)
    loss, active = triplet_loss(tf.constant(HAND_MADE), tf.constant(LABELS), margin, "batch-all")
    positive = [x for x in losses if x > 0]
    assert float(loss) == pytest.approx(np.mean(positive), abs=1e-5)
    assert float(active) == pytest.approx(len(positive) / len(losses), abs=1e-6)


def test_separated_embeddings_cost_nothing_and_collapsed_ones_cost_the_margin() -> None:
    separated = _unit(np.array([[1, 0], [1, 0.01], [-1, 0], [-1, 0.01]], np.float64))
    labels = tf.constant([0, 0, 1, 1])
    for miner in ("batch-hard", "batch-all"):
        loss, active = triplet_loss(tf.constant(separated), labels, 0.2, miner)
        assert float(loss) == pytest.approx(0.0, abs=1e-6) and float(active) == 0.0
        collapsed = tf.constant(np.tile([[1.0, 0.0]], (4, 1)).astype(np.float32))
        loss, active = triplet_loss(collapsed, labels, 0.2, miner)
        assert float(loss) == pytest.approx(0.2, abs=1e-5) and float(active) == 1.0  # the margin guards


def test_pk_batches() -> None:
    labels = np.repeat(np.arange(10), 3)
    labels[-1] = -1
    batch = next(pk_batches(labels, 4, 2, np.random.default_rng(0)))
    ids = labels[batch]
    assert len(batch) == 8 and len(set(ids.tolist())) == 4 and -1 not in ids
    assert all((ids == i).sum() == 2 for i in set(ids.tolist()))
    with pytest.raises(FacegateError, match="at least 20 identities"):
        next(pk_batches(labels, 20, 2, np.random.default_rng(0)))


def test_augment_is_seeded_and_in_range() -> None:
    chips = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype(np.uint8)
    a = augment(chips, np.random.default_rng(1))
    b = augment(chips, np.random.default_rng(1))
    assert a.shape == (5, 32, 32, 3) and a.min() >= 0 and a.max() <= 255
    np.testing.assert_array_equal(a, b)


def test_student_shape() -> None:
    model = build_student(size=64, embedding=32, width=0.5)
    assert model.output_shape == (None, 32)
    assert model.count_params() < 500_000


def _bank(n_ids: int = 6, per_id: int = 4, size: int = 32) -> FaceBank:
    rng = np.random.default_rng(0)
    centres = rng.integers(40, 215, (n_ids, 1, 1, 3))
    labels = np.repeat(np.arange(n_ids), per_id)
    chips = np.clip(centres[labels] + rng.normal(0, 20, (len(labels), size, size, 3)), 0, 255).astype(
        np.uint8
    )
    teacher = rng.standard_normal((len(labels), 32)).astype(np.float32)
    teacher /= np.linalg.norm(teacher, axis=1, keepdims=True)
    return FaceBank(chips, teacher, labels, np.array([f"x/{i}" for i in range(len(labels))]), [])


def test_training_is_seeded_and_resumes(tmp_path: pathlib.Path) -> None:
    config = TrainConfig(
        mode="distill",
        size=32,
        embedding=32,
        width=0.25,
        epochs=2,
        steps_per_epoch=2,
        identities_per_batch=3,
        faces_per_identity=2,
        unlabelled_per_batch=4,
        seed=3,
    )
    bank = _bank()
    straight = train(config, bank, tmp_path / "straight")
    history = json.loads((tmp_path / "straight" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(h["spread"] > 0.05 for h in history)
    assert 0 <= history[0]["active_triplets"] <= 1
    with pytest.raises(FacegateError, match="already holds a run"):
        train(config, bank, tmp_path / "straight")
    train(config, bank, tmp_path / "split", stop_after=1)  # interrupted after one epoch
    with pytest.raises(FacegateError, match="same settings"):
        train(TrainConfig(**{**config.__dict__, "margin": 0.3}), bank, tmp_path / "split", resume=True)
    resumed = train(config, bank, tmp_path / "split", resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    a = tf.keras.models.load_model(straight["model"])
    b = tf.keras.models.load_model(resumed["model"])
    probe = bank.chips[:4].astype(np.float32)
    np.testing.assert_allclose(a(probe, training=False), b(probe, training=False), atol=1e-4)


def test_export_runs_on_the_device_encoder(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from facegate.convert.train import export_student
    from facegate.encoder import Encoder

    config = TrainConfig(
        mode="triplet",
        size=32,
        embedding=32,
        width=0.25,
        epochs=1,
        steps_per_epoch=1,
        identities_per_batch=3,
        faces_per_identity=2,
        seed=0,
    )
    bank = _bank()
    result = train(config, bank, tmp_path / "run")
    capsys.readouterr()
    card = export_student(
        pathlib.Path(result["model"]), bank.chips[:8], tmp_path, "tiny", config, {"note": "test"}
    )
    assert capsys.readouterr().out == ""  # stdout stays clean for `facegate train --json`
    encoder = Encoder(tmp_path / card["file"])
    assert encoder.card.chip_size == 32 and encoder.card.embedding_size == 32
    e = encoder.embed(bank.chips[:3])
    assert e.shape == (3, 32) and np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert encoder.input_dtype == np.uint8  # full-integer: raw pixels in


def test_a_training_folder_that_is_not_there_is_named(tmp_path: pathlib.Path) -> None:
    """A mistyped --root said "no usable face in the training folders"."""
    from facegate.convert.facebank import Source, build

    with pytest.raises(
        FacegateError, match=r"nowhere: not a folder \(expected one sub-folder per identity\)"
    ):
        build([Source(tmp_path / "nowhere")], 64, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()

"""``facegate train``: a Siamese encoder trained with triplet loss, optionally
distilled from dlib's encoder, exported to int8 TFLite for the device.

- One network (shared weights) embeds every face; the training graph
  L2-normalises its output, the exported model leaves that to the device
  (as for dlib's model: int8 L2 normalisation loses precision).
- Triplet loss ``max(d(A,P) - d(A,N) + margin, 0)`` on batches of P
  identities x K faces, with online mining inside the batch: ``batch-hard``
  (hardest positive and negative per anchor) or ``batch-all`` (every triplet
  that still violates the margin: the hard and semi-hard ones).
- Distillation: the student's embedding is pulled onto the teacher's (dlib's
  encoder, precomputed in the face bank) for every face, labelled or not, so
  unlabelled faces teach it too.
- Collapse guard: each epoch logs the share of active triplets and the spread
  of the embeddings (mean distance between faces in a batch; 0 = collapsed)
  and stops with an error if the spread collapses.
- Seeded and deterministic on CPU; a checkpoint per epoch; ``resume``
  continues where a run stopped; ``history.json`` logs every epoch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from facegate.convert.facebank import FaceBank
from facegate.convert.metrics import ten_fold
from facegate.convert.tf_import import require_tensorflow
from facegate.errors import FacegateError
from facegate.wire import dumps

log = logging.getLogger(__name__)

MINERS = ("batch-hard", "batch-all")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    mode: str = "distill"  # "triplet" (labels only) or "distill" (teacher + triplet)
    size: int = 96
    embedding: int = 128
    width: float = 1.0
    epochs: int = 30
    steps_per_epoch: int = 0  # 0: one pass over the faces
    identities_per_batch: int = 16  # P
    faces_per_identity: int = 4  # K
    unlabelled_per_batch: int = 64
    margin: float = 0.2
    miner: str = "batch-hard"
    triplet_weight: float = 1.0
    distill_weight: float = 1.0
    learning_rate: float = 2e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("triplet", "distill"):
            raise FacegateError(f"mode must be triplet or distill, got {self.mode!r}")
        if self.miner not in MINERS:
            raise FacegateError(f"miner must be one of {', '.join(MINERS)}, got {self.miner!r}")
        if self.faces_per_identity < 2 or self.identities_per_batch < 2:
            raise FacegateError("a triplet batch needs at least 2 identities x 2 faces")


# --- the student network -------------------------------------------------------


def build_student(size: int = 96, embedding: int = 128, width: float = 1.0) -> Any:
    """MobileFaceNet-like: depthwise-separable bottlenecks, ReLU (int8-friendly),
    a global depthwise conv instead of pooling, a linear embedding. Raw pixels in."""
    tf = require_tensorflow()
    layers = tf.keras.layers

    def ch(n: int) -> int:
        return max(8, round(n * width / 8) * 8)

    def conv_bn(x: Any, filters: int, kernel: int, stride: int, relu: bool = True) -> Any:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU(6.0)(x) if relu else x

    def dw_bn(x: Any, stride: int) -> Any:
        x = layers.DepthwiseConv2D(3, stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU(6.0)(x)

    def bottleneck(x: Any, filters: int, stride: int, expansion: int = 2) -> Any:
        inp = x
        x = conv_bn(x, int(x.shape[-1]) * expansion, 1, 1)
        x = dw_bn(x, stride)
        x = conv_bn(x, filters, 1, 1, relu=False)
        if stride == 1 and int(inp.shape[-1]) == filters:
            x = layers.Add()([inp, x])
        return x

    inputs = tf.keras.Input((size, size, 3), name="chip")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = conv_bn(x, ch(32), 3, 2)
    x = dw_bn(x, 1)
    x = conv_bn(x, ch(64), 1, 1)
    for filters, stride, repeat in ((64, 2, 2), (96, 2, 3), (128, 2, 2)):
        for r in range(repeat):
            x = bottleneck(x, ch(filters), stride if r == 0 else 1)
    x = conv_bn(x, ch(256), 1, 1)
    spatial = int(x.shape[1])
    x = layers.DepthwiseConv2D(spatial, 1, padding="valid", use_bias=False)(x)  # global depthwise conv
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(embedding, 1, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    outputs = layers.Flatten(name="embedding")(x)
    return tf.keras.Model(inputs, outputs, name="facegate_student")


# --- losses and mining ---------------------------------------------------------


def pairwise_distances(embeddings: Any) -> Any:
    tf = require_tensorflow()
    dots = tf.matmul(embeddings, embeddings, transpose_b=True)
    sq = tf.linalg.diag_part(dots)
    d2 = tf.maximum(sq[:, None] - 2.0 * dots + sq[None, :], 0.0)
    # sqrt'(0) is infinite: keep the gradient finite on the diagonal.
    zero = tf.cast(tf.equal(d2, 0.0), d2.dtype)
    return tf.sqrt(d2 + zero * 1e-16) * (1.0 - zero)


def triplet_loss(embeddings: Any, labels: Any, margin: float, miner: str) -> tuple[Any, Any]:
    """(loss, share of valid triplets still violating the margin) for one batch.

    ``embeddings`` L2-normalised; ``labels`` int identities (negative = ignore).
    """
    tf = require_tensorflow()
    d = pairwise_distances(embeddings)
    labels = tf.cast(labels, tf.int64)
    known = labels >= 0
    same = tf.equal(labels[:, None], labels[None, :])
    eye = tf.eye(tf.shape(labels)[0], dtype=tf.bool)
    pair_ok = known[:, None] & known[None, :]
    positive = same & ~eye & pair_ok
    negative = ~same & pair_ok
    pos_f, neg_f = tf.cast(positive, d.dtype), tf.cast(negative, d.dtype)
    if miner == "batch-hard":
        hardest_pos = tf.reduce_max(d * pos_f, axis=1)
        big = tf.reduce_max(d) + 1.0
        hardest_neg = tf.reduce_min(d + big * (1.0 - neg_f), axis=1)
        valid = tf.cast(tf.reduce_any(positive, axis=1) & tf.reduce_any(negative, axis=1), d.dtype)
        losses = tf.maximum(hardest_pos - hardest_neg + margin, 0.0) * valid
        count = tf.maximum(tf.reduce_sum(valid), 1.0)
        active = tf.reduce_sum(tf.cast(losses > 0, d.dtype)) / count
        return tf.reduce_sum(losses) / count, active
    # batch-all: every (a, p, n) with a~p, a!~n; average over those with a positive loss.
    cube = d[:, :, None] - d[:, None, :] + margin  # [a, p, n]
    mask = tf.cast(positive[:, :, None] & negative[:, None, :], d.dtype)
    losses = tf.maximum(cube, 0.0) * mask
    positive_count = tf.reduce_sum(tf.cast(losses > 1e-12, d.dtype))
    total = tf.maximum(tf.reduce_sum(mask), 1.0)
    return tf.reduce_sum(losses) / tf.maximum(positive_count, 1.0), positive_count / total


def distill_loss(student: Any, teacher: Any) -> Any:
    """Mean squared distance between L2-normalised embeddings (= 2 - 2 cos)."""
    tf = require_tensorflow()
    return tf.reduce_mean(tf.reduce_sum(tf.square(student - teacher), axis=1))


# --- batches -------------------------------------------------------------------------


def pk_batches(labels: np.ndarray, p: int, k: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless P x K index batches over identities with at least 2 faces (K drawn
    with replacement for identities with fewer than K)."""
    by_id: dict[int, np.ndarray] = {}
    for ident in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == ident)
        if len(members) >= 2:
            by_id[int(ident)] = members
    ids = np.array(sorted(by_id))
    if len(ids) < p:
        raise FacegateError(f"need at least {p} identities with 2+ faces, found {len(ids)}")
    while True:
        for chunk in np.array_split(rng.permutation(ids), max(1, len(ids) // p)):
            chosen = chunk[:p] if len(chunk) >= p else rng.choice(ids, p, replace=False)
            yield np.concatenate(
                [rng.choice(by_id[int(i)], k, replace=len(by_id[int(i)]) < k) for i in chosen]
            )


def augment(chips: np.ndarray, rng: np.random.Generator, shift: int = 4) -> np.ndarray:
    """Random horizontal flip, shift of up to ``shift`` px (edge-padded), brightness x0.8-1.2."""
    out = chips.astype(np.float32)
    flip = rng.random(len(out)) < 0.5
    out[flip] = out[flip, :, ::-1]
    n, h, w, _ = out.shape
    padded = np.pad(out, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    dy: list[int] = list(np.asarray(rng.integers(0, 2 * shift + 1, size=n)).tolist())
    dx: list[int] = list(np.asarray(rng.integers(0, 2 * shift + 1, size=n)).tolist())
    out = np.stack([padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    out *= rng.uniform(0.8, 1.2, (n, 1, 1, 1)).astype(np.float32)
    return np.clip(out, 0, 255)


# --- validation --------------------------------------------------------------


@dataclasses.dataclass
class PairSet:
    """Held-out pairs over unique chips: pair i is (chips[a[i]], chips[b[i]])."""

    chips: np.ndarray
    a: np.ndarray
    b: np.ndarray
    same: np.ndarray
    folds: np.ndarray


def embed(model: Any, chips: np.ndarray, batch: int = 256) -> np.ndarray:
    out = [
        np.asarray(model(chips[i : i + batch].astype(np.float32), training=False))
        for i in range(0, len(chips), batch)
    ]
    e = np.concatenate(out)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def validate_pairs(model: Any, pairs: PairSet) -> float:
    e = embed(model, pairs.chips)
    d = np.linalg.norm(e[pairs.a] - e[pairs.b], axis=1)
    accuracy: Any = ten_fold(d, pairs.same, pairs.folds)["accuracy"]
    return float(accuracy)


# --- training ---------------------------------------------------------------------


def train(
    config: TrainConfig,
    bank: FaceBank,
    out_dir: pathlib.Path,
    val: PairSet | None = None,
    resume: bool = False,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) in ``out_dir``; ``stop_after`` ends this call after that
    many epochs (the schedule still spans ``config.epochs``: resume continues it)."""
    tf = require_tensorflow()
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = out_dir / "config.json"
    history_path = out_dir / "history.json"
    if resume:
        if not settings.exists():
            raise FacegateError(f"{out_dir}: nothing to resume (no config.json)")
        saved = TrainConfig(**json.loads(settings.read_text()))
        if saved != config:
            raise FacegateError(f"{out_dir}: resume with the same settings it started with: {saved}")
    elif history_path.exists():
        raise FacegateError(f"{out_dir} already holds a run: use --resume, or another --out")
    settings.write_text(dumps(dataclasses.asdict(config), indent=2))
    tf.keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()

    model = build_student(config.size, config.embedding, config.width)
    per_batch = config.identities_per_batch * config.faces_per_identity
    if config.mode == "distill":
        per_batch += config.unlabelled_per_batch
    steps = config.steps_per_epoch or max(1, len(bank) // per_batch)
    schedule = tf.keras.optimizers.schedules.CosineDecay(
        config.learning_rate, steps * config.epochs, alpha=0.02
    )
    optimizer = tf.keras.optimizers.Adam(schedule)
    epoch_var = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    manager = tf.train.CheckpointManager(checkpoint, out_dir / "checkpoints", max_to_keep=2)
    history: list[dict[str, Any]] = []
    if resume and manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).expect_partial()
        history = json.loads(history_path.read_text()) if history_path.exists() else []
        log.info("resumed from %s (epoch %d)", manager.latest_checkpoint, int(epoch_var.numpy()))

    labels = bank.labels
    all_index = np.arange(len(bank))

    @tf.function(reduce_retracing=True)
    def step(x: Any, y: Any, teacher: Any) -> tuple[Any, Any, Any, Any]:
        with tf.GradientTape() as tape:
            e = tf.math.l2_normalize(model(x, training=True), axis=1)
            t_loss, active = triplet_loss(e, y, config.margin, config.miner)
            loss = config.triplet_weight * t_loss
            if config.mode == "distill":
                d_loss = distill_loss(e, teacher)
                loss += config.distill_weight * d_loss
            else:
                d_loss = tf.constant(0.0)
            spread = tf.reduce_mean(pairwise_distances(e))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, active, d_loss, spread

    first = int(epoch_var.numpy())
    last = config.epochs if stop_after is None else min(config.epochs, first + stop_after)
    for epoch in range(first, last):
        rng = np.random.default_rng(config.seed * 1000 + epoch)  # the same batches after a resume
        batches = pk_batches(labels, config.identities_per_batch, config.faces_per_identity, rng)
        started = time.perf_counter()
        sums = np.zeros(4)
        for _ in _progress(range(steps), f"epoch {epoch + 1}/{config.epochs}"):
            idx = next(batches)
            if config.mode == "distill":
                idx = np.concatenate([idx, rng.choice(all_index, config.unlabelled_per_batch, replace=False)])
            y = np.where(
                np.arange(len(idx)) < config.identities_per_batch * config.faces_per_identity, labels[idx], -1
            )
            result = step(augment(bank.chips[idx], rng), y, bank.teacher[idx])
            sums += [float(v) for v in result]
        loss, active, d_loss, spread = sums / steps
        record = {
            "epoch": epoch + 1,
            "loss": round(loss, 5),
            "distill_loss": round(d_loss, 5),
            "active_triplets": round(active, 4),
            "spread": round(spread, 4),
            "seconds": round(time.perf_counter() - started, 1),
        }
        if val is not None:
            record["val_accuracy"] = round(validate_pairs(model, val), 4)
        history.append(record)
        log.info("epoch %s", record)
        epoch_var.assign(epoch + 1)
        manager.save()
        tmp = history_path.with_suffix(".tmp")
        tmp.write_text(dumps(history, indent=1))
        os.replace(tmp, history_path)
        if spread < 0.05:
            raise FacegateError(
                f"embeddings collapsed (mean distance {spread:.4f} in a batch) at epoch {epoch + 1}: "
                "lower the learning rate or raise the margin"
            )
    model.save(out_dir / "student.keras")
    return {"history": history, "model": str(out_dir / "student.keras")}


def _progress(items: range, label: str) -> Iterator[int]:
    from facegate.progress import progress

    yield from progress(list(items), label, every=5.0)


def export_student(
    keras_path: pathlib.Path,
    calibration: np.ndarray,
    out_dir: pathlib.Path,
    name: str,
    config: TrainConfig,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """Full-integer int8 TFLite + model card, through the same path as dlib's encoder."""
    tf = require_tensorflow()
    from facegate.align import DLIB_5POINT_TEMPLATE
    from facegate.convert.quantize import to_int8, tool_versions, write_model

    model = tf.keras.models.load_model(keras_path)
    card = {
        "name": f"{name}_int8",
        "description": "facegate student encoder (MobileFaceNet-like), trained by `facegate train`",
        "input": {
            "size": [config.size, config.size],
            "layout": "NHWC",
            "channels": "RGB",
            "dtype": "uint8",
            "range": [0, 255],
            "normalisation": "(x - 127.5) / 127.5 inside the model; feed raw pixel values",
        },
        "alignment": {
            "method": "dlib get_face_chip_details + extract_image_chip (see edge/align.py)",
            "landmarks": "5-point, dlib shape_predictor_5_face_landmarks order",
            "template": DLIB_5POINT_TEMPLATE.round(13).tolist(),
            "chip_size": config.size,
            "padding": 0.25,
        },
        "embedding": {
            "size": config.embedding,
            "output": "raw embedding (float32, dequantised)",
            "normalisation": "L2 on the device, after dequantisation (edge/encoder.py)",
        },
        "distance": {"metric": "euclidean between L2-normalised embeddings"},
        "quantisation": "full integer int8 (all ops int8, uint8 input, float32 output), per-channel weights",
        "training": {**provenance, "config": dataclasses.asdict(config), "tools": tool_versions()},
        "source": {"licence": "same as this repository; trained from the data named under training"},
    }
    return write_model(out_dir / f"{name}_int8.tflite", to_int8(model, calibration), card)

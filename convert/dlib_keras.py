"""Rebuild dlib's face ResNet (``anet_type`` of dnn_face_recognition_ex.cpp) in Keras.

Folding, so that the TFLite graph is only convs, adds, pools and one matmul:

- each ``affine`` (batch norm frozen by dlib) is folded into the conv before it;
- the input normalisation ``(x - mean) / 256`` is folded into the first conv,
  which is exact because that conv has no padding; the model takes raw RGB
  pixel values 0..255 in NHWC.

dlib details reproduced: stride-2 convs and all pools have no padding; the
downsampling shortcut is a 2x2/2 average pool of the block input; where the
two branches of an add differ in size, dlib adds into a tensor of the larger
size, i.e. pads the smaller one with zeros at the bottom/right (and in the
channels).

The output is dlib's raw 128-d descriptor (not L2-normalised): normalisation
happens on the device after dequantisation (see ``facegate.encoder``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facegate.convert.dlib_dat import DlibNet, Layer
from facegate.convert.tf_import import require_tensorflow
from facegate.errors import ModelFileError

_PLAIN = ["con", "affine", "relu", "con", "affine", "add_prev", "relu"]
_DOWN = ["con", "affine", "relu", "con", "affine", "avg_pool", "add_prev", "relu"]


def fold_conv(con: Layer, affine: Layer) -> tuple[np.ndarray, np.ndarray]:
    """Return a Keras kernel (rows, cols, in, out) and bias with ``affine`` folded in."""
    weights = np.asarray(con.params["weights"], np.float64)  # (out, in, rows, cols)
    bias = np.asarray(con.params["bias"], np.float64)
    gamma = np.asarray(affine.params["gamma"], np.float64)
    beta = np.asarray(affine.params["beta"], np.float64)
    kernel = (weights * gamma[:, None, None, None]).transpose(2, 3, 1, 0)
    return kernel, bias * gamma + beta


def fold_input_normalisation(
    kernel: np.ndarray, bias: np.ndarray, mean_rgb: tuple[float, float, float], divisor: float = 256.0
) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``(x - mean) / divisor`` into a conv applied without padding."""
    mean = np.asarray(mean_rgb, np.float64)
    scaled = kernel / divisor
    return scaled, bias - np.einsum("rcio,i->o", scaled, mean)


def split_blocks(net: DlibNet) -> tuple[list[Layer], list[list[Layer]], list[Layer]]:
    """Split the layer list into stem, residual blocks and head, checking the shape."""
    kinds = net.kinds()
    stem_kinds = ["con", "affine", "relu", "max_pool"]
    if kinds[:4] != stem_kinds or kinds[-2:] != ["avg_pool", "fc"]:
        raise ValueError("not dlib's face ResNet: unexpected stem or head")
    layers = list(net.layers)
    blocks: list[list[Layer]] = []
    pos, end = 4, len(layers) - 2
    while pos < end:
        for pattern in (_PLAIN, _DOWN):
            if kinds[pos : pos + len(pattern)] == pattern:
                blocks.append(layers[pos : pos + len(pattern)])
                pos += len(pattern)
                break
        else:
            raise ValueError(f"not dlib's face ResNet: unexpected layers at {pos}: {kinds[pos : pos + 8]}")
    return layers[:4], blocks, layers[-2:]


def build_keras_model(net: DlibNet, *, source: str = "dlib net") -> Any:
    """Build a ``keras.Model`` mapping (N, 150, 150, 3) float pixels to (N, 128)."""
    tf = require_tensorflow()
    keras = tf.keras
    try:
        stem, blocks, head = split_blocks(net)
    except ValueError as exc:
        raise ModelFileError(source, str(exc)) from None

    def conv(x: Any, kernel: np.ndarray, bias: np.ndarray, stride: int, name: str) -> Any:
        layer = keras.layers.Conv2D(
            kernel.shape[-1],
            kernel.shape[:2],
            strides=stride,
            padding="valid" if stride != 1 else "same",
            name=name,
        )
        y = layer(x)
        layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        return y

    rows, cols = net.input_size
    inputs = keras.Input((rows, cols, 3), name="rgb_pixels")
    kernel, bias = fold_conv(stem[0], stem[1])
    kernel, bias = fold_input_normalisation(kernel, bias, net.input_mean_rgb)
    if stem[0].params["padding"] != 0:
        raise ModelFileError(source, "first conv is padded; input normalisation cannot be folded")
    x = conv(inputs, kernel, bias, int(stem[0].params["stride"]), "conv0")
    x = keras.layers.ReLU(name="relu0")(x)
    pool = stem[3].params
    x = keras.layers.MaxPooling2D(int(pool["size"]), int(pool["stride"]), "valid", name="maxpool0")(x)

    for index, block in enumerate(blocks):
        shortcut = x
        k1, b1 = fold_conv(block[0], block[1])
        k2, b2 = fold_conv(block[3], block[4])
        y = conv(x, k1, b1, int(block[0].params["stride"]), f"b{index}_conv1")
        y = keras.layers.ReLU(name=f"b{index}_relu1")(y)
        y = conv(y, k2, b2, 1, f"b{index}_conv2")
        if block[5].kind == "avg_pool":
            shortcut = _downsample_shortcut(keras, shortcut, block[5], int(k2.shape[-1]), f"b{index}")
        y, shortcut = _pad_to_match(keras, y, shortcut, f"b{index}")
        x = keras.layers.Add(name=f"b{index}_add")([y, shortcut])
        x = keras.layers.ReLU(name=f"b{index}_relu2")(x)

    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    dense = keras.layers.Dense(128, use_bias=False, name="fc")
    outputs = dense(x)
    dense.set_weights([np.asarray(head[1].params["weights"], np.float32)])
    return keras.Model(inputs, outputs, name="dlib_face_resnet_v1")


def _downsample_shortcut(keras: Any, x: Any, pool: Layer, channels: int, name: str) -> Any:
    """dlib's average-pooled shortcut, zero-padded to ``channels``.

    Where channels grow, "average pool + zero channels" is written as one
    strided conv whose weights are 1/(size*size) on the identity: exact in
    float, and unlike a channel PAD it stays inside XNNPACK's int8 graph.
    """
    size, stride = int(pool.params["size"]), int(pool.params["stride"])
    depth = int(x.shape[-1])
    if depth == channels:
        return keras.layers.AveragePooling2D(size, stride, "valid", name=f"{name}_pool")(x)
    layer = keras.layers.Conv2D(
        channels, size, strides=stride, padding="valid", use_bias=False, name=f"{name}_pool"
    )
    y = layer(x)
    kernel = np.zeros((size, size, depth, channels), np.float32)
    kernel[:, :, np.arange(depth), np.arange(depth)] = 1.0 / (size * size)
    layer.set_weights([kernel])
    return y


def _pad_to_match(keras: Any, a: Any, b: Any, name: str) -> tuple[Any, Any]:
    """Zero-pad two NHWC tensors at the bottom/right to equal height and width."""
    shape_a, shape_b = a.shape[1:], b.shape[1:]
    target = [max(p, q) for p, q in zip(shape_a, shape_b)]

    def pad(t: Any, shape: Any, tag: str) -> Any:
        dh, dw, dc = (target[i] - int(shape[i]) for i in range(3))
        if dc:  # _downsample_shortcut already matched the channels
            raise ValueError(f"{name}: branches differ in depth ({shape_a[-1]} vs {shape_b[-1]})")
        if dh or dw:
            t = keras.layers.ZeroPadding2D(((0, dh), (0, dw)), name=f"{name}_pad_{tag}")(t)
        return t

    return pad(a, shape_a, "main"), pad(b, shape_b, "short")


def reference_forward(net: DlibNet, chips: np.ndarray) -> np.ndarray:
    """Run the network in float64 numpy, unfolded, exactly as dlib defines it.

    Slow (seconds per chip); used by tests to check the Keras rebuild layer by
    layer without TensorFlow's conventions.
    """
    x = (np.asarray(chips, np.float64) - np.asarray(net.input_mean_rgb)) / 256.0
    stem, blocks, head = split_blocks(net)
    x = _np_affine(_np_conv(x, stem[0]), stem[1])
    x = _np_pool(np.maximum(x, 0), stem[3], np.max)
    for block in blocks:
        shortcut = x
        y = np.maximum(_np_affine(_np_conv(x, block[0]), block[1]), 0)
        y = _np_affine(_np_conv(y, block[3]), block[4])
        if block[5].kind == "avg_pool":
            shortcut = _np_pool(shortcut, block[5], np.mean)
        shape = [max(p, q) for p, q in zip(y.shape, shortcut.shape)]
        total = np.zeros(shape)
        total[:, : y.shape[1], : y.shape[2], : y.shape[3]] += y
        total[:, : shortcut.shape[1], : shortcut.shape[2], : shortcut.shape[3]] += shortcut
        x = np.maximum(total, 0)
    return np.asarray(x.mean(axis=(1, 2)) @ np.asarray(head[1].params["weights"], np.float64))


def _np_conv(x: np.ndarray, con: Layer) -> np.ndarray:
    w = np.asarray(con.params["weights"], np.float64)  # (out, in, r, c)
    stride, pad = int(con.params["stride"]), int(con.params["padding"])
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows, cols = w.shape[2], w.shape[3]
    out_h = (x.shape[1] - rows) // stride + 1
    out_w = (x.shape[2] - cols) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, w.shape[0]))
    for r in range(rows):
        for c in range(cols):
            patch = x[:, r : r + stride * out_h : stride, c : c + stride * out_w : stride, :]
            out += patch @ w[:, :, r, c].T
    return out + np.asarray(con.params["bias"], np.float64)


def _np_affine(x: np.ndarray, affine: Layer) -> np.ndarray:
    return x * np.asarray(affine.params["gamma"], np.float64) + np.asarray(affine.params["beta"], np.float64)


def _np_pool(x: np.ndarray, pool: Layer, reduce: Any) -> np.ndarray:
    size, stride = int(pool.params["size"]), int(pool.params["stride"])
    out_h = (x.shape[1] - size) // stride + 1
    out_w = (x.shape[2] - size) // stride + 1
    windows = [
        x[:, r : r + stride * out_h : stride, c : c + stride * out_w : stride, :]
        for r in range(size)
        for c in range(size)
    ]
    return np.asarray(reduce(np.stack(windows), axis=0))

"""Read dlib's serialized face-recognition ResNet (``.dat``) without dlib.

dlib writes a network as nested objects: an ``add_loss_layer`` holding the
loss details and the network, each ``add_layer`` holding its sub-network and
then its own details. Versions are therefore written outer-first, and layer
details innermost-first (input side first) as the recursion unwinds. Tag and
skip layers carry nothing but a version.

Primitive encodings (dlib/serialize.h):

- integers: one control byte (low nibble = byte count, 0x80 = negative)
  followed by that many little-endian magnitude bytes;
- float/double: an integer mantissa and an integer exponent (m * 2**e);
- bool: the character ``'0'`` or ``'1'``;
- string: an integer length and the raw bytes;
- tensor: version, four dims (n, k, nr, nc), then raw little-endian float32.

The reader only needs numpy; it is used by the conversion stage and by tests.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from facegate.errors import ModelFileError


@dataclasses.dataclass(frozen=True)
class Layer:
    """One computational layer of a dlib network, in input-to-output order."""

    kind: str  # "con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc"
    params: dict[str, np.ndarray | int | float]


@dataclasses.dataclass(frozen=True)
class DlibNet:
    """A parsed dlib metric network."""

    input_mean_rgb: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: tuple[Layer, ...]  # input side first
    loss_margin: float
    loss_distance_threshold: float

    @property
    def parameter_count(self) -> int:
        total = 0
        for layer in self.layers:
            for value in layer.params.values():
                if isinstance(value, np.ndarray):
                    total += value.size
        return total

    def kinds(self) -> list[str]:
        return [layer.kind for layer in self.layers]


_R = TypeVar("_R", bound="_Reader")


class _Reader:
    def __init__(self, data: bytes, path: pathlib.Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    @classmethod
    def open(cls: type[_R], path: str | pathlib.Path) -> _R:
        """Read the whole file; a missing or empty one is an error naming it."""
        path = pathlib.Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelFileError(path, f"cannot read: {exc.strerror}") from None
        reader = cls(data, path)
        if not data:
            raise reader.fail("file is empty")
        return reader

    def fail(self, problem: str) -> ModelFileError:
        return ModelFileError(self.path, f"{problem} (at byte {self.pos} of {len(self.data)})")

    def take(self, count: int) -> bytes:
        end = self.pos + count
        if count < 0 or end > len(self.data):
            raise self.fail(f"file ends early: wanted {count} more bytes; it is truncated")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def read_int(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x}; not a dlib file?")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def read_float(self) -> float:
        mantissa = self.read_int()
        exponent = self.read_int()
        return float(np.ldexp(float(mantissa), exponent))

    def read_bool(self) -> bool:
        char = self.take(1)
        if char not in (b"0", b"1"):
            raise self.fail(f"expected a bool ('0' or '1'), found {char!r}")
        return char == b"1"

    def read_string(self, limit: int = 256) -> str:
        length = self.read_int()
        if not 0 <= length <= limit:
            raise self.fail(f"implausible string length {length}")
        raw = self.take(length)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"expected a layer name, found bytes {raw[:16]!r}") from None

    def read_tensor(self) -> np.ndarray:
        version = self.read_int()
        if version != 2:
            raise self.fail(f"unsupported tensor version {version}")
        dims = [self.read_int() for _ in range(4)]
        if any(d < 0 for d in dims):
            raise self.fail(f"negative tensor dimension {dims}")
        count = int(np.prod(dims))
        return np.frombuffer(self.take(4 * count), dtype="<f4").reshape(dims).astype(np.float32)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.read_int()
        if version != 1:
            raise self.fail(f"unsupported alias_tensor version {version}")
        return (self.read_int(), self.read_int(), self.read_int(), self.read_int())

    def expect(self, value: int, what: str) -> None:
        got = self.read_int()
        if got != value:
            raise self.fail(f"expected {what} = {value}, found {got}")


def _split(params: np.ndarray, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    flat = params.reshape(-1)
    sizes = [int(np.prod(s)) for s in shapes]
    if sum(sizes) != flat.size:
        raise ValueError(f"parameter tensor of {flat.size} values does not hold {shapes}")
    out, start = [], 0
    for shape, size in zip(shapes, sizes):
        out.append(flat[start : start + size].reshape(shape))
        start += size
    return out


def _con(r: _Reader) -> Layer:
    params = r.read_tensor()
    filters, rows, cols = r.read_int(), r.read_int(), r.read_int()
    stride = (r.read_int(), r.read_int())
    padding = (r.read_int(), r.read_int())
    filt_dims = r.read_alias_tensor()
    r.read_alias_tensor()  # biases
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.read_float()
    in_ch = filt_dims[1]
    # dlib filters are (out, in, rows, cols), row-major.
    weights, bias = _split(params, (filters, in_ch, rows, cols), (filters,))
    return Layer("con", {"weights": weights, "bias": bias, "stride": stride[0], "padding": padding[0]})


def _affine(r: _Reader) -> Layer:
    params = r.read_tensor()
    gamma_dims = r.read_alias_tensor()
    r.read_alias_tensor()
    if r.read_int() != 0:  # 0 = CONV_MODE: one gamma/beta per channel
        raise ValueError("only per-channel (conv mode) affine layers are supported")
    channels = int(np.prod(gamma_dims))
    gamma, beta = _split(params, (channels,), (channels,))
    return Layer("affine", {"gamma": gamma, "beta": beta})


def _pool(kind: str) -> Callable[[_Reader], Layer]:
    def parse(r: _Reader) -> Layer:
        rows, cols, sy, _sx, py, _px = (r.read_int() for _ in range(6))
        return Layer(kind, {"size": rows, "size_x": cols, "stride": sy, "padding": py})

    return parse


def _fc(r: _Reader) -> Layer:
    outputs, inputs = r.read_int(), r.read_int()
    params = r.read_tensor()
    r.read_alias_tensor()
    r.read_alias_tensor()
    bias_mode = r.read_int()
    for _ in range(4):
        r.read_float()
    if bias_mode != 1:  # FC_NO_BIAS is the only mode the face network uses
        raise r.fail(f"unsupported fc bias mode {bias_mode}")
    (weights,) = _split(params, (inputs, outputs))
    return Layer("fc", {"weights": weights})


_PARSERS: dict[str, Callable[[_Reader], Layer]] = {
    "con_4": _con,
    "affine_": _affine,
    "relu_": lambda r: Layer("relu", {}),
    "add_prev_": lambda r: Layer("add_prev", {}),
    "max_pool_2": _pool("max_pool"),
    "avg_pool_2": _pool("avg_pool"),
    "fc_2": _fc,
}


def read_dlib_net(path: str | pathlib.Path) -> DlibNet:
    """Parse a dlib ``loss_metric`` network file such as
    ``dlib_face_recognition_resnet_model_v1.dat``.

    Raises :class:`ModelFileError` naming the file and the problem for a
    missing, truncated or foreign file.
    """
    r = _Reader.open(path)
    data = r.data
    r.expect(1, "loss layer version")
    loss_name = r.read_string()
    if loss_name != "loss_metric_2":
        raise r.fail(f"expected a dlib metric network ('loss_metric_2'), found {loss_name!r}")
    margin, threshold = r.read_float(), r.read_float()

    # Versions of the nested layers, outermost first: 2 = add_layer, 3 = the
    # add_layer next to the input, 1 = tag/skip (which hold nothing else).
    versions: list[int] = []
    while data[r.pos + 2 : r.pos + 7] != b"input":
        version = r.read_int()
        if version not in (1, 2, 3) or len(versions) > 10_000:
            raise r.fail(f"unexpected layer version {version}")
        versions.append(version)
    input_name = r.read_string()
    if input_name != "input_rgb_image_sized":
        raise r.fail(f"expected input layer 'input_rgb_image_sized', found {input_name!r}")
    mean = (r.read_float(), r.read_float(), r.read_float())
    size = (r.read_int(), r.read_int())

    layers: list[Layer] = []
    for version in reversed([v for v in versions if v != 1]):
        name = r.read_string()
        parser = _PARSERS.get(name)
        if parser is None:
            raise r.fail(f"unsupported layer type {name!r}")
        try:
            layers.append(parser(r))
        except ValueError as exc:
            raise r.fail(f"layer {name}: {exc}") from None
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, disabled
            r.read_bool()
        for _ in range(3):  # x_grad, cached_output, params_grad (empty when saved clean)
            r.read_tensor()
        if version == 3:  # the layer on the input also stores its sample expansion factor
            r.read_int()
    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos} unexpected trailing bytes")
    return DlibNet(
        input_mean_rgb=mean,
        input_size=size,
        layers=tuple(layers),
        loss_margin=margin,
        loss_distance_threshold=threshold,
    )

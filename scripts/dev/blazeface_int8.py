"""Can BlazeFace short range run as int8? Measured for issue 19: no, not by post-training
quantization (BENCHMARKS.md, "Speed at the door").

MediaPipe ships BlazeFace only as a float ``.tflite`` (fp16 weights dequantized at
load). TFLite's converter takes TensorFlow graphs, not ``.tflite`` files, so the graph
is rebuilt op by op in TensorFlow from the flatbuffer (same weights; its outputs equal
the float model's to 2e-4 px), then converted with full-integer quantization
(float input and outputs) on real detector inputs: letterboxed frames and refinement
crops of five_celebrity, unlabeled_scenes and facenet_pytorch_test_images (not the
evaluation sets). ``--float-heads`` keeps the detection heads float (the convolutions,
reshapes and concatenations that lead only to the outputs).

    P=.venv/bin/python
    $P scripts/dev/blazeface_int8.py gather /tmp/bf      # detector inputs (LiteRT)
    $P scripts/dev/blazeface_int8.py convert /tmp/bf     # int8 models (TensorFlow)
    $P scripts/dev/blazeface_int8.py compare /tmp/bf     # invoke time and output error

gather and compare run LiteRT, convert runs TensorFlow: one process each (the two
crash together), and TF_ENABLE_ONEDNN_OPTS=0 for TensorFlow (oneDNN's graph
rewrite segfaults on the rebuilt graph with TF 2.21).
"""

from __future__ import annotations

import os
import pathlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from PIL import Image

from facegate.convert.quantize import _convert
from facegate.convert.tf_import import require_tensorflow

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
MODEL = pathlib.Path(__file__).resolve().parents[2] / "models" / "face_detection_short_range.tflite"
DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "datasets"

_FLOAT16, _FLOAT32, _INT32, _INT64 = 1, 0, 2, 4
_DTYPES = {_FLOAT32: np.float32, _FLOAT16: np.float16, _INT32: np.int32, _INT64: np.int64}
_PADDING = {0: "SAME", 1: "VALID"}


def _schema() -> Any:
    require_tensorflow()
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


class TfliteGraph:
    """A float ``.tflite`` model's only subgraph, with its constant tensors as arrays."""

    def __init__(self, content: bytes) -> None:
        schema = _schema()
        self.model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
        if len(self.model.subgraphs) != 1:
            raise ValueError("expected a single-subgraph model")
        self.graph = self.model.subgraphs[0]
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        self.opcodes = [names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in self.model.operatorCodes]

    def op_name(self, op: Any) -> str:
        return str(self.opcodes[op.opcodeIndex])

    def constant(self, index: int) -> np.ndarray | None:
        tensor = self.graph.tensors[index]
        data = self.model.buffers[tensor.buffer].data
        if data is None or len(data) == 0:
            return None
        array = np.frombuffer(bytes(np.asarray(data, np.uint8)), _DTYPES[tensor.type])
        return array.reshape([int(d) for d in tensor.shape])

    def name(self, index: int) -> str:
        return bytes(self.graph.tensors[index].name).decode()


def _activation(tf: Any, x: Any, code: int) -> Any:
    if code == 0:
        return x
    if code == 1:
        return tf.nn.relu(x)
    if code == 3:
        return tf.nn.relu6(x)
    raise ValueError(f"fused activation {code} not supported")


def rebuild(graph: TfliteGraph) -> Callable[[Any], tuple[Any, ...]]:
    """A TensorFlow function computing the graph's outputs from its input, op by op."""
    tf = require_tensorflow()
    g = graph.graph

    def run(image: Any) -> tuple[Any, ...]:
        values: dict[int, Any] = {int(g.inputs[0]): image}

        def value(index: int) -> Any:
            if index not in values:
                const = graph.constant(index)
                if const is None:
                    raise ValueError(f"tensor {graph.name(index)} used before it is computed")
                values[index] = tf.constant(const)
            return values[index]

        for op in g.operators:
            kind = graph.op_name(op)
            ins, out, opt = [int(i) for i in op.inputs], int(op.outputs[0]), op.builtinOptions
            if kind == "DEQUANTIZE":
                values[out] = tf.constant(np.asarray(graph.constant(ins[0]), np.float32))
            elif kind == "CONV_2D":
                kernel = tf.transpose(value(ins[1]), [1, 2, 3, 0])  # OHWI -> HWIO
                y = tf.nn.conv2d(
                    value(ins[0]),
                    kernel,
                    strides=[1, opt.strideH, opt.strideW, 1],
                    padding=_PADDING[opt.padding],
                    dilations=[1, opt.dilationHFactor, opt.dilationWFactor, 1],
                )
                values[out] = _activation(tf, tf.nn.bias_add(y, value(ins[2])), opt.fusedActivationFunction)
            elif kind == "DEPTHWISE_CONV_2D":
                x = value(ins[0])
                channels = int(x.shape[-1])
                kernel = value(ins[1])  # (1, H, W, C * multiplier)
                kh, kw = int(kernel.shape[1]), int(kernel.shape[2])
                kernel = tf.reshape(kernel, [kh, kw, channels, int(kernel.shape[3]) // channels])
                y = tf.nn.depthwise_conv2d(
                    x,
                    kernel,
                    strides=[1, opt.strideH, opt.strideW, 1],
                    padding=_PADDING[opt.padding],
                    dilations=[opt.dilationHFactor, opt.dilationWFactor],
                )
                values[out] = _activation(tf, tf.nn.bias_add(y, value(ins[2])), opt.fusedActivationFunction)
            elif kind == "ADD":
                y = value(ins[0]) + value(ins[1])
                values[out] = _activation(tf, y, opt.fusedActivationFunction)
            elif kind == "RELU":
                values[out] = tf.nn.relu(value(ins[0]))
            elif kind == "PAD":
                values[out] = tf.pad(value(ins[0]), value(ins[1]))
            elif kind == "MAX_POOL_2D":
                values[out] = tf.nn.max_pool2d(
                    value(ins[0]),
                    ksize=[opt.filterHeight, opt.filterWidth],
                    strides=[opt.strideH, opt.strideW],
                    padding=_PADDING[opt.padding],
                )
                values[out] = _activation(tf, values[out], opt.fusedActivationFunction)
            elif kind == "RESHAPE":
                shape = [int(d) for d in g.tensors[out].shape]
                values[out] = tf.reshape(value(ins[0]), shape)
            elif kind == "CONCATENATION":
                y = tf.concat([value(i) for i in ins], axis=opt.axis)
                values[out] = _activation(tf, y, opt.fusedActivationFunction)
            else:
                raise ValueError(f"op {kind} not supported by the rebuild")
        return tuple(tf.identity(values[int(i)], name=graph.name(int(i))) for i in g.outputs)

    return run


def head_ops(graph: TfliteGraph) -> set[str]:
    """Names of the output tensors of the detection heads: every op from which only
    RESHAPE and CONCATENATION lead to a model output, and those ops themselves."""
    g = graph.graph
    producer = {int(op.outputs[0]): op for op in g.operators}
    heads: set[int] = set()
    stack = [int(i) for i in g.outputs]
    while stack:
        index = stack.pop()
        heads.add(index)
        op = producer.get(index)
        if op is None:
            continue
        kind = graph.op_name(op)
        if kind in ("RESHAPE", "CONCATENATION"):
            stack.extend(int(i) for i in op.inputs if graph.constant(int(i)) is None)
    return {graph.name(i) for i in heads}


def float_model(content: bytes) -> tuple[Any, TfliteGraph]:
    """(concrete TensorFlow function, parsed graph) for a float BlazeFace ``.tflite``."""
    tf = require_tensorflow()
    graph = TfliteGraph(content)
    shape = [int(d) for d in graph.graph.tensors[int(graph.graph.inputs[0])].shape]
    run = rebuild(graph)
    fn = tf.function(run, input_signature=[tf.TensorSpec(shape, tf.float32, name="input")])
    return fn.get_concrete_function(), graph


def to_int8(content: bytes, calibration: np.ndarray, float_heads: bool) -> bytes:
    """Full-integer int8 BlazeFace, float input and outputs (and float heads if asked).

    ``calibration`` is (N, S, S, 3) float32 detector inputs in [-1, 1], as
    ``FaceDetector`` feeds the model (letterboxed frames and refinement crops).
    """
    tf = require_tensorflow()
    concrete, _ = float_model(content)

    def representative() -> Iterator[list[np.ndarray]]:
        for sample in calibration:
            yield [sample[None].astype(np.float32)]

    def converter() -> Any:
        c = tf.lite.TFLiteConverter.from_concrete_functions([concrete], concrete)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = representative
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = tf.float32
        c.inference_output_type = tf.float32
        return c

    if not float_heads:
        return _convert(converter())
    # The heads' nodes are named as the converter names them: found on its float output.
    plain = tf.lite.TFLiteConverter.from_concrete_functions([concrete], concrete)
    heads = head_ops(TfliteGraph(_convert(plain)))
    c = converter()
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    debug = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=sorted(heads))
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=c, debug_dataset=representative, debug_options=debug
    )
    return bytes(debugger.get_nondebug_quantized_model())


def refine_crop(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The crop ``FaceDetector.refine`` feeds the detector: a square twice the face, black outside."""
    left, top, right, bottom = box
    side = max(2, round(2.0 * max(right - left, bottom - top)))
    x0, y0 = round((left + right) / 2 - side / 2), round((top + bottom) / 2 - side / 2)
    h, w = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    crop = np.zeros((side, side, 3), np.uint8)
    crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return crop


def gather(out: pathlib.Path) -> None:
    from facegate.detect import FaceDetector
    from facegate.images import load_rgb

    detector = FaceDetector(MODEL)
    paths = [
        p
        for folder in ("five_celebrity", "unlabeled_scenes", "facenet_pytorch_test_images")
        for p in sorted((DATA / folder).rglob("*"))
        if p.suffix.lower() in (".jpg", ".jpeg", ".png")
    ]
    inputs = []
    for path in paths:
        image = load_rgb(path)
        inputs.append(detector._letterbox(Image.fromarray(image), detector.size)[0])
        for det in detector.detect(image)[:3]:
            inputs.append(detector._letterbox(Image.fromarray(refine_crop(image, det.box)), detector.size)[0])
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "inputs.npy", np.stack(inputs))
    print(f"{len(inputs)} detector inputs from {len(paths)} images -> {out / 'inputs.npy'}")


def convert(out: pathlib.Path) -> None:
    content = MODEL.read_bytes()
    inputs = np.load(out / "inputs.npy")
    for float_heads, name in ((False, "int8.tflite"), (True, "int8_float_heads.tflite")):
        (out / name).write_bytes(to_int8(content, inputs, float_heads))
        print("wrote", out / name)


def compare(out: pathlib.Path) -> None:
    from facegate.interpreter import load_interpreter

    inputs = np.load(out / "inputs.npy")

    def outputs(interpreter: Any) -> tuple[int, int, int]:
        order = sorted(interpreter.get_output_details(), key=lambda d: int(d["shape"][-1]))
        return interpreter.get_input_details()[0]["index"], order[1]["index"], order[0]["index"]

    models = {"float (shipped)": MODEL, **{p.name: p for p in sorted(out.glob("int8*.tflite"))}}
    loaded = {k: load_interpreter(p, 1) for k, p in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(5):  # interleaved rounds: the machine is noisy
        for key, it in loaded.items():
            index = outputs(it)[0]
            t0 = time.perf_counter()
            for x in inputs[:50]:
                it.set_tensor(index, x[None])
                it.invoke()
            times[key].append((time.perf_counter() - t0) / 50 * 1e3)

    def run(it: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i, r, s = outputs(it)
        it.set_tensor(i, x[None])
        it.invoke()
        return it.get_tensor(r)[0].copy(), it.get_tensor(s)[0, :, 0].copy()

    plain = loaded.get("int8.tflite")
    if plain is not None:  # the range one int8 scale per tensor must cover
        spans: dict[str, float] = {}
        for t in plain.get_tensor_details():
            scale = float(t["quantization"][0])
            kind = (
                "depthwise outputs"
                if "depthwise" in t["name"]
                else "residual adds"
                if "add" in t["name"]
                else ""
            )
            if kind and t["dtype"] == np.int8:
                spans[kind] = max(spans.get(kind, 0.0), scale * 128)
        print("int8 activation span (+-):", {k: round(v) for k, v in spans.items()})
    reference = loaded.pop("float (shipped)")
    print(f"float (shipped): invoke {np.median(times['float (shipped)']):.2f} ms (1 thread)")
    for key, it in loaded.items():
        errors = []
        for x in inputs:
            regress, logits = run(reference, x)
            regress_q, _ = run(it, x)
            face = logits > 0  # anchors that score over 0.5
            if face.any():
                errors.append(np.abs(regress[face] - regress_q[face]).max(axis=0))
        err = np.array(errors)
        print(
            f"{key}: invoke {np.median(times[key]):.2f} ms; box/keypoint error on face anchors, "
            f"input px: median {np.median(err):.1f}, p95 {np.percentile(err, 95):.1f} "
            f"(columns: {np.round(np.median(err, 0).astype(float), 1).tolist()})"
        )


if __name__ == "__main__":
    step, folder = sys.argv[1], pathlib.Path(sys.argv[2])
    {"gather": gather, "convert": convert, "compare": compare}[step](folder)

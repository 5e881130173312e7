"""TFLite conversion: builtins-only encoder, decoder and multi-signature models.

Every model is converted from the SavedModel written by
`vqvae_tf.export.saved_model` (its `encode` / `decode` / `reconstruct` signatures,
DESIGN.md fact 3) with `supported_ops` limited to TFLite builtins, so an op
the pip runtimes cannot run fails here, at conversion, and not on a device
(fact 2). Inputs keep dynamic batch and spatial dimensions (shape signature
`[-1, -1, -1, C]`): a runtime resizes the input tensor to the image at hand
(`vqvae_tf.codec.lite_runtime` does) to any multiple of the downsampling factor.

Quantizations:

* `float32`: the reference; codes equal Keras's.
* `float16`: float16 weights, float32 arithmetic on CPU; half the size.
* `dynamic`: int8 weights, float activations (dynamic-range quantization),
  except the nearest-code search and the convolution reading the images,
  which keep float32 weights (`keep_float_ops`): >= 98% of codes as in
  float32, at about a third of the float32 size. A TRANSPOSE_CONV keeps
  float32 weights as well (the hybrid kernel is ~25x slower); the decoders
  of `vqvae_tf.models.networks` have none (they upsample with sub-pixel
  convolutions, see `subpixel_conv_transpose`).
* `int8`: int8 weights and activations calibrated on a representative
  dataset. By default the nearest-code search (the projection to the code
  space, the distance FULLY_CONNECTED and ARG_MAX) stays float32: int8
  distance scores tie among near-equal codes and changed about half of the
  codes of a small trained model, the float search keeps about 96.5% (DESIGN.md
  fact 13). Every convolution before it runs in int8; inputs and outputs are
  float32. The search's weights (codebook, projection) are stored float16
  and dequantized at load (`float16_search_weights`), which keeps the
  encoder file under 0.3x the float32 one. Standalone int8 RELUs (the
  residual blocks' pre-activation) are fused into copies of their
  producers (`fuse_standalone_relus`) so that XNNPACK runs every int8
  convolution block.
  With `int8_io=True` the whole graph is integer (builtins INT8 set), image
  inputs and outputs are int8 (use the tensors' scale and zero point), as
  microcontroller runtimes need; codes stay int32 in every variant. Expect
  lower code agreement from the int8 code search.
"""

import copy
import logging

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as tflite_schema
from tensorflow.lite.tools import flatbuffer_utils

from vqvae_tf.export.errors import ExportError

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
#: TFLite model name -> SavedModel signatures it holds.
MODELS = {"encoder": ("encode",), "decoder": ("decode",), "vqvae": ("encode", "decode", "reconstruct")}
#: Samples of the representative dataset fed to the int8 calibration.
MAX_CALIBRATION_SAMPLES = 256

_OP = tflite_schema.BuiltinOperator
_CONVOLUTIONS = {_OP.CONV_2D, _OP.DEPTHWISE_CONV_2D, _OP.TRANSPOSE_CONV}
_REDUCED_TYPES = {tflite_schema.TensorType.INT8, tflite_schema.TensorType.FLOAT16}


def convert(saved_model_dir, signatures, quantization, calibration=None, int8_io=False):
    """Converts signatures of a SavedModel to one TFLite flatbuffer.

    Args:
        saved_model_dir: directory written by `vqvae_tf.export.saved_model`.
        signatures: signature names, e.g. `("encode",)`.
        quantization: one of `QUANTIZATIONS`.
        calibration: for `int8`, a dict with `"images"` float32
            `(N, H, W, C)` in [0, 1] and `"codes"` int32 `(N, H/f, W/f)`
            (the float model's codes of those images).
        int8_io: for `int8`, integer-only graph with int8 image inputs and
            outputs.

    Returns:
        The model as bytes.
    """
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"unknown TFLite quantization {quantization!r}; expected one of {', '.join(QUANTIZATIONS)}")
    converter = _converter(saved_model_dir, signatures)
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        float_model = _run(_converter(saved_model_dir, signatures), signatures, "float32")
        return keep_float_ops(_run(converter, signatures, quantization), float_model)
    elif quantization == "int8":
        if calibration is None:
            raise ExportError("int8 quantization needs a representative dataset; received none")
        return _convert_int8(saved_model_dir, signatures, calibration, int8_io)
    return _run(converter, signatures, quantization)


def _converter(saved_model_dir, signatures):
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=list(signatures))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _run(converter, signatures, quantization):
    try:
        return converter.convert()
    except Exception as error:  # the converter raises many types; name the model and keep the cause
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(
            f"TFLite conversion of {'/'.join(signatures)} ({quantization}) failed: {first_line}"
        ) from error


def _representative(signatures, calibration):
    images = np.asarray(calibration["images"], np.float32)[:MAX_CALIBRATION_SAMPLES]
    codes = np.asarray(calibration["codes"], np.int32)[:MAX_CALIBRATION_SAMPLES]

    def samples():
        for i in range(len(images)):
            for name in signatures:
                value = {"codes": codes[i : i + 1]} if name == "decode" else {"images": images[i : i + 1]}
                yield name, value

    return samples


def _convert_int8(saved_model_dir, signatures, calibration, int8_io):
    converter = _converter(saved_model_dir, signatures)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(signatures, calibration)
    if int8_io:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        return fuse_standalone_relus(_run(converter, signatures, "int8"))
    float_nodes = code_search_nodes(_run(_converter(saved_model_dir, signatures), signatures, "float32"))
    if not float_nodes:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return fuse_standalone_relus(_run(converter, signatures, "int8"))
    # The public route to selective quantization: calibrate once, then
    # quantize everything except the named tensors' producers.
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=sorted(float_nodes))
    try:
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=lambda: iter(()),
            debug_options=options,
        )
        content = debugger.get_nondebug_quantized_model()
    except Exception as error:
        raise ExportError(f"TFLite int8 conversion of {'/'.join(signatures)} failed: {error}") from error
    return fuse_standalone_relus(float16_search_weights(_drop_shape_only_quantize(content)))


def _drop_shape_only_quantize(model_bytes):
    """Removes QUANTIZE ops whose output only feeds SHAPE ops.

    The selective quantizer leaves an int8 copy of the float latent whose only
    reader is the SHAPE of the final reshape; SHAPE reads the float tensor as
    well, so the copy (one pass over the latent map) is dropped.
    """
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    dropped = 0
    for graph in model.subgraphs:
        for op in [op for op in graph.operators if _code(model, op) == _OP.QUANTIZE]:
            out = op.outputs[0]
            readers = [other for other in graph.operators if out in other.inputs]
            if out in graph.outputs or not readers or any(_code(model, r) != _OP.SHAPE for r in readers):
                continue
            for reader in readers:
                reader.inputs = [op.inputs[0] if i == out else i for i in reader.inputs]
            graph.operators.remove(op)
            dropped += 1
    if not dropped:
        return model_bytes
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def float16_search_weights(model_bytes):
    """Stores the weights of the float32 code search as float16 constants.

    The int8 encoder keeps the nearest-code search float32 (module
    docstring); its codebook (K x D) and projection weights are then the
    largest constants of the file (a third of it for K = 512, D = 64). Each
    float32 weight operand of those ops becomes a float16 constant read
    through a DEQUANTIZE builtin, the layout of TFLite's own float16
    quantization: the search still computes in float32 (XNNPACK unpacks
    static float16 weights once, at load), on weights rounded to float16
    (11 significant bits; biases stay float32). On the test model this kept
    the same code agreement with the float model (tests/test_export.py).

    Args:
        model_bytes: a TFLite model whose code search (`code_search_nodes`)
            has float32 weights.

    Returns:
        The edited model as bytes (the input if no search weight is float32).
    """
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    users = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            users[tensor.buffer] = users.get(tensor.buffer, 0) + 1
    dequantize = None
    halves = {}  # float32 buffer -> its float16 buffer: signatures sharing a codebook share it again
    edited = 0
    for graph in model.subgraphs:
        inserted = []
        for op in _search_ops(model, graph):
            if _code(model, op) not in _CONVOLUTIONS | {_OP.FULLY_CONNECTED} or len(op.inputs) < 2:
                continue
            weights = graph.tensors[op.inputs[1]]
            data = model.buffers[weights.buffer].data if weights.buffer else None
            if data is None or weights.type != tflite_schema.TensorType.FLOAT32 or _quantized(weights):
                continue
            if weights.buffer not in halves:
                half = np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float32).astype(np.float16)
                model.buffers.append(tflite_schema.BufferT())
                model.buffers[-1].data = np.frombuffer(half.tobytes(), np.uint8)
                halves[weights.buffer] = len(model.buffers) - 1
            constant = tflite_schema.TensorT()
            constant.shape, constant.type = list(weights.shape), tflite_schema.TensorType.FLOAT16
            constant.buffer, constant.name = halves[weights.buffer], weights.name + b"_float16"
            graph.tensors.append(constant)
            # The float32 tensor stays, now computed at run time (an empty
            # buffer); its old data goes unless another tensor shares it.
            users[weights.buffer] -= 1
            if not users[weights.buffer]:
                model.buffers[weights.buffer].data = None
            model.buffers.append(tflite_schema.BufferT())
            weights.buffer = len(model.buffers) - 1
            if dequantize is None:
                dequantize = _opcode_index(model, _OP.DEQUANTIZE, version=3)  # version 3: float16 input
            operator = tflite_schema.OperatorT()
            operator.opcodeIndex, operator.inputs, operator.outputs = dequantize, [len(graph.tensors) - 1], [op.inputs[1]]
            inserted.append(operator)
        # Constants first, as the converter writes them: every reader runs later.
        graph.operators[:0] = inserted
        edited += len(inserted)
    if not edited:
        return model_bytes
    logger.info("Stored %d weight tensor(s) of the float code search as float16.", edited)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


#: Ops whose builtin options carry a fused activation that XNNPACK runs in int8.
_FUSIBLE = {_OP.CONV_2D, _OP.DEPTHWISE_CONV_2D, _OP.ADD}


def fuse_standalone_relus(model_bytes):
    """Computes each standalone int8 RELU as a copy of its producer with a fused RELU.

    The residual blocks apply `relu` to a tensor that the skip connection
    also reads un-activated, so the converter cannot fuse that RELU into the
    convolution or ADD that makes the tensor, and leaves a standalone int8
    RELU. XNNPACK does not take a standalone int8 RELU: it runs in LiteRT's
    single-threaded kernel and splits the delegated graph around it. On a
    512x512 image that was over half of the int8 encoder's time (d4k512:
    59 -> 27 ms). The RELU becomes a second copy of its producer (same
    inputs and weights, `fused_activation_function=RELU`) that writes the
    RELU's output tensor with its quantization, so the activation is
    applied while requantizing the accumulator: one rounding instead of
    two, and the copy runs in XNNPACK. A producer left with no reader is
    dropped. Float RELUs are left alone (XNNPACK runs them).

    Args:
        model_bytes: a TFLite model.

    Returns:
        The edited model as bytes (the input if there was nothing to fuse).
    """
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    fused = 0
    for graph in model.subgraphs:
        producer = {out: op for op in graph.operators for out in op.outputs}
        for relu in [op for op in graph.operators if _code(model, op) == _OP.RELU]:
            source = producer.get(relu.inputs[0])
            if (graph.tensors[relu.inputs[0]].type != tflite_schema.TensorType.INT8 or source is None
                    or _code(model, source) not in _FUSIBLE or len(source.outputs) != 1
                    or getattr(source.builtinOptions, "fusedActivationFunction", None)
                    != tflite_schema.ActivationFunctionType.NONE):
                continue
            activated = copy.deepcopy(source)  # shares tensor indices, owns its options
            activated.builtinOptions.fusedActivationFunction = tflite_schema.ActivationFunctionType.RELU
            activated.outputs = list(relu.outputs)
            graph.operators[graph.operators.index(relu)] = activated
            fused += 1
            out = source.outputs[0]
            if out not in graph.outputs and not any(out in op.inputs for op in graph.operators):
                graph.operators.remove(source)
    if not fused:
        return model_bytes
    logger.info("Fused %d standalone int8 RELU(s) into a copy of their producer.", fused)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _opcode_index(model, builtin, version):
    """Index of `builtin` in the model's operator codes (added if missing), at least `version`."""
    for index, entry in enumerate(model.operatorCodes):
        if max(entry.builtinCode, entry.deprecatedBuiltinCode) == builtin:
            entry.version = max(entry.version, version)
            return index
    entry = tflite_schema.OperatorCodeT()
    entry.builtinCode = entry.deprecatedBuiltinCode = builtin
    entry.version = version
    model.operatorCodes.append(entry)
    return len(model.operatorCodes) - 1


def keep_float_ops(model_bytes, float_model_bytes):
    """Gives the code search and a few other ops of a dynamic-range model float32 weights again.

    Dynamic-range quantization stores every weight as int8 and runs hybrid
    ops that also round their input to int8 at run time. Two places move
    codes across near-ties: the nearest-code search (the distance
    FULLY_CONNECTED feeding ARG_MAX, and the ops back to the projection
    convolution, see `code_search_nodes`), and the convolution reading the
    images (symmetric int8 keeps 7 bits of a [0, 1] image, coarser than the
    uint8 photo itself). On the small trained model of the tests, keeping
    them float32 raises code agreement with float32 from 96.8% to 98.3%
    (the codebook alone: 97.4%). Both are small (the codebook, a
    projection, a convolution with C input channels). Transposed
    convolutions stay float32 too, for speed (see `float_kept_ops`). The
    converter has no public switch for single ops in this mode, so this
    edits the flatbuffer:
    each quantized constant input of those ops (weights, bias) gets the
    values of the same operand of the same op in the float32 conversion
    (same signature, op found by its output tensor's name), type FLOAT32 and
    no quantization; a DEQUANTIZE that fed it is dropped. Those ops then run
    the float32 kernels; the graph keeps builtin ops only.

    Args:
        model_bytes: the quantized TFLite model.
        float_model_bytes: the float32 conversion of the same signatures.

    Returns:
        The edited model as bytes (the input if nothing there is quantized).

    Raises:
        ExportError: a quantized constant has no float32 twin.
    """
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    reference = flatbuffer_utils.convert_bytearray_to_object(bytearray(float_model_bytes))
    edits = []  # (tensor, float32 data)
    for index, graph in enumerate(model.subgraphs):
        float_graph = reference.subgraphs[_matching_subgraph(model, reference, index)]
        # Constants may be renamed (deduplicated, "pseudo_qconst") by
        # quantization, activations keep their names: find the float op by
        # its output name, then its operand at the same position.
        float_ops = {float_graph.tensors[op.outputs[0]].name: op for op in float_graph.operators}
        producer = {out: op for op in graph.operators for out in op.outputs}
        for op in float_kept_ops(model, graph):
            for position, tensor_index in enumerate(op.inputs[1:], start=1):
                if tensor_index < 0:
                    continue
                source = producer.get(tensor_index)
                if source is not None and _code(model, source) == _OP.DEQUANTIZE:
                    # Only a constant behind a DEQUANTIZE; a DEQUANTIZE of an
                    # activation has no float twin to restore.
                    if model.buffers[graph.tensors[source.inputs[0]].buffer].data is None:
                        continue
                    tensor_index = op.inputs[position] = source.inputs[0]
                    if not any(source.outputs[0] in other.inputs for other in graph.operators):
                        graph.operators.remove(source)
                tensor = graph.tensors[tensor_index]
                if not _quantized(tensor) and tensor.type not in _REDUCED_TYPES:
                    continue  # float32 already, or an integer operand such as a shape
                twin = _float_operand(float_graph, float_ops.get(graph.tensors[op.outputs[0]].name), position)
                data = None if twin is None else reference.buffers[twin.buffer].data
                if data is None or twin.type != tflite_schema.TensorType.FLOAT32 or list(twin.shape) != list(
                    tensor.shape
                ):
                    raise ExportError(
                        f"cannot restore float32 weights: operand {position} of "
                        f"{graph.tensors[op.outputs[0]].name.decode()!r} ({tensor.name.decode()!r}, shaped "
                        f"{list(tensor.shape)}) has no float32 constant in the float32 conversion"
                    )
                edits.append((tensor, data))
    if not edits:
        return model_bytes
    users = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            users.setdefault(tensor.buffer, []).append(tensor)
    edited = {id(tensor) for tensor, _ in edits}
    moved = {}  # old buffer -> float32 buffer, so tensors sharing a constant keep sharing it
    for tensor, data in edits:
        old = tensor.buffer
        if old not in moved:
            if all(id(t) in edited for t in users[old]):
                moved[old] = old
            else:
                model.buffers.append(tflite_schema.BufferT())
                moved[old] = len(model.buffers) - 1
            model.buffers[moved[old]].data = data
        tensor.buffer = moved[old]
        tensor.type = tflite_schema.TensorType.FLOAT32
        tensor.quantization = None
    logger.info("Kept %d constant(s) of the code search, image and transposed convolutions float32.", len(edits))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _code(model, op):
    entry = model.operatorCodes[op.opcodeIndex]
    return max(entry.builtinCode, entry.deprecatedBuiltinCode)


def _float_operand(graph, op, position):
    """Input `position` of `op` in a float32 graph; None if there is none."""
    if op is None or position >= len(op.inputs) or op.inputs[position] < 0:
        return None
    return graph.tensors[op.inputs[position]]


def float_kept_ops(model, graph):
    """Ops of a dynamic-range `graph` that `keep_float_ops` gives float32 weights.

    The code search, the convolutions reading a float32 graph input (the
    images), and every TRANSPOSE_CONV: LiteRT has no fast hybrid kernel for
    it (a 512x512 decode took 8.1 s instead of 0.32 s in float32).
    """
    inputs = {i for i in graph.inputs if graph.tensors[i].type == tflite_schema.TensorType.FLOAT32}
    reading_images = [op for op in graph.operators if _code(model, op) in _CONVOLUTIONS and op.inputs[0] in inputs]
    transposed = [op for op in graph.operators if _code(model, op) == _OP.TRANSPOSE_CONV]
    return list({id(op): op for op in _search_ops(model, graph) + reading_images + transposed}.values())


def _quantized(tensor):
    q = tensor.quantization
    return q is not None and q.scale is not None and len(q.scale) > 0


def _matching_subgraph(model, reference, index):
    """Index in `reference` of the subgraph serving the same signature as `model`'s subgraph `index`."""
    keys = {s.subgraphIndex: s.signatureKey for s in (model.signatureDefs or [])}
    if index in keys:
        for signature in reference.signatureDefs or []:
            if signature.signatureKey == keys[index]:
                return signature.subgraphIndex
    if index < len(reference.subgraphs):
        return index
    raise ExportError(f"cannot keep the code search float32: no float32 subgraph matches subgraph {index}")


def code_search_nodes(model_bytes):
    """Output tensor names of the nearest-code search in a float TFLite model.

    The search is every FULLY_CONNECTED feeding an ARG_MAX, the ARG_MAX, and
    the ops between the last convolution and the FULLY_CONNECTED (reshapes,
    L2 normalisation), the convolution included: its output is the latent
    vector whose int8 rounding would move codes across near-ties.
    """
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    return {
        graph.tensors[i].name.decode()
        for graph in model.subgraphs
        for op in _search_ops(model, graph)
        for i in op.outputs
    }


def _search_ops(model, graph):
    """The ops of `graph` that make up the nearest-code search (see `code_search_nodes`)."""
    producer = {out: op for op in graph.operators for out in op.outputs}
    argmaxes = [op for op in graph.operators if _code(model, op) == _OP.ARG_MAX]
    found = []
    for op in graph.operators:
        if _code(model, op) != _OP.FULLY_CONNECTED:
            continue
        feeds = [a for a in argmaxes if a.inputs[0] == op.outputs[0]]
        if not feeds:
            continue
        found += [op] + feeds
        pending, seen = [op.inputs[0]], set()
        while pending:
            tensor = pending.pop()
            source = producer.get(tensor)
            if source is None or tensor in seen:
                continue
            seen.add(tensor)
            found.append(source)
            if _code(model, source) not in _CONVOLUTIONS:
                pending.extend(i for i in source.inputs if i >= 0)
    return list({id(op): op for op in found}.values())


def check_runs(model_bytes, signatures, downsample, channels, rank=2, code_axes=()):
    """Loads a TFLite model in the LiteRT interpreter and runs each signature once."""
    from ai_edge_litert.interpreter import Interpreter

    spatial = (2 * downsample,) * rank
    try:
        interpreter = Interpreter(model_content=model_bytes, num_threads=1)
        for name in signatures:
            runner = interpreter.get_signature_runner(name)
            (input_name, detail), = runner.get_input_details().items()
            if name == "decode":
                value = np.zeros((1,) + tuple(s // downsample for s in spatial) + tuple(code_axes), np.int32)
            else:
                value = np.zeros((1,) + spatial + (channels,), detail["dtype"])
            runner(**{input_name: value})
    except Exception as error:
        raise ExportError(f"the TFLite model of {'/'.join(signatures)} does not run in LiteRT: {error}") from error

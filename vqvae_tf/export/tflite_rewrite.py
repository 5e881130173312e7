"""Edits of converted TFLite flatbuffers where the converter has no switch.

* `keep_float_ops`: the code search, the convolutions reading the images
  and transposed convolutions of a dynamic-range model get float32
  weights again.
* `float16_search_weights`: the float32 code search of an int8 model reads
  float16 constants (half the bytes) through DEQUANTIZE.
* `drop_shape_only_quantize`: a QUANTIZE read only by SHAPE ops is dropped.

The int8 RELU rewrites (`fuse_standalone_relus`, `share_relu_copies`) are in
`vqvae_tf.export.tflite_relus`.

Each takes and returns model bytes, and returns its input unchanged when
there is nothing to edit. Why each edit pays is in `vqvae_tf.export.tflite`'s
module docstring and in docs/design.md, fact 13.
"""

import logging

import numpy as np
from tensorflow.lite.python import schema_py_generated as tflite_schema

from vqvae_tf.export.errors import ExportError
from vqvae_tf.export.tflite_graph import (
    CONVOLUTIONS,
    OP,
    REDUCED_TYPES,
    float_kept_ops,
    is_quantized,
    load,
    op_code,
    producers,
    save,
    search_ops,
)

logger = logging.getLogger(__name__)


def drop_shape_only_quantize(model_bytes):
    """Removes QUANTIZE ops whose output only feeds SHAPE ops.

    The selective quantizer leaves an int8 copy of the float latent whose only
    reader is the SHAPE of the final reshape; SHAPE reads the float tensor as
    well, so the copy (one pass over the latent map) is dropped.
    """
    model = load(model_bytes)
    dropped = 0
    for graph in model.subgraphs:
        for op in [op for op in graph.operators if op_code(model, op) == OP.QUANTIZE]:
            out = op.outputs[0]
            readers = [other for other in graph.operators if out in other.inputs]
            if out in graph.outputs or not readers or any(op_code(model, r) != OP.SHAPE for r in readers):
                continue
            for reader in readers:
                reader.inputs = [op.inputs[0] if i == out else i for i in reader.inputs]
            graph.operators.remove(op)
            dropped += 1
    return save(model) if dropped else model_bytes


def float16_search_weights(model_bytes):
    """Stores the weights of the float32 code search as float16 constants.

    The int8 encoder keeps the nearest-code search float32
    (`vqvae_tf.export.tflite`); its codebook (K x D) and projection weights are then the
    largest constants of the file (a third of it for K = 512, D = 64). Each
    float32 weight operand of those ops becomes a float16 constant read
    through a DEQUANTIZE builtin, the layout of TFLite's own float16
    quantization: the search still computes in float32 (XNNPACK unpacks
    static float16 weights once, at load), on weights rounded to float16
    (11 significant bits; biases stay float32). On the test model this kept
    the same code agreement with the float model (tests/export/test_export.py).

    Args:
        model_bytes: a TFLite model whose code search (`code_search_nodes`)
            has float32 weights.

    Returns:
        The edited model as bytes (the input if no search weight is float32).
    """
    model = load(model_bytes)
    users = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            users[tensor.buffer] = users.get(tensor.buffer, 0) + 1
    dequantize = None
    halves = {}  # float32 buffer -> its float16 buffer: signatures sharing a codebook share it again
    edited = 0
    for graph in model.subgraphs:
        inserted = []
        for op in search_ops(model, graph):
            if op_code(model, op) not in CONVOLUTIONS | {OP.FULLY_CONNECTED} or len(op.inputs) < 2:
                continue
            weights = graph.tensors[op.inputs[1]]
            data = model.buffers[weights.buffer].data if weights.buffer else None
            if data is None or weights.type != tflite_schema.TensorType.FLOAT32 or is_quantized(weights):
                continue
            if dequantize is None:
                dequantize = _opcode_index(model, OP.DEQUANTIZE, version=3)  # version 3: float16 input
            inserted.append(_dequantized_float16(model, graph, op.inputs[1], halves, users, dequantize))
        # Constants first, as the converter writes them: every reader runs later.
        graph.operators[:0] = inserted
        edited += len(inserted)
    if not edited:
        return model_bytes
    logger.info("Stored %d weight tensor(s) of the float code search as float16.", edited)
    return save(model)


def _dequantized_float16(model, graph, index, halves, users, dequantize):
    """Makes float32 constant `graph.tensors[index]` the output of a DEQUANTIZE of a float16 copy.

    Returns the DEQUANTIZE op, for the caller to insert. `halves` maps a
    float32 buffer to its float16 copy (shared constants stay shared),
    `users` counts the tensors of each buffer (updated here).
    """
    weights = graph.tensors[index]
    if weights.buffer not in halves:
        data = model.buffers[weights.buffer].data
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
    operator = tflite_schema.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = dequantize, [len(graph.tensors) - 1], [index]
    return operator


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


def _float_operand(graph, op, position):
    """Input `position` of `op` in a float32 graph; None if there is none."""
    if op is None or position >= len(op.inputs) or op.inputs[position] < 0:
        return None
    return graph.tensors[op.inputs[position]]


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
    model, reference = load(model_bytes), load(float_model_bytes)
    edits = []  # (tensor, float32 data)
    for index, graph in enumerate(model.subgraphs):
        float_graph = reference.subgraphs[_matching_subgraph(model, reference, index)]
        edits += _float_operands(model, graph, reference, float_graph)
    if not edits:
        return model_bytes
    _store_float32(model, edits)
    logger.info("Kept %d constant(s) of the code search, image and transposed convolutions float32.", len(edits))
    return save(model)


def _float_operands(model, graph, reference, float_graph):
    """`(tensor, float32 data)` for each quantized constant input of the ops kept float32 in `graph`.

    Constants may be renamed (deduplicated, "pseudo_qconst") by
    quantization, activations keep their names: the float op is found by its
    output name, then its operand at the same position.
    """
    float_ops = {float_graph.tensors[op.outputs[0]].name: op for op in float_graph.operators}
    producer = producers(graph)
    edits = []
    for op in float_kept_ops(model, graph):
        for position, tensor_index in enumerate(op.inputs[1:], start=1):
            if tensor_index < 0:
                continue
            tensor_index = _skip_dequantize(model, graph, op, position, producer.get(tensor_index))
            if tensor_index is None:
                continue
            tensor = graph.tensors[tensor_index]
            if not is_quantized(tensor) and tensor.type not in REDUCED_TYPES:
                continue  # float32 already, or an integer operand such as a shape
            twin = _float_operand(float_graph, float_ops.get(graph.tensors[op.outputs[0]].name), position)
            data = None if twin is None else reference.buffers[twin.buffer].data
            if data is None or twin.type != tflite_schema.TensorType.FLOAT32 or list(twin.shape) != list(tensor.shape):
                raise ExportError(
                    f"cannot restore float32 weights: operand {position} of "
                    f"{graph.tensors[op.outputs[0]].name.decode()!r} ({tensor.name.decode()!r}, shaped "
                    f"{list(tensor.shape)}) has no float32 constant in the float32 conversion"
                )
            edits.append((tensor, data))
    return edits


def _skip_dequantize(model, graph, op, position, source):
    """The tensor `op` should read at `position`: a DEQUANTIZEd constant directly.

    When input `position` of `op` is a DEQUANTIZE of a constant, `op` reads
    the constant instead and the DEQUANTIZE goes once nothing reads it.
    Returns None for a DEQUANTIZE of an activation (no float twin to
    restore), else the input's tensor index.
    """
    if source is None or op_code(model, source) != OP.DEQUANTIZE:
        return op.inputs[position]
    if model.buffers[graph.tensors[source.inputs[0]].buffer].data is None:
        return None
    op.inputs[position] = source.inputs[0]
    if not any(source.outputs[0] in other.inputs for other in graph.operators):
        graph.operators.remove(source)
    return source.inputs[0]


def _store_float32(model, edits):
    """Gives each edited tensor its float32 data, type FLOAT32 and no quantization.

    Tensors sharing a constant keep sharing it: the old buffer is reused
    when every tensor reading it is edited, else the data go to a new one.
    """
    users = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            users.setdefault(tensor.buffer, []).append(tensor)
    edited = {id(tensor) for tensor, _ in edits}
    moved = {}  # old buffer -> float32 buffer
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

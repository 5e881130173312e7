"""Int8 RELUs that XNNPACK runs: edits of converted TFLite flatbuffers.

* `fuse_standalone_relus`: a standalone int8 RELU becomes a copy of its
  producer with a fused RELU, so XNNPACK runs the whole block.
* `share_relu_copies`: a RELU copy of a convolution whose un-activated
  output is still read becomes a 1x1 identity depthwise convolution of that
  output with a fused RELU, instead of a second full convolution.

`vqvae_tf.export.tflite` runs both, in that order, on every int8 model. Each
takes and returns model bytes, and returns its input unchanged when there is
nothing to edit.
"""

import copy
import logging

import numpy as np
from tensorflow.lite.python import schema_py_generated as tflite_schema

from vqvae_tf.export.tflite_graph import OP, load, op_code, producers, save
from vqvae_tf.export.tflite_rewrite import _opcode_index

logger = logging.getLogger(__name__)

#: Ops whose builtin options carry a fused activation that XNNPACK runs in int8.
_FUSIBLE = {OP.CONV_2D, OP.DEPTHWISE_CONV_2D, OP.ADD}


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
    model = load(model_bytes)
    fused = 0
    for graph in model.subgraphs:
        producer = producers(graph)
        for relu in [op for op in graph.operators if op_code(model, op) == OP.RELU]:
            source = producer.get(relu.inputs[0])
            if (
                graph.tensors[relu.inputs[0]].type != tflite_schema.TensorType.INT8
                or source is None
                or op_code(model, source) not in _FUSIBLE
                or len(source.outputs) != 1
                or getattr(source.builtinOptions, "fusedActivationFunction", None)
                != tflite_schema.ActivationFunctionType.NONE
            ):
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
    return save(model)


def share_relu_copies(model_bytes):
    """Replaces each int8 convolution copied for its RELU by a 1x1 identity depthwise convolution.

    `fuse_standalone_relus` gives a residual block's pre-activation RELU its
    own copy of the producer. For an ADD that copy costs an addition; for a
    convolution whose un-activated output the skip connection still reads,
    it runs the whole convolution twice: in the d8k512x4 encoder, a 3x3
    convolution of 192 channels at an eighth of the resolution, 2.0 of its
    12.3 G multiply-adds. Here the copy becomes a DEPTHWISE_CONV_2D of
    kernel 1x1 that reads the original's int8 output, with weights of one
    (int8 127 at scale 1/127 per channel, bias 0) and a fused RELU, writing
    the copy's output tensor with its quantization: XNNPACK runs it, at one
    multiply-add per value. It rounds twice (the convolution, then the
    requantization) where the copy rounded once, as the standalone RELU did.

    Args:
        model_bytes: a TFLite model.

    Returns:
        The edited model as bytes (the input if there was nothing to share).
    """
    model = load(model_bytes)
    relu, none = tflite_schema.ActivationFunctionType.RELU, tflite_schema.ActivationFunctionType.NONE
    shared = 0
    for graph in model.subgraphs:
        convolutions = [op for op in graph.operators if op_code(model, op) in (OP.CONV_2D, OP.DEPTHWISE_CONV_2D)]
        for copy_op in convolutions:
            if copy_op.builtinOptions.fusedActivationFunction != relu:
                continue
            twin = next(
                (
                    op
                    for op in convolutions
                    if op is not copy_op
                    and op.opcodeIndex == copy_op.opcodeIndex
                    and list(op.inputs) == list(copy_op.inputs)
                    and op.builtinOptions.fusedActivationFunction == none
                ),
                None,
            )
            if twin is None or graph.tensors[twin.outputs[0]].type != tflite_schema.TensorType.INT8:
                continue
            graph.operators[graph.operators.index(copy_op)] = _identity_depthwise(
                model, graph, twin.outputs[0], copy_op.outputs[0]
            )
            shared += 1
    if not shared:
        return model_bytes
    logger.info("Replaced %d RELU copies of convolutions by 1x1 identity depthwise convolutions.", shared)
    return save(model)


def _identity_depthwise(model, graph, source, target):
    """A DEPTHWISE_CONV_2D op, 1x1 kernel of ones and fused RELU, from int8 tensor `source` to `target`."""
    channels = int(graph.tensors[source].shape[-1])
    scale = float(graph.tensors[source].quantization.scale[0])
    weights = _new_tensor(
        model,
        graph,
        "identity_weights",
        [1, 1, 1, channels],
        tflite_schema.TensorType.INT8,
        np.full(channels, 127, np.int8),
        [1.0 / 127.0] * channels,
        quantized_dimension=3,
    )
    bias = _new_tensor(
        model,
        graph,
        "identity_bias",
        [channels],
        tflite_schema.TensorType.INT32,
        np.zeros(channels, np.int32),
        [scale / 127.0] * channels,
        quantized_dimension=0,
    )
    options = tflite_schema.DepthwiseConv2DOptionsT()
    options.padding = tflite_schema.Padding.VALID
    options.strideW = options.strideH = options.depthMultiplier = 1
    options.dilationWFactor = options.dilationHFactor = 1
    options.fusedActivationFunction = tflite_schema.ActivationFunctionType.RELU
    op = tflite_schema.OperatorT()
    op.opcodeIndex = _opcode_index(model, OP.DEPTHWISE_CONV_2D, 3)  # version 3: per-channel int8 weights
    op.inputs, op.outputs = [source, weights, bias], [target]
    op.builtinOptionsType = tflite_schema.BuiltinOptions.DepthwiseConv2DOptions
    op.builtinOptions = options
    return op


def _new_tensor(model, graph, name, shape, dtype, values, scales, quantized_dimension):
    """Appends a constant tensor (its own buffer) with per-channel quantization; returns its index."""
    buffer = tflite_schema.BufferT()
    buffer.data = np.frombuffer(values.tobytes(), np.uint8)
    model.buffers.append(buffer)
    quantization = tflite_schema.QuantizationParametersT()
    quantization.scale, quantization.zeroPoint = list(scales), [0] * len(scales)
    quantization.quantizedDimension = quantized_dimension
    tensor = tflite_schema.TensorT()
    tensor.shape, tensor.type, tensor.buffer = list(shape), dtype, len(model.buffers) - 1
    tensor.name = f"{name}_{len(graph.tensors)}".encode()
    tensor.quantization = quantization
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1

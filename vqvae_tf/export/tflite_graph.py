"""Reading a TFLite flatbuffer: op codes, the nearest-code search, and the ops that stay float32.

The rewrites of `vqvae_tf.export.tflite_rewrite` and the checks of the tests
find their ops with these helpers. A model is read with
`flatbuffer_utils.convert_bytearray_to_object` (`load`) and written back with
`save`.
"""

from tensorflow.lite.python import schema_py_generated as tflite_schema
from tensorflow.lite.tools import flatbuffer_utils

OP = tflite_schema.BuiltinOperator
CONVOLUTIONS = {OP.CONV_2D, OP.DEPTHWISE_CONV_2D, OP.TRANSPOSE_CONV}
#: Tensor types of weights a quantization rewrote (int8, or float16 weights).
REDUCED_TYPES = {tflite_schema.TensorType.INT8, tflite_schema.TensorType.FLOAT16}


def load(model_bytes):
    """The mutable object tree (`ModelT`) of a TFLite model."""
    return flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))


def save(model):
    """A `ModelT` as TFLite bytes."""
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def op_code(model, op):
    """The builtin operator of `op` (`OP.CONV_2D`, ...)."""
    entry = model.operatorCodes[op.opcodeIndex]
    return max(entry.builtinCode, entry.deprecatedBuiltinCode)


def custom_ops(model_bytes):
    """Sorted names of the custom operators of a TFLite model (Flex ops are `Flex...`); empty for builtins only."""
    model = load(model_bytes)
    return sorted(
        {
            (entry.customCode or b"CUSTOM").decode()
            for entry in model.operatorCodes
            if max(entry.builtinCode, entry.deprecatedBuiltinCode) == OP.CUSTOM
        }
    )


def is_quantized(tensor):
    """True if `tensor` carries quantization scales."""
    q = tensor.quantization
    return q is not None and q.scale is not None and len(q.scale) > 0


def producers(graph):
    """Tensor index -> the op of `graph` writing it."""
    return {out: op for op in graph.operators for out in op.outputs}


def code_search_nodes(model_bytes):
    """Output tensor names of the nearest-code search in a float TFLite model.

    The search is every FULLY_CONNECTED feeding an ARG_MAX, the ARG_MAX, and
    the ops between the last convolution and the FULLY_CONNECTED (reshapes,
    L2 normalisation), the convolution included: its output is the latent
    vector whose int8 rounding would move codes across near-ties.
    """
    model = load(model_bytes)
    return {
        graph.tensors[i].name.decode()
        for graph in model.subgraphs
        for op in search_ops(model, graph)
        for i in op.outputs
    }


def search_ops(model, graph):
    """The ops of `graph` that make up the nearest-code search (see `code_search_nodes`)."""
    producer = producers(graph)
    argmaxes = [op for op in graph.operators if op_code(model, op) == OP.ARG_MAX]
    found = []
    for op in graph.operators:
        if op_code(model, op) != OP.FULLY_CONNECTED:
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
            if op_code(model, source) not in CONVOLUTIONS:
                pending.extend(i for i in source.inputs if i >= 0)
    return list({id(op): op for op in found}.values())


def float_kept_ops(model, graph):
    """Ops of a dynamic-range `graph` that `keep_float_ops` gives float32 weights.

    The code search, the convolutions reading a float32 graph input (the
    images), and every TRANSPOSE_CONV: LiteRT has no fast hybrid kernel for
    it (a 512x512 decode took 8.1 s instead of 0.32 s in float32).
    """
    inputs = {i for i in graph.inputs if graph.tensors[i].type == tflite_schema.TensorType.FLOAT32}
    reading_images = [op for op in graph.operators if op_code(model, op) in CONVOLUTIONS and op.inputs[0] in inputs]
    transposed = [op for op in graph.operators if op_code(model, op) == OP.TRANSPOSE_CONV]
    return list({id(op): op for op in search_ops(model, graph) + reading_images + transposed}.values())

"""ONNX models (tf2onnx) of the `encode`, `decode` and `reconstruct` endpoints.

tf2onnx logs an unsupported op and writes a model that cannot run (docs/design.md,
fact 10), so every converted model is loaded in onnxruntime and run once on
a small input before it is accepted. Inputs and outputs carry the names of
the SavedModel signatures (`images`, `codes`, `reconstruction`) and named
dynamic dimensions (`batch`, `height`, `width`, `code_height`,
`code_width`). Opsets 15 to 18 are accepted (tf2onnx 1.17 rejects 19).

Run one with onnxruntime:

    import onnxruntime as ort
    session = ort.InferenceSession("OUT/onnx/encoder.onnx", providers=["CPUExecutionProvider"])
    codes = session.run(["codes"], {"images": images_float32_nhwc})[0]
"""

import logging

import numpy as np
import tensorflow as tf

from vqvae_tf.export.errors import ExportError
from vqvae_tf.export.opsets import DEFAULT_OPSET, check_opset
from vqvae_tf.export.saved_model import code_axes, endpoint_functions, input_specs

logger = logging.getLogger(__name__)

#: ONNX file name -> endpoint it holds.
MODELS = {"encoder": "encode", "decoder": "decode", "reconstruct": "reconstruct"}


def convert(model, endpoint, opset=DEFAULT_OPSET):
    """Converts one endpoint of a VQVAE to a checked ONNX model.

    Args:
        model: a built `vqvae_tf.VQVAE`.
        endpoint: `"encode"`, `"decode"` or `"reconstruct"`.
        opset: ONNX opset, 15 to 18. Defaults to 17.

    Returns:
        The serialized ONNX model (bytes), already run once in onnxruntime.
    """
    import tf2onnx  # slow to import; only the ONNX path needs it

    opset = check_opset(opset)
    spec = input_specs(model)[endpoint]
    function = tf.function(endpoint_functions(model)[endpoint], input_signature=[spec], autograph=False)
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=[spec], opset=opset)
    except Exception as error:
        raise ExportError(f"ONNX conversion of {endpoint!r} (opset {opset}) failed: {error}") from error
    _name_dimensions(proto, model.rank)
    content = proto.SerializeToString()
    check_runs(content, endpoint, model)
    return content


def _name_dimensions(proto, rank):
    spatial = ("height", "width")[:rank] if rank == 2 else ("length",)
    names = {
        "images": ("batch",) + spatial,
        "reconstruction": ("batch",) + spatial,
        "codes": ("batch",) + tuple(f"code_{s}" for s in spatial),
    }
    for value in list(proto.graph.input) + list(proto.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, names.get(value.name, ())):
            if not dim.HasField("dim_value"):
                dim.dim_param = name


def check_runs(content, endpoint, model):
    """Loads an ONNX model in onnxruntime and runs it once on a small input."""
    import onnxruntime

    size = model.downsample * 2
    spatial = (size,) * model.rank
    if endpoint == "decode":
        shape = (1,) + tuple(s // model.downsample for s in spatial) + code_axes(model)
        feed = {"codes": np.zeros(shape, np.int32)}
    else:
        feed = {"images": np.full((1,) + spatial + (model.input_channels,), 0.5, np.float32)}
    try:
        session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
        outputs = session.run(None, feed)
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(
            f"the ONNX model of {endpoint!r} does not run in onnxruntime (unsupported op?): {first_line}"
        ) from error
    if not outputs or not all(np.all(np.isfinite(o)) for o in outputs):
        raise ExportError(f"the ONNX model of {endpoint!r} produced no or non-finite outputs in onnxruntime")

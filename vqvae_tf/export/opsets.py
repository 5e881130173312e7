"""ONNX opsets the exporter accepts (light: the CLI validates before importing TensorFlow)."""

from vqvae_tf.export.errors import ExportError
from vqvae_tf.utils.checks import is_int

#: tf2onnx 1.17 converts to opsets 15 to 18 and rejects 19 (docs/design.md, fact 10).
OPSETS = (15, 16, 17, 18)
DEFAULT_OPSET = 17


def check_opset(opset):
    """`opset` as an int; `ExportError` unless tf2onnx 1.17 converts to it."""
    if not is_int(opset) or int(opset) not in OPSETS:
        raise ExportError(f"ONNX opset must be one of {', '.join(map(str, OPSETS))}; received {opset!r}")
    return int(opset)

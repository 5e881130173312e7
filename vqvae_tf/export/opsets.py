"""ONNX opsets the exporter accepts (light: the CLI validates before importing TensorFlow)."""

import numpy as np

from vqvae_tf.export.errors import ExportError

#: tf2onnx 1.17 converts to opsets 15 to 18 and rejects 19 (DESIGN.md fact 10).
OPSETS = (15, 16, 17, 18)
DEFAULT_OPSET = 17


def check_opset(opset):
    """`opset` as an int; `ExportError` unless tf2onnx 1.17 converts to it."""
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or int(opset) not in OPSETS:
        raise ExportError(f"ONNX opset must be one of {', '.join(map(str, OPSETS))}; received {opset!r}")
    return int(opset)

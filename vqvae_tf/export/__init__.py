"""Exporters: SavedModel (TF Serving), TFLite (float32, float16, dynamic, int8) and ONNX.

`export_model(model, out_dir)` writes every format with a JSON sidecar per
file and checks each artifact numerically in its own runtime. The command
line is `python -m export` (a checkout) or `vqvae-export` (installed).
"""

from vqvae_tf.export.api import FORMATS, QUANTIZATIONS, export_model, load_vqvae
from vqvae_tf.export.errors import ExportError

__all__ = ["FORMATS", "QUANTIZATIONS", "ExportError", "export_model", "load_vqvae"]

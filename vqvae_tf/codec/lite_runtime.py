"""Run exported TFLite encoders and decoders on a device: LiteRT + NumPy only.

This module imports neither TensorFlow nor Keras, so it runs where only
`ai-edge-litert` and NumPy are installed. It reads the JSON sidecar written
next to each model by `python -m export` (schema in `vqvae_tf.export.metadata`),
validates inputs up front with messages that say what was expected, resizes
the model's dynamic input to each batch, and quantizes / dequantizes the
image tensors of int8-IO models with the scale and zero point stored in the
model.

Example:

>>> encoder = LiteEncoder("export/tflite/encoder_int8.tflite")
>>> codes = encoder.encode(photo_uint8)          # (H/f, W/f) int32
>>> decoder = LiteDecoder("export/tflite/decoder_float32.tflite")
>>> assert decoder.model_id == encoder.model_id  # same trained weights
>>> image = decoder.decode(codes)                # (H, W, 3) float32, ~[0, 1]
"""

import json
import logging
from pathlib import Path

import numpy as np

from vqvae_tf.utils.checks import check_int

logger = logging.getLogger(__name__)

SCHEMA = "vqvae_tf.export/1"
DEFAULT_NUM_THREADS = 2


def read_sidecar(model_path):
    """The metadata dict of `NAME.tflite`, read from `NAME.json`."""
    path = Path(model_path).with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"metadata sidecar {path} not found; it is written next to the model by the exporter")
    try:
        metadata = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"metadata sidecar {path} is not valid JSON: {error}") from None
    if not isinstance(metadata, dict) or metadata.get("schema") != SCHEMA:
        received = metadata.get("schema") if isinstance(metadata, dict) else type(metadata).__name__
        raise ValueError(f"metadata sidecar {path} has schema {received!r}; expected {SCHEMA!r}")
    return metadata


class _LiteModel:
    """One signature of an exported TFLite model plus its sidecar."""

    _signature = None
    _input = None
    _output = None

    def __init__(self, path, num_threads=DEFAULT_NUM_THREADS):
        from ai_edge_litert.interpreter import Interpreter

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"TFLite model {path} not found")
        check_int("num_threads", num_threads, minimum=1)
        self.path = path
        self.metadata = read_sidecar(path)
        if self._signature not in self.metadata.get("signatures", {}):
            raise ValueError(
                f"{path} has signatures {sorted(self.metadata.get('signatures', {}))}; "
                f"{type(self).__name__} needs {self._signature!r}"
            )
        self.downsample = int(self.metadata["downsample"])
        self.num_codes = int(self.metadata["num_codes"])
        self.channels = int(self.metadata["input_channels"])
        self.rank = int(self.metadata.get("rank", 2))
        self.model_id = self.metadata["model_id"]
        self.code_shape = tuple(int(n) for n in self.metadata.get("code_shape", ()))
        # Residual decoders exported since the rate-control format: the code
        # that marks a stage absent (None: every stage must be present).
        absent = self.metadata.get("absent_code")
        self.absent_code = None if absent is None else int(absent)
        self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self._runner = self._interpreter.get_signature_runner(self._signature)
        self._input_detail = self._runner.get_input_details()[self._input]
        self._output_detail = self._runner.get_output_details()[self._output]

    def _run(self, value):
        return self._runner(**{self._input: value})[self._output]

    def _check_spatial(self, shape, factor, what):
        spatial = shape[1 : 1 + self.rank]
        if any(s < 1 for s in spatial) or any(s % factor for s in spatial):
            raise ValueError(f"{what} sizes must be positive multiples of {factor}; received shape {tuple(shape)}")

    def __repr__(self):
        return f"{type(self).__name__}({str(self.path)!r}, quantization={self.metadata.get('quantization')!r})"


class LiteEncoder(_LiteModel):
    """Images to int32 code maps with an exported TFLite encoder.

    Args:
        path: `encoder_<q>.tflite` (or `vqvae_<q>.tflite`) written by the
            exporter, with its `.json` sidecar next to it.
        num_threads: interpreter threads. Defaults to 2.

    `encode(images)`: images `(B, H, W, C)` or one image `(H, W, C)`,
    uint8 in [0, 255] or float in [0, 1]; H and W multiples of
    `downsample`. Returns int32 codes `(B, H/f, W/f)` (or `(H/f, W/f)`).
    A rank-1 (audio) encoder takes float `(B, L, C)` or `(L, C)` in the
    sidecar's `value_range`, [-1, 1], and returns codes `(B, L/f)`.
    """

    _signature, _input, _output = "encode", "images", "codes"

    def encode(self, images):
        images = np.asarray(images)
        single = images.ndim == self.rank + 1
        if single:
            images = images[None]
        layout = "(B, H, W, C) or (H, W, C)" if self.rank == 2 else "(B, L, C) or (L, C)"
        if images.ndim != self.rank + 2 or images.shape[-1] != self.channels:
            raise ValueError(
                f"encode expects images shaped {layout} with C={self.channels}; received shape {np.shape(images)}"
            )
        self._check_spatial(images.shape, self.downsample, "image")
        # The sidecar's value_range: [0, 1] for images (or uint8), [-1, 1] for audio.
        low_ok, high_ok = (float(v) for v in self.metadata.get("value_range", (0.0, 1.0)))
        what = "images" if self.rank == 2 else "audio"
        if images.dtype == np.uint8 and (low_ok, high_ok) == (0.0, 1.0):
            images = images.astype(np.float32) / 255.0
        elif np.issubdtype(images.dtype, np.floating):
            images = images.astype(np.float32)
            if not np.all(np.isfinite(images)):
                raise ValueError(
                    f"encode expects finite float {what} in [{low_ok:g}, {high_ok:g}]; received NaN or Inf"
                )
            low, high = float(images.min()), float(images.max())
            if low < low_ok - 1e-3 or high > high_ok + 1e-3:
                raise ValueError(
                    f"encode expects float {what} in [{low_ok:g}, {high_ok:g}]"
                    + (" (or uint8)" if low_ok == 0.0 else "")
                    + f"; received values in [{low:g}, {high:g}]"
                )
        else:
            expected = "uint8 or float" if low_ok == 0.0 else "float"
            raise TypeError(f"encode expects {expected} {what}; received dtype {images.dtype}")
        codes = self._run(_quantize(images, self._input_detail)).astype(np.int32, copy=False)
        return codes[0] if single else codes


class LiteDecoder(_LiteModel):
    """int code maps to float images with an exported TFLite decoder.

    Args:
        path: `decoder_<q>.tflite` (or `vqvae_<q>.tflite`) with its sidecar.
        num_threads: interpreter threads. Defaults to 2.

    `decode(codes)`: integer codes `(B, h, w)` or one map `(h, w)` in
    `[0, num_codes)` (plus the sidecar's `code_shape` axes, e.g. residual
    stages). A residual decoder whose sidecar names an `absent_code`
    (`num_codes`) also takes that code for a stage left out: decoding the
    first `n` stages is decoding them with the later stages absent.
    Returns float32 images `(B, h*f, w*f, C)` (or without the batch axis),
    nominally in [0, 1] (not clipped).
    """

    _signature, _input, _output = "decode", "codes", "images"

    def decode(self, codes):
        codes = np.asarray(codes)
        axes = len(self.code_shape)
        single = codes.ndim == self.rank + axes
        if single:
            codes = codes[None]
        if codes.ndim != self.rank + 1 + axes or codes.shape[codes.ndim - axes :] != self.code_shape:
            extra = "".join(f", {n}" for n in self.code_shape)
            raise ValueError(
                f"decode expects code maps shaped (B, h, w{extra}) or (h, w{extra}); received shape {np.shape(codes)}"
            )
        if not np.issubdtype(codes.dtype, np.integer):
            raise TypeError(f"decode expects integer codes; received dtype {codes.dtype}")
        self._check_spatial(codes.shape, 1, "code map")
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high > (self.num_codes - 1 if self.absent_code is None else self.absent_code):
            allowed = f"[0, {self.num_codes})" + (
                "" if self.absent_code is None else f" or {self.absent_code} (absent)"
            )
            raise ValueError(f"decode expects codes in {allowed}; received values in [{low}, {high}]")
        images = _dequantize(self._run(codes.astype(np.int32)), self._output_detail)
        return images[0] if single else images


def _quantize(values, detail):
    if detail["dtype"] == np.float32:
        return values
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantize(values, detail):
    if values.dtype == np.float32:
        return values
    scale, zero_point = detail["quantization"]
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)

"""TFLite conversion: builtins-only encoder, decoder and multi-signature models.

Every model is converted from the SavedModel written by
`vqvae_tf.export.saved_model` (its `encode` / `decode` / `reconstruct` signatures,
docs/design.md, fact 3) with `supported_ops` limited to TFLite builtins, so an op
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
  codes of a small trained model, the float search keeps about 96.5% (docs/design.md,
  fact 13). Every convolution before it runs in int8; inputs and outputs are
  float32. The search's weights (codebook, projection) are stored float16
  and dequantized at load (`float16_search_weights`), which keeps the
  encoder file under 0.3x the float32 one. Standalone int8 RELUs (the
  residual blocks' pre-activation) are fused into copies of their
  producers (`fuse_standalone_relus`) so that XNNPACK runs every int8
  convolution block; a copy of a convolution whose raw output is still
  read becomes a 1x1 identity depthwise convolution (`share_relu_copies`).
  With `int8_io=True` the whole graph is integer (builtins INT8 set), image
  inputs and outputs are int8 (use the tensors' scale and zero point), as
  microcontroller runtimes need; codes stay int32 in every variant. Expect
  lower code agreement from the int8 code search.
"""

import logging

import numpy as np
import tensorflow as tf

from vqvae_tf.export.errors import ExportError
from vqvae_tf.export.tflite_graph import code_search_nodes, float_kept_ops
from vqvae_tf.export.tflite_relus import fuse_standalone_relus, share_relu_copies
from vqvae_tf.export.tflite_rewrite import drop_shape_only_quantize, float16_search_weights, keep_float_ops

logger = logging.getLogger(__name__)

# The flatbuffer queries and rewrites live in tflite_graph, tflite_rewrite and tflite_relus;
# their public names stay importable from here (`export.tflite.fuse_standalone_relus`).
__all__ = [
    "MAX_CALIBRATION_SAMPLES",
    "MODELS",
    "QUANTIZATIONS",
    "check_runs",
    "code_search_nodes",
    "convert",
    "float16_search_weights",
    "float_kept_ops",
    "fuse_standalone_relus",
    "keep_float_ops",
    "share_relu_copies",
]

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
#: TFLite model name -> SavedModel signatures it holds.
MODELS = {"encoder": ("encode",), "decoder": ("decode",), "vqvae": ("encode", "decode", "reconstruct")}
#: Samples of the representative dataset fed to the int8 calibration.
MAX_CALIBRATION_SAMPLES = 256


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
        return _xnnpack_relus(_run(converter, signatures, "int8"))
    float_nodes = code_search_nodes(_run(_converter(saved_model_dir, signatures), signatures, "float32"))
    if not float_nodes:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return _xnnpack_relus(_run(converter, signatures, "int8"))
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
    return _xnnpack_relus(float16_search_weights(drop_shape_only_quantize(content)))


def _xnnpack_relus(content):
    # Each int8 RELU fused into an op XNNPACK runs, without computing a convolution twice (tflite_relus).
    return share_relu_copies(fuse_standalone_relus(content))


def check_runs(model_bytes, signatures, downsample, channels, rank=2, code_axes=()):
    """Loads a TFLite model in the LiteRT interpreter and runs each signature once."""
    from ai_edge_litert.interpreter import Interpreter

    spatial = (2 * downsample,) * rank
    try:
        interpreter = Interpreter(model_content=model_bytes, num_threads=1)
        for name in signatures:
            runner = interpreter.get_signature_runner(name)
            ((input_name, detail),) = runner.get_input_details().items()
            if name == "decode":
                value = np.zeros((1,) + tuple(s // downsample for s in spatial) + tuple(code_axes), np.int32)
            else:
                value = np.zeros((1,) + spatial + (channels,), detail["dtype"])
            runner(**{input_name: value})
    except Exception as error:
        raise ExportError(f"the TFLite model of {'/'.join(signatures)} does not run in LiteRT: {error}") from error

"""What a runtime needs to know about an exported model: the JSON sidecar.

Every `.tflite` and `.onnx` file `NAME.EXT` travels with `NAME.json`
(`vqvae_tf.codec.lite_runtime` reads it). Schema `vqvae_tf.export/1`:

    {
      "schema": "vqvae_tf.export/1",
      "model_id": "3f9c0a...",          # 16 hex digits: SHA-256 of config + weights;
                                       # an encoder and a decoder match iff equal
      "format": "tflite",              # or "onnx"
      "name": "encoder_int8",          # file stem
      "signatures": {                  # endpoint -> tensor names
        "encode": {"inputs": ["images"], "outputs": ["codes"]}
      },
      "quantization": "int8",          # float32 | float16 | dynamic | int8
      "int8_io": false,                # true: image tensors are int8 (scale, zero point in the model)
      "input_channels": 3,
      "downsample": 4,                 # spatial sizes must be positive multiples of it
      "rank": 2,                       # spatial axes: 2 = images (B, H, W, C)
      "num_codes": 512,                # codes are int32 in [0, num_codes)
      "code_dim": 64,
      "value_range": [0.0, 1.0],       # float images, NHWC; [-1.0, 1.0] for rank-1 audio (B, L, C)
      "input_size_rule": "height and width: positive multiples of 4",
      "code_dtype": "int32",
      "code_shape": [],                # trailing code axes per position: [S] for S residual stages
      "absent_code": 512,              # residual models only: the code a decoder reads as "stage absent"
      "quantizer": "ema",
      "l2_normalize": false,
      "versions": {"vqvae_tf": "0.1.0", "tensorflow": "2.21.0", "keras": "3.15.1"}
    }

Speech-network models (`VQVAE(strides=...)`) add `"strides"`, `"causal"`,
`"algorithmic_latency"` and `"receptive_field"` (samples), and
`"sample_rate"` (Hz) when the model has one.

The export directory also holds `export.json`: the same model fields plus
every file written with its size in bytes and SHA-256.
"""

import keras
import tensorflow as tf

from vqvae_tf.codec.lite_runtime import SCHEMA  # the runtime that reads the sidecar owns its schema name
from vqvae_tf.utils import atomic
from vqvae_tf.utils.fingerprint import model_id  # noqa: F401  (the exporter's model id, defined with the other fingerprint)


def model_fields(model, identifier):
    """The fields of the sidecar that describe the model itself."""
    import vqvae_tf
    from vqvae_tf.export.saved_model import code_axes

    spatial = "height and width" if model.rank == 2 else "length"
    return {
        "schema": SCHEMA,
        "model_id": identifier,
        "input_channels": int(model.input_channels),
        "downsample": int(model.downsample),
        "rank": int(model.rank),
        "num_codes": int(model.num_codes),
        "code_dim": int(model.code_dim),
        "value_range": [-1.0, 1.0] if model.rank == 1 else [0.0, 1.0],
        "input_size_rule": f"{spatial}: positive multiples of {model.downsample}",
        "code_dtype": "int32",
        "code_shape": list(code_axes(model)),
        # Residual quantizers: the index a decoder reads as "stage absent" (a
        # zero vector), so one decoder decodes any prefix of the stages.
        **({"absent_code": int(model.quantizer.absent_code)} if hasattr(model.quantizer, "absent_code") else {}),
        "quantizer": model.quantizer_name,
        "l2_normalize": bool(getattr(model.quantizer, "l2_normalize", False)),
        "versions": {"vqvae_tf": vqvae_tf.__version__, "tensorflow": tf.__version__, "keras": keras.__version__},
        **_speech_fields(model),
    }


def _speech_fields(model):
    if getattr(model, "strides", None) is None:
        return {}
    fields = dict(
        strides=list(model.strides),
        causal=bool(model.causal),
        algorithmic_latency=int(model.algorithmic_latency),
        receptive_field=int(model.receptive_field),
    )
    if getattr(model, "frame_length", 1) != 1:
        fields["frame_length"] = int(model.frame_length)
    if model.sample_rate is not None:
        fields["sample_rate"] = int(model.sample_rate)
    return fields


def sidecar(fields, fmt, name, signatures, quantization="float32", int8_io=False):
    """The sidecar dict of one exported file (see the module docstring)."""
    from vqvae_tf.export.saved_model import SIGNATURE_IO

    entry = dict(fields)
    entry.update(
        format=fmt,
        name=name,
        signatures={s: {"inputs": [SIGNATURE_IO[s][0]], "outputs": [SIGNATURE_IO[s][1]]} for s in signatures},
        quantization=quantization,
        int8_io=bool(int8_io),
    )
    return entry


def write_json(path, value):
    """Writes a sidecar or manifest atomically, keys sorted (stable diffs)."""
    atomic.write_json(path, value, sort_keys=True)

"""vqvae_tf: VQ-VAE for Keras 3 / TensorFlow.

Where TensorFlow is installed, importing the package registers every layer
and model with Keras, so `keras.models.load_model("model.keras")` works after
a plain `import vqvae_tf`. On a device without TensorFlow, the package still
imports, and the TensorFlow-free modules (`vqvae_tf.bitstream`, the LiteRT
runtime) work; public names resolve lazily (PEP 562).
"""

import importlib
import importlib.util

__version__ = "0.1.0"

_EXPORTS = {
    "VectorQuantizer": "vqvae_tf.quantizers",
    "VectorQuantizerEMA": "vqvae_tf.quantizers",
    "QUANTIZERS": "vqvae_tf.quantizers",
    "get_quantizer": "vqvae_tf.quantizers",
    "Encoder": "vqvae_tf.networks",
    "Decoder": "vqvae_tf.networks",
    "ResidualBlock": "vqvae_tf.networks",
    "VQVAE": "vqvae_tf.vqvae",
    "DeadCodes": "vqvae_tf.metrics",
    "make_datasets": "vqvae_tf.data",
    "DatasetBundle": "vqvae_tf.data",
    "DatasetError": "vqvae_tf.data",
    "PHOTOS_VALIDATION": "vqvae_tf.data",
    "BitstreamError": "vqvae_tf.bitstream",
    "encode_stream": "vqvae_tf.bitstream",
    "decode_stream": "vqvae_tf.bitstream",
    "read_header": "vqvae_tf.bitstream",
}

# Modules whose import registers Keras-serializable classes.
_KERAS_MODULES = ("vqvae_tf.quantizers", "vqvae_tf.networks", "vqvae_tf.metrics", "vqvae_tf.vqvae")

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vqvae_tf' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))


if importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("keras") is not None:
    for _module in _KERAS_MODULES:
        importlib.import_module(_module)

"""vqvae_tf: VQ-VAE for Keras 3 / TensorFlow.

Public names are imported lazily (PEP 562), so that `vqvae_tf.bitstream` and
the LiteRT runtime helpers can be used on a device without TensorFlow.
"""

import importlib

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
    "BitstreamError": "vqvae_tf.bitstream",
    "encode_stream": "vqvae_tf.bitstream",
    "decode_stream": "vqvae_tf.bitstream",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vqvae_tf' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))

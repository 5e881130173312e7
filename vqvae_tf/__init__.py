"""vqvae_tf: VQ-VAE for Keras 3 / TensorFlow.

Where TensorFlow is installed, importing the package registers every layer
and model with Keras, so `keras.models.load_model("model.keras")` works after
a plain `import vqvae_tf` (except in the codec's command line, `python -m
vqvae_tf.codec`, which starts without TensorFlow). On a device without
TensorFlow, the package still imports, and the TensorFlow-free modules
(`vqvae_tf.bitstream`, the LiteRT runtime) work; public names resolve
lazily (PEP 562).
"""

import importlib
import importlib.util
import sys

__version__ = "0.1.0"

_EXPORTS = {
    # Layers and models.
    "VectorQuantizer": "vqvae_tf.quantizers",
    "VectorQuantizerEMA": "vqvae_tf.quantizers",
    "QUANTIZERS": "vqvae_tf.quantizers",
    "get_quantizer": "vqvae_tf.quantizers",
    "ResidualVectorQuantizer": "vqvae_tf.residual_quantizer",
    "FiniteScalarQuantizer": "vqvae_tf.fsq",
    "GumbelQuantizer": "vqvae_tf.gumbel_quantizer",
    "GumbelTemperatureSchedule": "vqvae_tf.gumbel_quantizer",
    "rotate_to_codes": "vqvae_tf.rotation",
    "nearest_codes": "vqvae_tf.code_search",
    "Encoder": "vqvae_tf.networks",
    "Decoder": "vqvae_tf.networks",
    "ResidualBlock": "vqvae_tf.networks",
    "VQVAE": "vqvae_tf.vqvae",
    "DeadCodes": "vqvae_tf.metrics",
    "GatedPixelCNN": "vqvae_tf.pixelcnn",
    "TransformerPrior": "vqvae_tf.transformer_prior",
    "UnigramPrior": "vqvae_tf.prior",
    "nll_per_code": "vqvae_tf.prior",
    "bits_per_dim": "vqvae_tf.prior",
    "GaussianVAE": "vqvae_tf.gaussian_vae",
    # Data, training, distribution.
    "make_datasets": "vqvae_tf.data",
    "DatasetBundle": "vqvae_tf.data",
    "DatasetError": "vqvae_tf.data",
    "PHOTOS_VALIDATION": "vqvae_tf.data",
    "TrainConfig": "vqvae_tf.config",
    "ConfigError": "vqvae_tf.config",
    "train_and_evaluate": "vqvae_tf.training",
    "PriorConfig": "vqvae_tf.prior_training",
    "train_prior": "vqvae_tf.prior_training",
    "make_strategy": "vqvae_tf.distribute",
    "StrategyError": "vqvae_tf.distribute",
    # Devices and files (TensorFlow-free).
    "LiteEncoder": "vqvae_tf.lite_runtime",
    "LiteDecoder": "vqvae_tf.lite_runtime",
    "compress": "vqvae_tf.codec",
    "decompress": "vqvae_tf.codec",
    "CodecError": "vqvae_tf.codec",
    "BitstreamError": "vqvae_tf.bitstream",
    "encode_stream": "vqvae_tf.bitstream",
    "decode_stream": "vqvae_tf.bitstream",
    "read_header": "vqvae_tf.bitstream",
}

# Modules whose import registers Keras-serializable classes.
_KERAS_MODULES = (
    "vqvae_tf.quantizers",
    "vqvae_tf.residual_quantizer",
    "vqvae_tf.fsq",
    "vqvae_tf.gumbel_quantizer",
    "vqvae_tf.networks",
    "vqvae_tf.metrics",
    "vqvae_tf.vqvae",
    "vqvae_tf.prior",
    "vqvae_tf.pixelcnn",
    "vqvae_tf.transformer_prior",
    "vqvae_tf.gaussian_vae",
)

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vqvae_tf' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))


# The codec's command line (`python -m vqvae_tf.codec ...`) runs LiteRT and
# NumPy; its prior method imports the Keras classes it loads. Registering
# every class here would import TensorFlow first: 5-7 s of start-up for a
# command whose work takes milliseconds.
_CODEC_COMMAND = list(getattr(sys, "orig_argv", ())[1:3]) == ["-m", "vqvae_tf.codec"]

if (not _CODEC_COMMAND and importlib.util.find_spec("tensorflow") is not None
        and importlib.util.find_spec("keras") is not None):
    for _module in _KERAS_MODULES:
        importlib.import_module(_module)

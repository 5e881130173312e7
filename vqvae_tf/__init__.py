"""vqvae_tf: VQ-VAE for Keras 3 / TensorFlow.

Where TensorFlow is installed, importing the package registers every layer
and model with Keras, so `keras.models.load_model("model.keras")` works after
a plain `import vqvae_tf` (except in the codec's command line, `python -m
vqvae_tf.codec`, which starts without TensorFlow). On a device without
TensorFlow, the package still imports, and the codec (`vqvae_tf.codec`: the
bitstream, the LiteRT runtime) works; public names resolve lazily (PEP 562).

Layout, one concept per package (see docs/design.md): `quantizers`,
`models`, `priors`, `data`, `training`, `export`, `codec`, `utils`, and
`pretrained` (shipped weights).
"""

import importlib
import importlib.util
import os
import sys

from vqvae_tf import _compat

_compat.install()

__version__ = "0.1.0"

_EXPORTS = {
    # Layers and models.
    "VectorQuantizer": "vqvae_tf.quantizers.vector_quantizer",
    "VectorQuantizerEMA": "vqvae_tf.quantizers.ema",
    "QUANTIZERS": "vqvae_tf.quantizers.registry",
    "get_quantizer": "vqvae_tf.quantizers.registry",
    "ResidualVectorQuantizer": "vqvae_tf.quantizers.residual",
    "FiniteScalarQuantizer": "vqvae_tf.quantizers.fsq",
    "GumbelQuantizer": "vqvae_tf.quantizers.gumbel",
    "GumbelTemperatureSchedule": "vqvae_tf.quantizers.gumbel",
    "rotate_to_codes": "vqvae_tf.quantizers.rotation",
    "nearest_codes": "vqvae_tf.quantizers.code_search",
    "Encoder": "vqvae_tf.models.networks",
    "Decoder": "vqvae_tf.models.networks",
    "ResidualBlock": "vqvae_tf.models.networks",
    "VQVAE": "vqvae_tf.models.vqvae",
    "list_presets": "vqvae_tf.models.presets",
    "DeadCodes": "vqvae_tf.models.metrics",
    "GatedPixelCNN": "vqvae_tf.priors.pixelcnn",
    "TransformerPrior": "vqvae_tf.priors.transformer",
    "UnigramPrior": "vqvae_tf.priors.unigram",
    "nll_per_code": "vqvae_tf.priors.likelihood",
    "bits_per_dim": "vqvae_tf.priors.likelihood",
    "GaussianVAE": "vqvae_tf.models.gaussian_vae",
    # Data, training, distribution.
    "make_datasets": "vqvae_tf.data.datasets",
    "DatasetBundle": "vqvae_tf.data.datasets",
    "DatasetError": "vqvae_tf.data.datasets",
    "PHOTOS_VALIDATION": "vqvae_tf.data.datasets",
    "TrainConfig": "vqvae_tf.training.config",
    "ConfigError": "vqvae_tf.training.config",
    "train_and_evaluate": "vqvae_tf.training.loop",
    "PriorConfig": "vqvae_tf.training.prior_config",
    "train_prior": "vqvae_tf.training.prior_training",
    "make_strategy": "vqvae_tf.training.distribute",
    "StrategyError": "vqvae_tf.training.distribute",
    # Devices and files (TensorFlow-free).
    "LiteEncoder": "vqvae_tf.codec.lite_runtime",
    "LiteDecoder": "vqvae_tf.codec.lite_runtime",
    "compress": "vqvae_tf.codec.api",
    "decompress": "vqvae_tf.codec.api",
    "CodecError": "vqvae_tf.codec.api",
    "BitstreamError": "vqvae_tf.codec.bitstream",
    "encode_stream": "vqvae_tf.codec.bitstream",
    "decode_stream": "vqvae_tf.codec.bitstream",
    "read_header": "vqvae_tf.codec.bitstream",
}

# Packages whose import registers every Keras-serializable class.
_KERAS_MODULES = ("vqvae_tf.quantizers", "vqvae_tf.models", "vqvae_tf.priors")

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
_CODEC_COMMAND = (
    list(getattr(sys, "orig_argv", ())[1:3]) == ["-m", "vqvae_tf.codec"]
    or os.path.basename(sys.argv[0] if sys.argv else "") == "vqvae-codec"
)

if (
    not _CODEC_COMMAND
    and importlib.util.find_spec("tensorflow") is not None
    and importlib.util.find_spec("keras") is not None
):
    for _module in _KERAS_MODULES:
        importlib.import_module(_module)

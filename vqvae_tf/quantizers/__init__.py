"""Vector quantizers: the discrete bottleneck of a VQ-VAE, as Keras layers.

Every quantizer takes vectors `(..., code_dim)` and returns the output dict
documented in `vqvae_tf.quantizers.base` (`quantized`, `loss`, `perplexity`,
`encodings`, `encoding_indices`, ...), with `codes()` and `lookup()` for
inputs -> indices -> vectors.
"""

from vqvae_tf.quantizers.code_search import nearest_codes, perplexity_from_counts
from vqvae_tf.quantizers.fsq import FiniteScalarQuantizer
from vqvae_tf.quantizers.gumbel import GumbelQuantizer, GumbelTemperatureSchedule
from vqvae_tf.quantizers.residual import ResidualVectorQuantizer
from vqvae_tf.quantizers.rotation import rotate_to_codes
from vqvae_tf.quantizers.vector_quantizer import (
    OUTPUT_KEYS,
    QUANTIZERS,
    BaseVectorQuantizer,
    QuantizerLayer,
    VectorQuantizer,
    VectorQuantizerEMA,
    as_tensor,
    get_quantizer,
    vq_loss_terms,
)

__all__ = [
    "OUTPUT_KEYS", "QUANTIZERS", "BaseVectorQuantizer", "FiniteScalarQuantizer", "GumbelQuantizer",
    "GumbelTemperatureSchedule", "QuantizerLayer", "ResidualVectorQuantizer", "VectorQuantizer",
    "VectorQuantizerEMA", "as_tensor", "get_quantizer", "nearest_codes", "perplexity_from_counts",
    "rotate_to_codes", "vq_loss_terms",
]

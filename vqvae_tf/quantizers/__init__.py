"""Vector quantizers: the discrete bottleneck of a VQ-VAE, as Keras layers.

Every quantizer takes vectors `(..., code_dim)` and returns the output dict
documented in `vqvae_tf.quantizers.base` (`quantized`, `loss`, `indices`,
`perplexity`, `usage`, `counts`, ...), with `codes()` and `lookup()` for
inputs -> indices -> vectors. One module per family (`vector_quantizer`,
`ema`, `residual`, `fsq`, `gumbel`); `registry` names them for
`VQVAE(quantizer=...)`.
"""

from vqvae_tf.quantizers.base import OUTPUT_KEYS, QuantizerLayer, as_tensor, vq_loss_terms
from vqvae_tf.quantizers.code_search import nearest_codes, perplexity_from_counts
from vqvae_tf.quantizers.ema import VectorQuantizerEMA
from vqvae_tf.quantizers.fsq import FiniteScalarQuantizer
from vqvae_tf.quantizers.gumbel import GumbelQuantizer, GumbelTemperatureSchedule
from vqvae_tf.quantizers.registry import QUANTIZERS, get_quantizer
from vqvae_tf.quantizers.residual import ResidualVectorQuantizer
from vqvae_tf.quantizers.rotation import rotate_to_codes
from vqvae_tf.quantizers.vector_quantizer import BaseVectorQuantizer, VectorQuantizer

__all__ = [
    "OUTPUT_KEYS",
    "QUANTIZERS",
    "BaseVectorQuantizer",
    "FiniteScalarQuantizer",
    "GumbelQuantizer",
    "GumbelTemperatureSchedule",
    "QuantizerLayer",
    "ResidualVectorQuantizer",
    "VectorQuantizer",
    "VectorQuantizerEMA",
    "as_tensor",
    "get_quantizer",
    "nearest_codes",
    "perplexity_from_counts",
    "rotate_to_codes",
    "vq_loss_terms",
]

"""The quantizers by short name: what `VQVAE(quantizer=...)` and the training config accept.

Every quantizer module imports only `vqvae_tf.quantizers.base` and its own
building blocks, so this module can import them all: `QUANTIZERS` is a plain
dict, one entry per layer family.
"""

from vqvae_tf.quantizers.ema import VectorQuantizerEMA
from vqvae_tf.quantizers.fsq import FiniteScalarQuantizer
from vqvae_tf.quantizers.gumbel import GumbelQuantizer
from vqvae_tf.quantizers.residual import ResidualVectorQuantizer
from vqvae_tf.quantizers.vector_quantizer import VectorQuantizer

#: Short name -> quantizer layer class.
QUANTIZERS = {
    "vq": VectorQuantizer,
    "ema": VectorQuantizerEMA,
    "residual": ResidualVectorQuantizer,
    "fsq": FiniteScalarQuantizer,
    "gumbel": GumbelQuantizer,
}


def get_quantizer(kind, **kwargs):
    """Builds a registered quantizer by short name (`"vq"`, `"ema"`, `"residual"`, `"fsq"`, `"gumbel"`).

    Example:

    >>> vq = get_quantizer("ema", num_codes=512, code_dim=64, decay=0.99)

    Raises:
        ValueError: for a name not in `QUANTIZERS`.
    """
    try:
        cls = QUANTIZERS[kind]
    except KeyError:
        raise ValueError(f"Unknown quantizer {kind!r}; expected one of {sorted(QUANTIZERS)}.") from None
    return cls(**kwargs)

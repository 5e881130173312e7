"""Priors over code maps: autoregressive models of the tokens a VQ-VAE produces.

`GatedPixelCNN` (`pixelcnn`) and `TransformerPrior` (`transformer`) share
`AutoregressivePrior` (`autoregressive`: training metrics in bits per code,
sampling). Beside them: the input checks (`validation`), seeded sampling
from logits (`sampling`), the likelihood helpers that turn nats into bits
per dimension (`likelihood`), the `UnigramPrior` baseline (`unigram`),
multi-stage codes as token maps (`stage_tokens`) and `load_prior`
(`loading`).
"""

from vqvae_tf.priors.autoregressive import AutoregressivePrior
from vqvae_tf.priors.likelihood import (
    LN2,
    BitsPerCode,
    NLLPerCode,
    bits_per_dim,
    code_log_prob,
    nll_per_code,
    vqvae_bits_per_dim,
)
from vqvae_tf.priors.pixelcnn import GatedPixelCNN
from vqvae_tf.priors.sampling import sample_from_logits
from vqvae_tf.priors.stage_tokens import stages_to_tokens, tokens_to_stages
from vqvae_tf.priors.transformer import TransformerPrior
from vqvae_tf.priors.unigram import UnigramPrior
from vqvae_tf.priors.validation import validate_codes, validate_labels

__all__ = [
    "LN2",
    "AutoregressivePrior",
    "BitsPerCode",
    "GatedPixelCNN",
    "NLLPerCode",
    "TransformerPrior",
    "UnigramPrior",
    "bits_per_dim",
    "code_log_prob",
    "nll_per_code",
    "sample_from_logits",
    "stages_to_tokens",
    "tokens_to_stages",
    "validate_codes",
    "validate_labels",
    "vqvae_bits_per_dim",
]

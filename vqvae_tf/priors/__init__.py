"""Priors over code maps: autoregressive models of the tokens a VQ-VAE produces.

`GatedPixelCNN` and `TransformerPrior` share `AutoregressivePrior` (training
metrics in bits per code, sampling); `UnigramPrior` is the baseline; the
likelihood helpers turn nats into bits per dimension.
"""

from vqvae_tf.priors.autoregressive import (
    AutoregressivePrior,
    BitsPerCode,
    NLLPerCode,
    UnigramPrior,
    bits_per_dim,
    code_log_prob,
    nll_per_code,
    sample_from_logits,
    validate_codes,
    validate_labels,
    vqvae_bits_per_dim,
)
from vqvae_tf.priors.pixelcnn import GatedPixelCNN
from vqvae_tf.priors.stage_tokens import stages_to_tokens, tokens_to_stages
from vqvae_tf.priors.transformer import TransformerPrior

__all__ = [
    "AutoregressivePrior", "BitsPerCode", "GatedPixelCNN", "NLLPerCode", "TransformerPrior", "UnigramPrior",
    "bits_per_dim", "code_log_prob", "nll_per_code", "sample_from_logits", "stages_to_tokens",
    "tokens_to_stages", "validate_codes", "validate_labels", "vqvae_bits_per_dim",
]

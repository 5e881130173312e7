"""Lossless entropy coding of code maps with an autoregressive prior.

Each code `z_i` of a map is coded with the prior's conditional distribution
`p(z_i | z_<i)` by an ANS coder (`vqvae_tf.codec.entropy`), so a map costs
about its prior NLL in bits (plus under 32 bits of coder state) instead of
`H * W * ceil(log2 K)` bits.

Encoding needs ONE forward pass: the prior is causal, so the logits at every
position given the true codes come out together. Decoding runs the prior
once per raster position on the partially decoded maps (the not-yet-decoded
positions hold 0, which a causal prior never looks at) and pops the codes of
that position from the stack.

Determinism, the one thing an entropy coder cannot get wrong: the decoder
must build bit-identical probability tables. Both sides therefore

1. run the SAME traced function (`tf.function` around the prior) on the CPU
   in float32, on inputs of the same shape `(N, H, W)`: a causal network's
   output at position i is then a function of the codes before i computed by
   the same kernels in the same order (tested bit-exact for `GatedPixelCNN`
   and `TransformerPrior`); the KV cache and the PixelCNN's row-cropped
   sampler use other shapes, hence other kernels, and are NOT used;
2. convert the logits of one position `(N, K)` to float64 probabilities with
   the same NumPy procedure (`probabilities_from_logits`) on an array of the
   same shape;
3. let constriction quantise them (deterministic for identical float64
   input).

Bit-identical logits across machines with different CPUs, thread counts or
TensorFlow builds are not guaranteed (no learned entropy coder can promise
that without integer arithmetic): code and decode with the same software
stack, and rely on the checksum of the codes (standalone payloads and
`.vqz` method 2 both carry one) to turn a mismatch into an error instead of
wrong codes.

Modules:

- `probabilities`: the deterministic probability model and input checks;
- `maps`: the coding core and standalone payloads of whole maps
  (`encode_codes`, `decode_codes`);
- `tiled`: `.vqz` method 2, one map of any size in tiles
  (`encode_prior_payload`, `decode_prior_payload`, `prior_fingerprint`).

Nothing here imports TensorFlow until a prior runs.
"""

from vqvae_tf.codec.prior_coding.maps import decode_codes, encode_codes
from vqvae_tf.codec.prior_coding.probabilities import PriorCodingError, probabilities_from_logits
from vqvae_tf.codec.prior_coding.tiled import (
    DEFAULT_TILES_PER_BATCH,
    NO_LABEL,
    PARAMS,
    decode_prior_payload,
    default_tile,
    encode_prior_payload,
    prior_fingerprint,
)

__all__ = [
    "DEFAULT_TILES_PER_BATCH",
    "NO_LABEL",
    "PARAMS",
    "PriorCodingError",
    "decode_codes",
    "decode_prior_payload",
    "default_tile",
    "encode_codes",
    "encode_prior_payload",
    "prior_fingerprint",
    "probabilities_from_logits",
]

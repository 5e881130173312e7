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
must build bit-identical probability tables, on any machine. The tables
depend on the logits only through integers (`quantized`: a coarse logit
grid, an integer weight table, and per position a coded grid flag that
keeps every relevant logit `quantized.MARGIN` nats away from a rounding
boundary), so logits that differ by less than the margin between encoder
and decoder (other CPUs, runtimes, thread counts, Keras vs LiteRT) give the
same tables. A larger difference is caught by the checksum of the codes
(standalone payloads and `.vqz` method 2 both carry one): an error instead
of wrong codes. A prior runs as a Keras model (TensorFlow; the encoder runs
it once on whole maps, the decoder once per position) or as a `LitePrior`
(`lite_prior`: the TFLite model of `vqvae_tf.export.prior_tflite`, one call
per row and one per position, with LiteRT and NumPy).

Modules:

- `quantized`: the deterministic tables (grid, weights, margins, grid flags);
- `lite_prior`: `LitePrior`, a prior exported to TFLite;
- `lite_transformer`: `LiteTransformerPrior`, a `TransformerPrior` (the speech
  prior) exported to TFLite, one position per call with a key/value cache;
- `probabilities`: the float softmax, the traced Keras logits, input checks;
- `maps`: the coding core and standalone payloads of whole maps
  (`encode_codes`, `decode_codes`);
- `tiled`: `.vqz` method 2, one map of any size in tiles
  (`encode_prior_payload`, `decode_prior_payload`, `prior_fingerprint`);
- `sequences`: method 2 for speech, every stage of the code frames under the
  speech prior, in segments that are `tiled`'s tiles
  (`encode_sequence_payload`, `decode_sequence_payload`).

Nothing here imports TensorFlow until a Keras prior runs.
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

"""`.vqz` method 2 ("prior") for speech: every stage of a residual code sequence under a Transformer prior.

A speech VQ-VAE gives code frames `(frames, S)` (S residual stages of K
codes). Its prior (`TransformerPrior` on `train.py --stage=prior`'s speech
tokens, `vqvae_tf.training.speech_prior`) models segments of `L = T * S`
tokens: frames in time order, within a frame the stages in order, token =
code + stage * K (vocabulary S * K, `vqvae_tf.priors.stage_tokens`).

The stream's frames become one token row of `frames * S` positions, cut into
segments of L (the last one shorter; its padding is not coded), each coded
from the prior's start token independently of the others: segments are the
tiles of `tiled` with tile `(1, L)`, so the payload, its parameters
(`tiled.PARAMS`: fingerprint, tile `(1, L)`, segments per batch, CRC of the
codes) and the batching (one prior call per position for a whole batch of
segments, on both sides) are the image prior method's. What differs is the
prior `tiled` sees, `StageTokenPrior`: at a position of stage `s` its logits
are the speech prior's logits restricted to stage `s`'s K tokens (the stage
is known from the position, so the other stages' tokens can never occur and
cost nothing), and its codes are the stage codes `[0, K)`. The tables then
come from `quantized` as for images.

A `LiteTransformerPrior` runs one `step` per position with its key/value
cache (the decoder's calls, which the encoder makes too: bit-identical); a
Keras prior runs its full causal pass on the tokens before the position
(zeros after) at each position, on both sides alike.
"""

from __future__ import annotations

import numpy as np

from vqvae_tf.codec.prior_coding.probabilities import PriorCodingError, logits_function
from vqvae_tf.codec.prior_coding.tiled import decode_prior_payload, encode_prior_payload, prior_fingerprint

__all__ = [
    "DEFAULT_SEGMENTS_PER_BATCH",
    "StageTokenPrior",
    "check_speech_prior",
    "decode_sequence_payload",
    "encode_sequence_payload",
]

#: Segments that go through the prior together: bounds the memory of one
#: batch, which the encoder holds whole (the coder is a stack): its stage
#: logits (float32) and tables (float64), `64 * L * K * 12` bytes, 118 MB for
#: L = 150, K = 1024; the decoder holds one position's.
DEFAULT_SEGMENTS_PER_BATCH = 64


def check_speech_prior(prior, num_codes: int, num_stages: int) -> int:
    """The segment length L in tokens, if `prior` models the speech tokens of S stages of K codes.

    Raises:
        PriorCodingError: a conditional prior, another vocabulary than
            `S * K`, or a map that is not one row of whole frames `(1, T * S)`.
    """
    if getattr(prior, "num_classes", 0):
        raise PriorCodingError(f"the speech prior must be unconditional; received one with {prior.num_classes} classes")
    vocabulary = num_codes * num_stages
    if prior.num_codes != vocabulary:
        raise PriorCodingError(
            f"the speech prior must model the tokens of all {num_stages} stages of {num_codes} codes "
            f"(vocabulary {vocabulary}); received a prior of {prior.num_codes} codes"
        )
    map_shape = getattr(prior, "map_shape", None)
    if map_shape is None or len(map_shape) != 2 or map_shape[0] != 1 or map_shape[1] % num_stages:
        raise PriorCodingError(
            f"the speech prior must model token rows (1, T * {num_stages}) (T frames of {num_stages} stages); "
            f"received map_shape {map_shape}"
        )
    return int(map_shape[1])


class StageTokenPrior:
    """The speech prior as `tiled` codes with it: stage codes in, each position's stage logits out.

    Args:
        prior: a `LiteTransformerPrior` or a Keras `TransformerPrior` over
            the speech tokens (`check_speech_prior`).
        num_codes: K, codes per stage.
        num_stages: S.

    Attributes:
        num_codes: K. num_classes: 0. map_shape: `(1, L)`, one segment.
        fingerprint: the speech prior's `prior_fingerprint`.
    """

    num_classes = 0

    def __init__(self, prior, num_codes: int, num_stages: int):
        length = check_speech_prior(prior, num_codes, num_stages)
        self.prior, self.num_codes, self.num_stages = prior, int(num_codes), int(num_stages)
        self.map_shape = (1, length)
        self.fingerprint = prior_fingerprint(prior)
        # Token = code + stage * K at each position of a segment (which starts on a frame).
        self._offsets = (np.arange(length) % num_stages * num_codes).astype(np.int32)
        self._incremental = hasattr(prior, "next")
        self._state = None

    def logits_at(self, codes, row, col):
        """float32 logits `(n, K)` of the stage codes at `col` of segments `(n, 1, L)`, from the codes before it.

        An incremental prior keeps its key/value cache between calls, so
        the positions of a batch must come in order from 0 (as `maps`
        calls them, on both sides).
        """
        stage = col % self.num_stages
        vocabulary = slice(stage * self.num_codes, (stage + 1) * self.num_codes)
        tokens = codes[:, 0] + self._offsets
        if not self._incremental:
            return logits_function(self.prior)(tokens[:, None], None)[:, 0, col, vocabulary]
        if col == 0:
            self._state = self.prior.start(len(codes))
            logits, self._state = self.prior.next(self._state)
        elif self._state is None or self._state.position != col or self._state.batch != len(codes):
            raise PriorCodingError(f"the positions of a segment batch must come in order; received position {col}")
        else:
            logits, self._state = self.prior.next(self._state, tokens[:, col - 1])
        return logits[:, vocabulary]


def _check_frames(codes) -> np.ndarray:
    """`codes` if they are code frames `(frames, S)` with `frames, S >= 1`."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or 0 in codes.shape:
        raise PriorCodingError(f"the speech prior codes code frames (frames, S); received shape {codes.shape}")
    return codes


def encode_sequence_payload(
    prior, codes, num_codes: int, *, segments_per_batch: int = DEFAULT_SEGMENTS_PER_BATCH
) -> tuple[bytes, bytes]:
    """Method parameters and payload of the code frames `(frames, S)` under the speech prior.

    Args:
        prior: the speech prior (see `StageTokenPrior`).
        codes: integer code frames `(frames, S)`, values in `[0, K)`.
        num_codes: K.
        segments_per_batch: segments per prior call. Defaults to 64.

    Returns:
        `(params, payload)` as `tiled.encode_prior_payload` gives them, tile `(1, L)`.

    Raises:
        PriorCodingError: the prior does not model these codes, or bad codes.

    Example:

    >>> params, payload = encode_sequence_payload(prior, codes, 1024)   # codes (250, 6)
    >>> np.array_equal(decode_sequence_payload(prior, params, payload, (250, 6), 1024), codes)
    True
    """
    codes = _check_frames(codes)
    coder = StageTokenPrior(prior, num_codes, codes.shape[1])
    # Time-major with the stages inner: the token order of the prior's training rows.
    row = codes.reshape(1, -1)
    return encode_prior_payload(coder, row, tile=coder.map_shape, tiles_per_batch=segments_per_batch)


def decode_sequence_payload(prior, params, payload, code_shape, num_codes: int) -> np.ndarray:
    """Inverse of `encode_sequence_payload`: int32 code frames of `code_shape` `(frames, S)`.

    Raises:
        PriorCodingError: another prior (fingerprint), another segment
            length than the prior's, a corrupt payload or a failed CRC.
    """
    frames, stages = code_shape
    coder = StageTokenPrior(prior, num_codes, stages)
    row = decode_prior_payload(coder, params, payload, (1, frames * stages))
    return row.reshape(frames, stages)

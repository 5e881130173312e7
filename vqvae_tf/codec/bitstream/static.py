"""The `static` method (1): every code entropy coded under one fixed per-model distribution.

The distribution is the model's code usage (`code_probabilities_from_counts`):
one `(K,)` distribution for every code, or, for a map with a stage axis in a
version-2 stream, one row per stage kept (`(n, K)`: residual stages use
their codes very differently). The method parameters hold its fingerprint
(the first 8 bytes of BLAKE2b of the normalised probabilities as
little-endian float64), so a decoder holding another distribution fails
clearly instead of producing wrong codes. The payload is the ANS word
stream of `vqvae_tf.codec.entropy`: the codes in C order of the map
(`stages=1`), or stage after stage, each stage in raster order
(`stages=n`, version 2 with a stage axis).
"""

from __future__ import annotations

import hashlib

import numpy as np

from vqvae_tf.codec.bitstream.header import DISTRIBUTION_FINGERPRINT_SIZE, BitstreamError
from vqvae_tf.codec.entropy import AnsDecoder, AnsEncoder, AnsError
from vqvae_tf.utils.checks import check_number

__all__ = [
    "check_probabilities",
    "code_probabilities_from_counts",
    "decode",
    "decode_stages",
    "distribution_fingerprint",
    "encode",
    "encode_stages",
]


def code_probabilities_from_counts(counts, pseudo_count: float = 0.5) -> np.ndarray:
    """Turns code usage counts into a strictly positive distribution.

    Additive (Krichevsky-Trofimov for `pseudo_count=0.5`) smoothing keeps
    codes never seen in the usage statistics encodable.

    Args:
        counts: non-negative usage count per code, shape `(K,)`.
        pseudo_count: positive count added to every code. Defaults to 0.5.

    Returns:
        float64 array of shape `(K,)`, summing to 1, all entries > 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 2:
        raise BitstreamError(f"counts must have shape (K,) with K >= 2, got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise BitstreamError("counts must be finite and non-negative")
    pseudo_count = check_number("pseudo_count", pseudo_count, minimum=0, inclusive_min=False, error=BitstreamError)
    smoothed = counts + pseudo_count
    return smoothed / smoothed.sum()


def check_probabilities(probabilities, num_codes: int, stages: int | None = None) -> np.ndarray:
    """`probabilities` as float64 `(num_codes,)` (or `(stages, num_codes)` when `stages` is given).

    Each row is normalised to sum to 1, if finite and strictly positive.
    """
    try:
        probabilities = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise BitstreamError(f"code_probabilities must be a float array, got {error}") from None
    shapes = [(num_codes,)] + ([(stages, num_codes)] if stages is not None else [])
    if probabilities.shape not in shapes:
        expected = " or ".join(str(shape) for shape in shapes)
        raise BitstreamError(f"code_probabilities must have shape {expected}, got {probabilities.shape}")
    if not np.all(np.isfinite(probabilities)) or not np.all(probabilities > 0):
        raise BitstreamError(
            "code_probabilities must be finite and strictly positive "
            "(smooth zeros, e.g. with code_probabilities_from_counts)"
        )
    return probabilities / probabilities.sum(axis=-1, keepdims=True)


def distribution_fingerprint(probabilities: np.ndarray) -> bytes:
    """The method parameters: 8 bytes of BLAKE2b of the probabilities as little-endian float64."""
    data = probabilities.astype("<f8").tobytes()
    return hashlib.blake2b(data, digest_size=DISTRIBUTION_FINGERPRINT_SIZE).digest()


def _row(probabilities: np.ndarray, stage: int) -> np.ndarray:
    return probabilities if probabilities.ndim == 1 else probabilities[stage]


def encode(flat: np.ndarray, probabilities: np.ndarray, stages: int = 1) -> bytes:
    """The payload of int32 codes `(count,)` (C order of a map with `stages` trailing) under checked `probabilities`.

    With `stages > 1` the stages are coded one after another, stage `i`
    under row `i` of `(stages, K)` probabilities (or all under one `(K,)`).
    """
    if stages == 1:
        return encode_stages([flat], probabilities)
    per_stage = flat.reshape(-1, stages)
    return encode_stages([np.ascontiguousarray(per_stage[:, stage]) for stage in range(stages)], probabilities)


def encode_stages(per_stage: list[np.ndarray], probabilities: np.ndarray) -> bytes:
    """The payload of stage after stage: `per_stage[i]` (int32, any length) under row `i` (or the one `(K,)` row)."""
    encoder = AnsEncoder()
    # A stack: the last stage pushed pops first, so push the stages in reverse.
    for stage in reversed(range(len(per_stage))):
        if per_stage[stage].size:
            encoder.push(per_stage[stage], _row(probabilities, stage))
    return encoder.payload()


def decode(
    payload: memoryview, count: int, probabilities: np.ndarray, stored_fingerprint: bytes, stages: int = 1
) -> np.ndarray:
    """`count` int32 codes (C order) from a payload of `encode`, if the distribution's fingerprint matches.

    Raises:
        BitstreamError: another distribution, or an invalid payload.
    """
    per_stage = decode_stages(payload, [count // stages] * stages, probabilities, stored_fingerprint)
    flat = per_stage[0] if stages == 1 else np.stack(per_stage, axis=-1).reshape(-1)
    return flat.astype(np.int32, copy=False)


def decode_stages(
    payload: memoryview, counts: list[int], probabilities: np.ndarray, stored_fingerprint: bytes
) -> list[np.ndarray]:
    """Inverse of `encode_stages`: `counts[i]` int32 codes of stage `i`, if the fingerprint matches.

    Raises:
        BitstreamError: another distribution, or an invalid payload.
    """
    actual = distribution_fingerprint(probabilities)
    if actual != stored_fingerprint:
        raise BitstreamError(
            f"code_probabilities fingerprint {actual.hex()} does not match "
            f"the stream's {stored_fingerprint.hex()}: another model's distribution"
        )
    try:
        decoder = AnsDecoder(payload)
        per_stage = [
            decoder.pop(_row(probabilities, stage), count).astype(np.int32, copy=False) if count else _EMPTY
            for stage, count in enumerate(counts)
        ]
        decoder.finish()
    except AnsError as error:
        raise BitstreamError(f"invalid static payload: {error}") from None
    return per_stage


_EMPTY = np.zeros(0, np.int32)

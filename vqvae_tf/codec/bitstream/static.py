"""The `static` method (1): every code entropy coded under one fixed per-model distribution.

The distribution is the model's code usage (`code_probabilities_from_counts`);
the method parameters hold its fingerprint (the first 8 bytes of BLAKE2b of
the normalised probabilities as little-endian float64), so a decoder
holding another distribution fails clearly instead of producing wrong codes.
The payload is the ANS word stream of `vqvae_tf.codec.entropy`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from vqvae_tf.codec.bitstream.header import DISTRIBUTION_FINGERPRINT_SIZE, BitstreamError
from vqvae_tf.codec.entropy import AnsDecoder, AnsEncoder, AnsError
from vqvae_tf.utils.checks import check_number

__all__ = ["check_probabilities", "code_probabilities_from_counts", "decode", "distribution_fingerprint", "encode"]


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


def check_probabilities(probabilities, num_codes: int) -> np.ndarray:
    """`probabilities` as float64 `(num_codes,)` summing to 1, if finite and strictly positive."""
    try:
        probabilities = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise BitstreamError(f"code_probabilities must be a float array, got {error}") from None
    if probabilities.shape != (num_codes,):
        raise BitstreamError(f"code_probabilities must have shape ({num_codes},), got {probabilities.shape}")
    if not np.all(np.isfinite(probabilities)) or not np.all(probabilities > 0):
        raise BitstreamError(
            "code_probabilities must be finite and strictly positive "
            "(smooth zeros, e.g. with code_probabilities_from_counts)"
        )
    return probabilities / probabilities.sum()


def distribution_fingerprint(probabilities: np.ndarray) -> bytes:
    """The method parameters: 8 bytes of BLAKE2b of the probabilities as little-endian float64."""
    data = probabilities.astype("<f8").tobytes()
    return hashlib.blake2b(data, digest_size=DISTRIBUTION_FINGERPRINT_SIZE).digest()


def encode(flat: np.ndarray, probabilities: np.ndarray) -> bytes:
    """The payload of int32 codes `(n,)` under checked `probabilities`."""
    encoder = AnsEncoder()
    encoder.push(flat, probabilities)
    return encoder.payload()


def decode(payload: memoryview, count: int, probabilities: np.ndarray, stored_fingerprint: bytes) -> np.ndarray:
    """`count` int32 codes from a payload of `encode`, if the distribution's fingerprint matches.

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
        flat = decoder.pop(probabilities, count)
        decoder.finish()
    except AnsError as error:
        raise BitstreamError(f"invalid static payload: {error}") from None
    return flat.astype(np.int32, copy=False)

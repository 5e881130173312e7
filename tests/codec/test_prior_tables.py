"""Deterministic prior tables (`vqvae_tf.codec.prior_coding.quantized`): exact decoding under perturbed logits."""

import math

import numpy as np
import pytest

from vqvae_tf.codec.prior_coding import PriorCodingError, decode_prior_payload, encode_prior_payload, quantized

K = 64


class LinearPrior:
    """A NumPy prior: logits at (r, c) are a fixed random function of the codes before it (peaked)."""

    num_classes = 0
    map_shape = (6, 6)
    num_codes = K
    fingerprint = b"linear01"

    def __init__(self, noise=0.0, seed=0):
        rng = np.random.default_rng(seed)
        self.table = rng.normal(0, 3, (K, K)).astype(np.float32)
        self.noise = noise
        self.rng = np.random.default_rng(seed + 1)

    def logits_at(self, codes, row, col):
        previous = codes[:, row, col - 1] if col else codes[:, row - 1, col] if row else np.zeros(len(codes), int)
        logits = self.table[previous] * 4 + 10
        if self.noise:
            logits = logits + self.rng.uniform(-self.noise, self.noise, logits.shape).astype(np.float32)
        return logits


def test_weights_are_the_documented_exponential():
    assert quantized.WEIGHTS == tuple(round(2**16 * math.exp(-quantized.STEP * d)) for d in range(23))
    assert quantized.WEIGHTS[-1] == 1


def test_tables_ignore_perturbations_within_the_margin():
    logits = np.random.default_rng(0).normal(0, 5, (500, K))
    grids = quantized.choose_grids(logits)
    assert (grids == 0).mean() > 0.5
    noise = np.random.default_rng(1).uniform(-1, 1, logits.shape) * 0.99 * quantized.MARGIN
    assert np.array_equal(quantized.tables(logits, grids), quantized.tables(logits + noise, grids))
    np.testing.assert_allclose(quantized.tables(logits, grids).sum(axis=1), 1.0, atol=1e-12)
    # ESCAPE rows are uniform, whatever the logits.
    escape = np.full(3, quantized.ESCAPE)
    np.testing.assert_array_equal(quantized.tables(logits[:3], escape), np.full((3, K), 1 / K))


@pytest.mark.parametrize("shape", [(12, 18), (7, 5)])
def test_decoder_with_perturbed_logits_gets_the_exact_codes(shape):
    codes = np.random.default_rng(2).integers(0, K, shape).astype(np.int32)
    params, payload = encode_prior_payload(LinearPrior(), codes)
    # +-0.99 * MARGIN nats on every logit of the decoder: about 4e-7 relative at these logits (~40).
    decoded = decode_prior_payload(LinearPrior(noise=0.99 * quantized.MARGIN), params, payload, shape)
    np.testing.assert_array_equal(decoded, codes)


def test_perturbation_beyond_the_margin_is_a_clear_error():
    codes = np.random.default_rng(3).integers(0, K, (12, 18)).astype(np.int32)
    params, payload = encode_prior_payload(LinearPrior(), codes)
    with pytest.raises(PriorCodingError, match="CRC32|corrupt"):
        decode_prior_payload(LinearPrior(noise=0.5), params, payload, codes.shape)

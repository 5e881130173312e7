"""Entropy coding of code maps with a prior (`vqvae_tf.codec.prior_coding`)."""

import zlib
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.tiny_models import tiny_vqvae
from vqvae_tf.codec.prior_coding import (
    DEFAULT_TILES_PER_BATCH,
    NO_LABEL,
    PARAMS,
    PriorCodingError,
    decode_codes,
    decode_prior_payload,
    encode_codes,
    encode_prior_payload,
    prior_fingerprint,
    probabilities_from_logits,
)
from vqvae_tf.data.datasets import make_datasets
from vqvae_tf.priors.pixelcnn import GatedPixelCNN
from vqvae_tf.priors.transformer import TransformerPrior
from vqvae_tf.priors.unigram import UnigramPrior

MNIST_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
K = 32
MAP = (7, 7)


def make_prior(kind, num_classes=0, seed=0):
    keras.utils.set_random_seed(seed)
    if kind == "pixelcnn":
        return GatedPixelCNN(K, num_classes=num_classes, channels=16, num_layers=2, map_shape=MAP)
    return TransformerPrior(K, MAP, num_classes=num_classes, embed_dim=16, num_heads=2, num_layers=2)


@pytest.fixture(scope="module")
def mnist_codes():
    """Codes and labels of 256 real MNIST digits under an untrained tiny VQ-VAE.

    Exactness does not depend on training; real images give the structured,
    repetitive maps (a constant background code) that a prior can learn fast.
    """
    bundle = make_datasets(f"mnist:{MNIST_DIR}", image_size=28, batch_size=128, with_labels=True)
    vqvae = tiny_vqvae(K, seed=0, input_channels=1)
    codes, labels = [], []
    for images, batch_labels in bundle.validation.take(2):
        codes.append(np.asarray(vqvae.codes(images)))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(codes), np.concatenate(labels)


@pytest.fixture(scope="module")
def trained_prior(mnist_codes):
    """A PixelCNN fitted briefly to the MNIST codes: peaked predictions."""
    codes, _ = mnist_codes
    prior = make_prior("pixelcnn")
    prior.compile(keras.optimizers.Adam(1e-2))
    prior.fit(codes, batch_size=64, epochs=10, verbose=0)
    return prior


def test_probabilities_are_a_deterministic_softmax():
    logits = np.random.default_rng(0).normal(size=(3, 7)).astype(np.float32) * 30
    p = probabilities_from_logits(logits)
    assert p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    shifted = np.exp(logits.astype(np.float64) - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(p, shifted / shifted.sum(-1, keepdims=True), rtol=1e-12)
    assert np.array_equal(p, probabilities_from_logits(logits.copy()))


@pytest.mark.parametrize("kind", ["pixelcnn", "transformer"])
def test_round_trip_random_codes_conditional(kind):
    prior = make_prior(kind, num_classes=3)
    codes = np.random.default_rng(1).integers(0, K, (3,) + MAP).astype(np.int32)
    labels = np.array([2, 0, 1])
    payload = encode_codes(prior, codes, labels)
    assert isinstance(payload, bytes)
    np.testing.assert_array_equal(decode_codes(prior, payload, codes.shape, labels), codes)
    # One map on its own, with a scalar label.
    single = encode_codes(prior, codes[1], 0)
    np.testing.assert_array_equal(decode_codes(prior, single, MAP, 0), codes[1])


@pytest.mark.parametrize("kind", ["pixelcnn", "transformer"])
def test_round_trip_codes_of_real_images(kind, mnist_codes):
    codes, _ = mnist_codes
    prior = make_prior(kind)
    batch = codes[:8]
    payload = encode_codes(prior, batch)
    np.testing.assert_array_equal(decode_codes(prior, payload, batch.shape), batch)


def test_trained_prior_beats_fixed_width_packing(trained_prior, mnist_codes):
    codes, _ = mnist_codes
    test = codes[-16:]
    payload = encode_codes(trained_prior, test, checksum=False)
    packed_bytes = test.size * int(np.ceil(np.log2(K))) / 8
    assert len(payload) < 0.8 * packed_bytes
    np.testing.assert_array_equal(decode_codes(trained_prior, payload, test.shape, checksum=False), test)


def test_peaked_prior_codes_unlikely_codes_exactly(trained_prior):
    # Codes the prior finds very unlikely (random noise) still round-trip.
    codes = np.random.default_rng(3).integers(0, K, (2,) + MAP).astype(np.int32)
    payload = encode_codes(trained_prior, codes)
    np.testing.assert_array_equal(decode_codes(trained_prior, payload, codes.shape), codes)


def test_unigram_prior_round_trip(mnist_codes):
    codes, _ = mnist_codes
    unigram = UnigramPrior(K, MAP).fit(codes[:200])
    payload = encode_codes(unigram, codes[200:204])
    np.testing.assert_array_equal(decode_codes(unigram, payload, (4,) + MAP), codes[200:204])


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda p: p[:-1],  # truncated
        lambda p: p[:4] + bytes([p[4] ^ 0x10]) + p[5:],  # a flipped bit
        lambda p: p[:-4] + bytes(4),  # wrong checksum
        lambda p: b"",  # empty
        lambda p: bytes(len(p)),  # zeros
    ],
    ids=["truncated", "bit_flip", "checksum", "empty", "zeros"],
)
def test_corrupt_payload_fails_clearly(corrupt):
    prior = make_prior("pixelcnn")
    codes = np.random.default_rng(2).integers(0, K, (2,) + MAP).astype(np.int32)
    payload = encode_codes(prior, codes)
    with pytest.raises(PriorCodingError, match="payload"):
        decode_codes(prior, corrupt(payload), codes.shape)


def test_other_prior_fails_checksum(trained_prior):
    # Two untrained priors give near-zero logits, the same coarse tables
    # (`quantized`), hence the same codes; a trained one computes others.
    codes = np.random.default_rng(4).integers(0, K, MAP).astype(np.int32)
    payload = encode_codes(trained_prior, codes)
    with pytest.raises(PriorCodingError):
        decode_codes(make_prior("pixelcnn", seed=1), payload, MAP)


def test_bad_arguments():
    prior = make_prior("pixelcnn")
    with pytest.raises(PriorCodingError, match=r"\[0, 32\)"):
        encode_codes(prior, np.full(MAP, K))
    with pytest.raises(PriorCodingError, match="integers"):
        encode_codes(prior, np.zeros(MAP, np.float32))
    with pytest.raises(PriorCodingError, match="size"):
        encode_codes(prior, np.zeros((5, 5), np.int32))
    with pytest.raises(PriorCodingError, match="unconditional"):
        encode_codes(prior, np.zeros(MAP, np.int32), labels=1)
    with pytest.raises(PriorCodingError, match="class-conditional"):
        encode_codes(make_prior("pixelcnn", num_classes=2), np.zeros(MAP, np.int32))
    with pytest.raises(PriorCodingError, match="map_shape"):
        decode_codes(prior, b"", (0, 7))


def test_vqz_method_two_payload_helpers(trained_prior):
    codes = np.random.default_rng(5).integers(0, K, MAP).astype(np.int32)
    params, payload = encode_prior_payload(trained_prior, codes)
    assert len(params) == PARAMS.size == 20 and params[:8] == prior_fingerprint(trained_prior)
    _, label, tile_h, tile_w, per_batch, crc = PARAMS.unpack(params)
    assert (label, tile_h, tile_w, per_batch) == (NO_LABEL, 7, 7, DEFAULT_TILES_PER_BATCH)
    assert crc == zlib.crc32(codes.astype("<i4").tobytes())
    np.testing.assert_array_equal(decode_prior_payload(trained_prior, params, payload, MAP), codes)
    with pytest.raises(PriorCodingError, match="coded with prior"):
        decode_prior_payload(make_prior("pixelcnn", seed=7), params, payload, MAP)


@pytest.mark.parametrize("kind", ["pixelcnn", "transformer"])
@pytest.mark.parametrize("shape, per_batch", [((20, 9), 64), ((20, 9), 4), ((3, 4), 64)])
def test_tiled_payload_round_trip_any_map_size(kind, shape, per_batch):
    # A 7x7-map prior codes any map in 7x7 tiles (partial edge tiles padded),
    # whatever the grouping of tiles into prior calls.
    prior = make_prior(kind, num_classes=2)
    codes = np.random.default_rng(sum(shape)).integers(0, K, shape).astype(np.int32)
    params, payload = encode_prior_payload(prior, codes, 1, tiles_per_batch=per_batch)
    np.testing.assert_array_equal(decode_prior_payload(prior, params, payload, shape), codes)


def test_padding_is_not_coded(mnist_codes):
    # A map of one code in a 7x7 tile costs a code, not 49: the padding is free.
    codes, _ = mnist_codes
    unigram = UnigramPrior(K, MAP).fit(codes[:200])
    one = codes[200, :1, :1]
    _, payload = encode_prior_payload(unigram, one)
    assert len(payload) <= 8
    params, payload = encode_prior_payload(unigram, codes[200, :5, :3])
    np.testing.assert_array_equal(decode_prior_payload(unigram, params, payload, (5, 3)), codes[200, :5, :3])


def test_tiled_payload_failures_are_clear(trained_prior):
    codes = np.random.default_rng(6).integers(0, K, (9, 10)).astype(np.int32)
    params, payload = encode_prior_payload(trained_prior, codes)
    fingerprint, label, tile_h, tile_w, per_batch, crc = PARAMS.unpack(params)
    with pytest.raises(PriorCodingError, match="CRC32"):
        decode_prior_payload(
            trained_prior, PARAMS.pack(fingerprint, label, tile_h, tile_w, per_batch, crc ^ 1), payload, codes.shape
        )
    with pytest.raises(PriorCodingError, match="maps of size"):
        decode_prior_payload(trained_prior, PARAMS.pack(fingerprint, label, 5, 5, per_batch, crc), payload, codes.shape)
    with pytest.raises(PriorCodingError, match="unconditional"):
        decode_prior_payload(
            trained_prior, PARAMS.pack(fingerprint, 3, tile_h, tile_w, per_batch, crc), payload, codes.shape
        )
    with pytest.raises(PriorCodingError, match="20 bytes"):
        decode_prior_payload(trained_prior, params[:10], payload, codes.shape)
    with pytest.raises(PriorCodingError, match="payload"):
        decode_prior_payload(trained_prior, params, payload[:-4], codes.shape)
    with pytest.raises(PriorCodingError, match="maps of size"):
        encode_prior_payload(trained_prior, codes, tile=(3, 3))
    with pytest.raises(PriorCodingError, match="larger than the code map"):
        encode_prior_payload(GatedPixelCNN(K, channels=4, num_layers=1), codes, tile=(10, 10))
    with pytest.raises(PriorCodingError, match="tiles_per_batch"):
        encode_prior_payload(trained_prior, codes, tiles_per_batch=0)

"""The `prior` method on a residual map `(h, w, n)`: stage 0 under the prior, stages 1.. under static tables."""

import struct
import zlib

import numpy as np
import pytest

from vqvae_tf.codec import bitstream
from vqvae_tf.codec.bitstream import BitstreamError, Method, decode_stream, encode_stream, read_header

MODEL_ID = bitstream.make_model_id(b"staged prior test")
K = 16
TILE = (4, 4)
PRIOR_PARAMS_BYTES = 20
HEADER_BYTES = 58
CRC_BYTES = 4


def _codes(shape, seed=0):
    # Stage 0 smooth (what a spatial prior predicts), the finer stages skewed noise.
    rng = np.random.default_rng(seed)
    h, w, n = shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coarse = ((rows + cols) // 3) % K
    finer = rng.choice(K, size=(h, w, n - 1), p=_skewed(0))
    return np.concatenate([coarse[..., None], finer], axis=-1).astype(np.int32)


def _skewed(seed):
    weights = np.random.default_rng(seed).gamma(0.5, size=K) + 1e-3
    return weights / weights.sum()


def _tables(n, seed=1):
    return np.stack([bitstream.code_probabilities_from_counts(np.round(1000 * _skewed(seed + s))) for s in range(n)])


@pytest.fixture(scope="module")
def prior():
    import keras

    from vqvae_tf.priors.pixelcnn import GatedPixelCNN

    keras.utils.set_random_seed(0)
    return GatedPixelCNN(K, channels=8, num_layers=2, map_shape=TILE)


def _encode(codes, prior, tables, total_stages=4):
    return encode_stream(
        codes,
        num_codes=K,
        model_id=MODEL_ID,
        image_shape=(8 * codes.shape[0], 8 * codes.shape[1], 3),
        total_stages=total_stages,
        method="prior",
        prior=prior,
        code_probabilities=tables,
    )


@pytest.mark.parametrize("kept", [1, 2, 4])
def test_every_stage_prefix_round_trips_exactly(prior, kept):
    codes = _codes((7, 9, kept), seed=kept)
    tables = _tables(kept)
    data = _encode(codes, prior, tables)
    header = read_header(data)
    assert header.method == Method.PRIOR and header.has_stage_axis and header.kept_stages == kept
    params = header.prior_params
    # The prior's CRC covers stage 0 (where the prior's arithmetic matters); the stream CRC covers all.
    assert params["codes_crc32"] == zlib.crc32(np.ascontiguousarray(codes[..., 0]).astype("<i4").tobytes())
    assert 0 < params["prior_payload_bytes"] <= header.payload_length
    assert (params["prior_payload_bytes"] == header.payload_length) == (kept == 1)
    decoded = decode_stream(data, prior=prior, code_probabilities=tables)
    np.testing.assert_array_equal(decoded.codes, codes)
    assert decoded.codes.dtype == np.int32


def test_stage_zero_is_coded_by_the_prior_and_the_rest_as_static_codes_it(prior):
    codes = _codes((8, 8, 3))
    tables = _tables(3)
    data = _encode(codes, prior, tables)
    header = read_header(data)
    coarse = encode_stream(
        np.ascontiguousarray(codes[..., 0]), num_codes=K, model_id=MODEL_ID, image_shape=(64, 64, 3),
        method="prior", prior=prior,
    )  # fmt: skip
    static_all = encode_stream(
        codes, num_codes=K, model_id=MODEL_ID, image_shape=(64, 64, 3), total_stages=4, method="static",
        code_probabilities=tables,
    )  # fmt: skip
    # The prior part is exactly the single-map prior payload of stage 0.
    assert header.prior_params["prior_payload_bytes"] == read_header(coarse).payload_length
    # The static part codes stages 1-2 under rows 1-2: fewer bytes than static's three stages.
    finer_bytes = header.payload_length - header.prior_params["prior_payload_bytes"]
    assert 0 < finer_bytes < read_header(static_all).payload_length


def test_decoding_needs_the_same_tables_and_prior(prior):
    import keras

    from vqvae_tf.priors.pixelcnn import GatedPixelCNN

    codes = _codes((5, 6, 2))
    tables = _tables(2)
    data = _encode(codes, prior, tables)
    with pytest.raises(BitstreamError, match=r"code_probabilities of shape \(2, 16\), got None"):
        decode_stream(data, prior=prior)
    other = tables.copy()
    other[1] = _tables(1, seed=7)[0]
    with pytest.raises(BitstreamError, match="fingerprint"):
        decode_stream(data, prior=prior, code_probabilities=other)
    with pytest.raises(BitstreamError, match="needs the prior"):
        decode_stream(data, code_probabilities=tables)
    keras.utils.set_random_seed(3)
    with pytest.raises(BitstreamError, match="coded with prior"):
        decode_stream(data, prior=GatedPixelCNN(K, channels=8, num_layers=2, map_shape=TILE), code_probabilities=tables)
    # A different first-stage table is fine: the prior codes stage 0.
    first = tables.copy()
    first[0] = _tables(1, seed=9)[0]
    np.testing.assert_array_equal(decode_stream(data, prior=prior, code_probabilities=first).codes, codes)


def _reframe(data, params=None, payload=None):
    """The stream with its method parameters and/or payload replaced, lengths and CRC fixed."""
    header = read_header(data)
    params = header.method_params if params is None else params
    payload = data[header.payload_start : header.payload_start + header.payload_length] if payload is None else payload
    fixed = bytearray(data[:HEADER_BYTES])
    struct.pack_into("<HI", fixed, HEADER_BYTES - 6, len(params), len(payload))
    body = bytes(fixed) + params + payload
    return body + struct.pack("<I", zlib.crc32(body))


def test_a_prior_part_longer_than_the_payload_or_trailing_bytes_are_refused(prior):
    codes = _codes((5, 6, 2))
    tables = _tables(2)
    data = _encode(codes, prior, tables)
    header = read_header(data)
    params = bytearray(header.method_params)
    struct.pack_into("<I", params, PRIOR_PARAMS_BYTES, header.payload_length + 1)
    with pytest.raises(BitstreamError, match="prior part of the payload is .* longer than the whole payload"):
        read_header(_reframe(data, params=bytes(params)))
    one = _encode(codes[..., :1], prior, tables[:1])
    payload = one[read_header(one).payload_start : -CRC_BYTES] + b"\0\0\0\0"
    with pytest.raises(BitstreamError, match="4 bytes after the prior's part, expected none"):
        decode_stream(_reframe(one, payload=payload), prior=prior, code_probabilities=tables[:1])


def test_every_truncation_and_a_sample_of_bit_flips_raise_or_decode_the_same(prior):
    codes = _codes((5, 6, 3))
    tables = _tables(3)
    data = _encode(codes, prior, tables)
    for length in range(0, len(data), 3):
        with pytest.raises(BitstreamError):
            decode_stream(data[:length], prior=prior, code_probabilities=tables)
    body = data[:-CRC_BYTES]
    # Behind a valid CRC: every bit of the method parameters and a sample of the prior's part of the payload
    # (the codes' CRC guards it; the static part, as in the static method, is guarded by the stream CRC alone).
    start = HEADER_BYTES + PRIOR_PARAMS_BYTES + 12
    params_bits = range(HEADER_BYTES * 8, start * 8)
    prior_end = start + read_header(data).prior_params["prior_payload_bytes"]
    payload_bits = np.random.default_rng(0).choice(range(start * 8, prior_end * 8), 32, replace=False)
    for bit in [*params_bits, *payload_bits]:
        corrupted = bytearray(body)
        corrupted[bit // 8] ^= 1 << (bit % 8)
        forged = bytes(corrupted) + struct.pack("<I", zlib.crc32(bytes(corrupted)))
        try:
            decoded = decode_stream(forged, prior=prior, code_probabilities=tables, max_pixels=1 << 16)
        except BitstreamError as error:
            assert str(error) and "\n" not in str(error)
            continue
        np.testing.assert_array_equal(decoded.codes, codes, err_msg=f"flip of bit {bit} went unnoticed")

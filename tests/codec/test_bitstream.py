"""Tests for the `.vqz` bitstream (`vqvae_tf.codec.bitstream`) and its ANS coder (`vqvae_tf.codec.entropy`)."""

import math
import os
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vqvae_tf.codec import bitstream
from vqvae_tf.codec.bitstream import BitstreamError, Method, decode_stream, encode_stream

MODEL_ID = bitstream.make_model_id(b"test model")
OTHER_ID = bitstream.make_model_id(b"another model")
HEADER_BYTES = 58  # fixed header of version 2 (written), documented in the module docstring
V1_HEADER_BYTES = 54  # version 1 (read only); `_forge` writes it
CRC_BYTES = 4
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _random_codes(shape, num_codes, seed=0):
    return np.random.default_rng(seed).integers(0, num_codes, size=shape, dtype=np.int64).astype(np.int32)


def _probabilities(num_codes, seed=0):
    rng = np.random.default_rng(seed)
    return bitstream.code_probabilities_from_counts(rng.integers(0, 50, size=num_codes))


def _encode(codes, num_codes, method="packed", probabilities=None, image_shape=(32, 32, 3)):
    if method == "static" and probabilities is None:
        probabilities = _probabilities(num_codes)
    return encode_stream(
        codes,
        num_codes=num_codes,
        model_id=MODEL_ID,
        image_shape=image_shape,
        method=method,
        code_probabilities=probabilities,
    )


def _forge(
    *,
    magic=b"VQZ1",
    version=1,
    method=0,
    flags=0,
    model_id=MODEL_ID,
    image=(4, 4, 1),
    stages=1,
    code=(2, 2),
    num_codes=4,
    params=b"",
    payload=b"\x1b",
    payload_length=None,
):
    """A version-1 stream with arbitrary header fields and a valid CRC (the reader still reads version 1)."""
    if payload_length is None:
        payload_length = len(payload)
    head = struct.pack(
        "<4sBBH16sIIHHIIIHI",
        magic,
        version,
        method,
        flags,
        model_id,
        *image,
        stages,
        *code,
        num_codes,
        len(params),
        payload_length,
    )
    body = head + params + payload
    return body + struct.pack("<I", zlib.crc32(body))


# --------------------------------------------------------------------------- round trips

K_VALUES = [2, 3, 256, 512, 1000, 1024, 65536]
SHAPES = [(1, 1), (1, 7), (3, 5), (16, 16), (33, 17), (4, 4, 1), (5, 3, 4)]


@pytest.mark.parametrize("num_codes", K_VALUES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", ["packed", "static"])
def test_round_trip_is_exact(method, shape, num_codes):
    codes = _random_codes(shape, num_codes, seed=num_codes)
    probabilities = _probabilities(num_codes)
    data = _encode(codes, num_codes, method, probabilities, image_shape=(64, 48, 3))

    decoded = decode_stream(data, expected_model_id=MODEL_ID, code_probabilities=probabilities)

    assert decoded.codes.dtype == np.int32
    assert decoded.codes.shape == shape  # (h, w, 1) keeps its stage axis
    np.testing.assert_array_equal(decoded.codes, codes)
    assert decoded.image_shape == (64, 48, 3)
    assert decoded.num_codes == num_codes
    assert decoded.model_id == MODEL_ID
    assert decoded.method == Method[method.upper()]


@pytest.mark.parametrize("num_codes", K_VALUES)
@pytest.mark.parametrize("shape", SHAPES)
def test_packed_size_is_exact(shape, num_codes):
    bits = math.ceil(math.log2(num_codes))
    data = _encode(_random_codes(shape, num_codes), num_codes)
    assert len(data) == HEADER_BYTES + math.ceil(math.prod(shape) * bits / 8) + CRC_BYTES


@FUZZ
@given(data=st.data())
def test_round_trip_property(data):
    num_codes = data.draw(st.integers(2, 1 << 17), label="K")
    rank = data.draw(st.sampled_from([2, 3]), label="rank")
    shape = tuple(data.draw(st.lists(st.integers(1, 9), min_size=rank, max_size=rank), label="shape"))
    method = data.draw(st.sampled_from(["packed", "static"]), label="method")
    dtype = data.draw(st.sampled_from([np.int32, np.int64, np.uint32]), label="dtype")
    codes = _random_codes(shape, num_codes, seed=data.draw(st.integers(0, 2**32 - 1))).astype(dtype)
    probabilities = _probabilities(num_codes)

    encoded = _encode(codes, num_codes, method, probabilities)
    decoded = decode_stream(encoded, code_probabilities=probabilities)

    np.testing.assert_array_equal(decoded.codes, codes)
    assert decoded.codes.shape == shape


def test_max_size_codes_round_trip():
    # Codes at the top of the range exercise the most significant packed bit.
    codes = np.full((3, 3), 65535, dtype=np.int32)
    codes[0, 0] = 0
    for method in ("packed", "static"):
        np.testing.assert_array_equal(
            decode_stream(_encode(codes, 65536, method), code_probabilities=_probabilities(65536)).codes, codes
        )


def test_packing_crosses_chunk_boundaries():
    # More codes than one packing chunk, with a bit width that is not a byte.
    codes = _random_codes((300, 301), 1000, seed=3)
    np.testing.assert_array_equal(decode_stream(_encode(codes, 1000)).codes, codes)


# --------------------------------------------------------------------------- compression


def test_static_beats_packing_on_skewed_codes():
    num_codes = 512
    rng = np.random.default_rng(1)
    weights = 0.9 ** np.arange(num_codes)  # most mass on a few dozen codes
    probabilities = weights / weights.sum()
    codes = rng.choice(num_codes, size=(64, 64), p=probabilities).astype(np.int32)

    packed = _encode(codes, num_codes, "packed")
    static = _encode(codes, num_codes, "static", probabilities)

    entropy_bytes = -np.log2(probabilities[codes]).sum() / 8
    assert len(static) < 0.6 * len(packed)  # ~4.5 of 9 bits per code
    assert len(static) <= entropy_bytes + 100  # within header + a few words of the ideal
    np.testing.assert_array_equal(decode_stream(static, code_probabilities=probabilities).codes, codes)


@pytest.mark.parametrize("num_codes", [512, 1000])
def test_static_matches_packing_on_uniform_codes(num_codes):
    codes = _random_codes((64, 64), num_codes, seed=2)
    uniform = np.full(num_codes, 1.0 / num_codes)
    packed = _encode(codes, num_codes, "packed")
    static = _encode(codes, num_codes, "static", uniform)
    # 8 fingerprint bytes plus at most a couple of ANS state words.
    assert len(static) <= len(packed) + 16
    assert len(static) >= 0.98 * len(packed) * math.log2(num_codes) / math.ceil(math.log2(num_codes))


# --------------------------------------------------------------------------- parser fuzzing


def _valid_streams():
    codes = _random_codes((3, 4, 2), 1000, seed=5)
    return {
        "packed": (_encode(codes, 1000, "packed"), codes),
        "static": (_encode(codes, 1000, "static"), codes),
    }


VALID = _valid_streams()
PROBABILITIES_1000 = _probabilities(1000)


def _decode_or_error(data):
    """Decodes, or returns the BitstreamError; any other exception fails the test."""
    try:
        return decode_stream(data, code_probabilities=PROBABILITIES_1000, max_pixels=1 << 16)
    except BitstreamError as error:
        assert str(error) and "\n" not in str(error)
        return error


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_bitstream_error(data):
    assert isinstance(_decode_or_error(data), BitstreamError)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_valid_magic_raise_bitstream_error(tail):
    assert isinstance(_decode_or_error(b"VQZ1\x01" + tail), BitstreamError)


@pytest.mark.parametrize("method", ["packed", "static"])
def test_every_truncation_raises(method):
    data, _ = VALID[method]
    for length in range(len(data)):
        result = _decode_or_error(data[:length])
        assert isinstance(result, BitstreamError), f"truncation to {length} bytes decoded"


@pytest.mark.parametrize("method", ["packed", "static"])
def test_every_single_bit_flip_raises(method):
    data, _ = VALID[method]
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        result = _decode_or_error(bytes(flipped))
        assert isinstance(result, BitstreamError), f"flip of bit {bit} decoded"


@FUZZ
@given(method=st.sampled_from(["packed", "static"]), flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=4))
def test_random_bit_flips_return_original_or_raise(method, flips):
    data, codes = VALID[method]
    corrupted = bytearray(data)
    for bit in flips:
        bit %= len(data) * 8
        corrupted[bit // 8] ^= 1 << (bit % 8)
    result = _decode_or_error(bytes(corrupted))
    if not isinstance(result, BitstreamError):  # flips that cancelled out
        np.testing.assert_array_equal(result.codes, codes)


@FUZZ
@given(
    method=st.integers(0, 3),
    flags=st.integers(0, 3),
    image=st.tuples(*[st.integers(0, 300)] * 3),
    stages=st.integers(0, 3),
    code=st.tuples(st.integers(0, 70), st.integers(0, 70)),
    num_codes=st.integers(0, 1 << 21),
    params=st.binary(max_size=10),
    payload=st.binary(max_size=64),
)
def test_forged_headers_with_valid_crc_never_crash(method, flags, image, stages, code, num_codes, params, payload):
    # Past the CRC the parser must still distrust every field.
    data = _forge(
        method=method,
        flags=flags,
        image=image,
        stages=stages,
        code=code,
        num_codes=num_codes,
        params=params,
        payload=payload,
    )
    result = _decode_or_error(data)
    if not isinstance(result, BitstreamError):
        assert result.codes.shape == result.header.code_shape
        assert result.codes.min() >= 0 and result.codes.max() < result.num_codes


# --------------------------------------------------------------------------- specific refusals


def _error(data, **kwargs) -> str:
    with pytest.raises(BitstreamError) as info:
        decode_stream(data, **kwargs)
    return str(info.value)


@pytest.mark.parametrize(
    "image, code", [((10**6, 10**6, 3), (2, 2)), ((4, 4, 1), (2**32 - 1, 2**32 - 1)), ((4, 4, 1), (10**6, 10**6))]
)
def test_absurd_sizes_refused_without_allocating(image, code):
    data = _forge(image=image, code=code, num_codes=2, payload=b"")
    tracemalloc.start()
    try:
        message = _error(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "max_pixels" in message
    assert peak < 1 << 20


def test_max_pixels_is_configurable():
    data, codes = VALID["packed"]  # a 3x4x2 map of a 32x32 image
    assert "1024 pixels exceeds max_pixels=1000" in _error(data, max_pixels=1000)
    np.testing.assert_array_equal(decode_stream(data, max_pixels=32 * 32).codes, codes)


def test_code_count_limit_applies_separately():
    data, _ = VALID["packed"]
    with pytest.raises(BitstreamError, match="24 codes exceeds"):
        # An image of 1 pixel passes, the 24-code map does not.
        decode_stream(
            _forge(
                image=(1, 1, 1), code=(3, 4), flags=1, stages=2, num_codes=1000, payload=data[HEADER_BYTES:-CRC_BYTES]
            ),
            max_pixels=23,
        )


def test_model_id_mismatch_is_clear():
    data, _ = VALID["packed"]
    message = _error(data, expected_model_id=OTHER_ID)
    assert MODEL_ID.hex() in message and OTHER_ID.hex() in message
    assert decode_stream(data, expected_model_id=MODEL_ID).model_id == MODEL_ID


def test_static_needs_the_same_distribution():
    data, _ = VALID["static"]
    assert "code_probabilities" in _error(data)
    assert "fingerprint" in _error(data, code_probabilities=_probabilities(1000, seed=9))
    assert "shape (1000,)" in _error(data, code_probabilities=_probabilities(999))


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"magic": b"PNG\x89"}, "magic"),
        ({"version": 3}, "version 3, this reader supports versions 1, 2"),
        ({"version": 0}, "version 0"),
        ({"method": 7}, "method id 7"),
        ({"method": 2}, "'prior' takes 20 parameter bytes, got 0"),
        # A stage axis: the prior's 20 bytes, then the prior part's length and the finer stages' fingerprint.
        ({"method": 2, "params": bytes(20), "flags": 1, "stages": 2}, "'prior' takes 32 parameter bytes, got 20"),
        ({"method": 2, "params": bytes(10) + struct.pack("<HHH", 0, 4, 1) + bytes(4)}, "tile 0x4"),
        ({"method": 2, "params": bytes(10) + struct.pack("<HHH", 4, 4, 0) + bytes(4)}, "0 tiles per batch"),
        ({"flags": 4}, "flags"),
        ({"stages": 2}, "stage-axis flag"),
        ({"num_codes": 1}, "num_codes is 1"),
        ({"num_codes": 2**32 - 1}, "num_codes"),
        ({"image": (0, 4, 1)}, "image height is 0"),
        ({"code": (2, 0)}, "code width is 0"),
        ({"payload": b"\x1b\x00"}, "packed payload is 2 bytes"),
        ({"payload": b""}, "packed payload is 0 bytes"),
        ({"num_codes": 3, "payload": b"\xff"}, "code 3"),
        ({"num_codes": 2, "payload": b"\x1f"}, "padding"),
        ({"params": b"x"}, "parameter bytes"),
    ],
)
def test_invalid_headers_are_named(fields, expected):
    assert expected in _error(_forge(**fields))


def test_declared_payload_length_must_match_data():
    assert "truncated" in _error(_forge(payload_length=1000))
    good = _forge()
    assert "trailing" in _error(good + b"\x00")


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b"\x01\x00\x00", "multiple of 4"),
        (b"\x00\x00\x00\x00", "invalid static payload"),  # ANS data never ends in a zero word
        (b"\x01\x00\x00\x00" * 8, "unused words"),
    ],
)
def test_invalid_static_payloads(payload, expected):
    probabilities = _probabilities(4)
    fingerprint = bitstream.read_header(
        _encode(np.zeros((1, 1), np.int32), 4, "static", probabilities)
    ).distribution_fingerprint
    data = _forge(method=1, params=fingerprint, payload=payload)
    assert expected in _error(data, code_probabilities=probabilities)


def test_corruption_reported_as_crc_mismatch():
    data = bytearray(VALID["packed"][0])
    data[HEADER_BYTES + 1] ^= 0x10
    assert "CRC32" in _error(bytes(data))


def test_non_bytes_input():
    assert "must be bytes" in _error("VQZ1")


def test_read_header_reports_fields():
    data, _ = VALID["static"]
    header = bitstream.read_header(data)
    assert header.method == Method.STATIC
    assert header.code_shape == (3, 4, 2) and header.num_symbols == 24
    assert header.image_shape == (32, 32, 3)
    assert header.num_codes == 1000 and header.bits_per_code == 10
    assert header.model_id == MODEL_ID
    assert header.total_length == len(data)
    assert len(header.distribution_fingerprint) == 8


# --------------------------------------------------------------------------- encode validation


@pytest.mark.parametrize(
    "codes, expected",
    [
        (np.array([[0, 4]]), "got values in [0, 4]"),
        (np.array([[-1, 0]]), "got values in [-1, 0]"),
        (np.zeros((2, 2), np.float32), "integer dtype, got float32"),
        (np.zeros((2, 2), bool), "integer dtype, got bool"),
        (np.zeros(4, np.int32), "got shape (4,)"),
        (np.zeros((1, 2, 2, 2), np.int32), "got shape (1, 2, 2, 2)"),
        (np.zeros((0, 3), np.int32), "empty"),
        ([[0, 1]], "numpy array, got list"),
        (np.zeros((1, 1, 70000), np.int8), "axis 2 has size 70000"),
    ],
)
def test_encode_rejects_bad_codes(codes, expected):
    with pytest.raises(BitstreamError) as info:
        _encode(codes, 4)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"num_codes": 1}, "`num_codes` must be an int >= 2 and <= 1048576; received 1."),
        ({"num_codes": True}, "`num_codes` must be an int"),
        ({"num_codes": 2**21}, "received 2097152"),
        ({"model_id": b"short"}, "16 bytes (see make_model_id), got 5 bytes"),
        ({"model_id": "x" * 16}, "got str"),
        ({"image_shape": (4, 4)}, "(height, width, channels), got (4, 4)"),
        ({"image_shape": (4, 0, 3)}, "`image width` must be an int >= 1"),
        ({"method": "zip"}, "got 'zip'"),
        ({"method": "prior"}, "needs the prior the codes are coded with, got prior=None"),
        ({"method": "static", "code_probabilities": None}, "needs code_probabilities"),
        ({"method": "static", "code_probabilities": np.array([0.5, 0.5, 0.0, 0.0])}, "strictly positive"),
        ({"method": "static", "code_probabilities": np.array([0.5, np.nan, 1, 1])}, "strictly positive"),
        ({"method": "static", "code_probabilities": np.ones(5)}, "shape (4,), got (5,)"),
    ],
)
def test_encode_rejects_bad_arguments(kwargs, expected):
    arguments = dict(num_codes=4, model_id=MODEL_ID, image_shape=(8, 8, 1))
    arguments.update(kwargs)
    with pytest.raises(BitstreamError) as info:
        encode_stream(np.zeros((2, 2), np.int32), **arguments)
    assert expected in str(info.value)


def test_helpers():
    assert bitstream.make_model_id(b"a", b"b") == bitstream.make_model_id(b"ab")
    assert len(bitstream.make_model_id(b"a")) == 16
    probabilities = bitstream.code_probabilities_from_counts([0, 10, 0, 5])
    assert probabilities.min() > 0 and math.isclose(probabilities.sum(), 1.0)
    with pytest.raises(BitstreamError, match="non-negative"):
        bitstream.code_probabilities_from_counts([1, -1])


# --------------------------------------------------------------------------- files


def _temp_files(directory):
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


def test_write_and_read_file(tmp_path):
    codes = _random_codes((7, 9), 512)
    path = tmp_path / "image.vqz"
    size = bitstream.write_file(path, codes, num_codes=512, model_id=MODEL_ID, image_shape=(28, 36, 1))
    assert size == path.stat().st_size
    decoded = bitstream.read_file(path, expected_model_id=MODEL_ID)
    np.testing.assert_array_equal(decoded.codes, codes)
    assert _temp_files(tmp_path) == []


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "image.vqz"
    path.write_bytes(b"old")
    codes = _random_codes((4, 4), 16)

    def failing_replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        bitstream.write_file(path, codes, num_codes=16, model_id=MODEL_ID, image_shape=(16, 16, 1))
    assert path.read_bytes() == b"old"
    assert _temp_files(tmp_path) == []

    monkeypatch.undo()
    with pytest.raises(BitstreamError):  # bad input: nothing is written at all
        bitstream.write_file(path, codes, num_codes=4, model_id=MODEL_ID, image_shape=(16, 16, 1))
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["image.vqz"]


def test_read_file_refuses_oversized_file(tmp_path):
    path = tmp_path / "big.vqz"
    path.write_bytes(b"VQZ1" + bytes(200_000))
    with pytest.raises(BitstreamError, match="larger than"):
        bitstream.read_file(path, max_pixels=1)


# --------------------------------------------------------------------------- method 2: prior

PRIOR_K = 16
PRIOR_TILE = (4, 4)


def _tiny_prior(seed=0, num_codes=PRIOR_K, map_shape=PRIOR_TILE):
    import keras

    from vqvae_tf.priors.pixelcnn import GatedPixelCNN

    keras.utils.set_random_seed(seed)
    return GatedPixelCNN(num_codes, channels=8, num_layers=2, map_shape=map_shape)


@pytest.fixture(scope="module")
def prior():
    return _tiny_prior()


@pytest.fixture(scope="module")
def prior_stream(prior):
    codes = _random_codes((6, 7), PRIOR_K, seed=11)
    data = encode_stream(
        codes, num_codes=PRIOR_K, model_id=MODEL_ID, image_shape=(48, 56, 3), method="prior", prior=prior
    )
    return data, codes


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (4, 4), (9, 7), (13, 16)])
def test_prior_round_trip_is_exact(prior, shape):
    # Maps smaller than, equal to and larger than the tile, with partial edge tiles.
    codes = _random_codes(shape, PRIOR_K, seed=sum(shape))
    data = encode_stream(
        codes, num_codes=PRIOR_K, model_id=MODEL_ID, image_shape=(64, 64, 3), method="prior", prior=prior
    )
    decoded = decode_stream(data, expected_model_id=MODEL_ID, prior=prior)
    np.testing.assert_array_equal(decoded.codes, codes)
    assert decoded.method == Method.PRIOR and decoded.codes.dtype == np.int32
    header = decoded.header
    assert len(header.method_params) == 20
    params = header.prior_params
    assert params["tile"] == PRIOR_TILE and params["label"] is None and params["tiles_per_batch"] == 256
    assert params["codes_crc32"] == zlib.crc32(codes.astype("<i4").tobytes())
    assert bytes.fromhex(params["fingerprint"]) == header.method_params[:8]


def test_prior_stream_needs_the_same_prior(prior, prior_stream):
    data, codes = prior_stream
    assert "needs the prior" in _error(data)
    assert "coded with prior" in _error(data, prior=_tiny_prior(seed=1))
    assert "models 8 codes, the stream has num_codes=16" in _error(data, prior=_tiny_prior(num_codes=8))
    np.testing.assert_array_equal(decode_stream(data, prior=prior).codes, codes)


def test_prior_refuses_a_stage_axis_without_tables_and_bad_tiles(prior):
    # A stage axis codes the stages after the first under static tables, which must be given.
    with pytest.raises(BitstreamError, match=r"stage axis .* code_probabilities of shape \(2, 16\), got None"):
        encode_stream(
            _random_codes((2, 2, 2), PRIOR_K),
            num_codes=PRIOR_K,
            model_id=MODEL_ID,
            image_shape=(8, 8, 1),
            method="prior",
            prior=prior,
        )
    with pytest.raises(BitstreamError, match="maps of size"):
        encode_stream(
            _random_codes((6, 6), PRIOR_K),
            num_codes=PRIOR_K,
            model_id=MODEL_ID,
            image_shape=(8, 8, 1),
            method="prior",
            prior=prior,
            tile=(3, 3),
        )


def _decode_with(data, prior):
    try:
        return decode_stream(data, prior=prior, max_pixels=1 << 16)
    except BitstreamError as error:
        assert str(error) and "\n" not in str(error)
        return error


def test_prior_every_truncation_and_bit_flip_raises(prior, prior_stream):
    data, _ = prior_stream
    for length in range(len(data)):
        assert isinstance(_decode_with(data[:length], prior), BitstreamError), f"truncation to {length} decoded"
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert isinstance(_decode_with(bytes(flipped), prior), BitstreamError), f"flip of bit {bit} decoded"


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_prior_corruption_behind_a_valid_crc_raises(prior, prior_stream):
    # The stream CRC is forged to match, so the prior decoder itself must catch
    # every changed parameter bit and a sample of changed payload bits (ANS
    # failure, leftover words or the codes' CRC32), or still decode the same codes.
    data, codes = prior_stream
    body = data[:-CRC_BYTES]
    params_bits = range(HEADER_BYTES * 8, (HEADER_BYTES + 20) * 8)
    payload_bits = np.random.default_rng(0).choice(range((HEADER_BYTES + 20) * 8, len(body) * 8), 24, replace=False)
    for bit in [*params_bits, *payload_bits]:
        corrupted = bytearray(body)
        corrupted[bit // 8] ^= 1 << (bit % 8)
        result = _decode_with(_recrc(bytes(corrupted)), prior)
        if not isinstance(result, BitstreamError):  # e.g. more tiles per batch than there are tiles
            np.testing.assert_array_equal(result.codes, codes, err_msg=f"flip of bit {bit} went unnoticed")
    for cut in (4, 8):  # whole words missing, or appended
        assert isinstance(_decode_with(_recrc(body[:-cut]), prior), BitstreamError)
    shorter = body[: HEADER_BYTES - 4] + struct.pack("<I", len(body) - HEADER_BYTES - 20 + 4)
    assert isinstance(_decode_with(_recrc(shorter + body[HEADER_BYTES:] + b"\x01\0\0\0"), prior), BitstreamError)


def test_docstring_examples():
    import doctest

    from vqvae_tf.codec import entropy
    from vqvae_tf.codec.bitstream import header, stream

    results = [doctest.testmod(module) for module in (bitstream, header, stream, entropy)]
    assert sum(r.attempted for r in results) >= 8 and sum(r.failed for r in results) == 0

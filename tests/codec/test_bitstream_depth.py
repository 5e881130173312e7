"""Variable-depth streams: positions of a residual image map keep different numbers of stages."""

import struct
import zlib

import numpy as np
import pytest

from vqvae_tf.codec import bitstream
from vqvae_tf.codec.bitstream import BitstreamError, decode_stream, encode_stream, read_header
from vqvae_tf.codec.bitstream import depth as depths
from vqvae_tf.codec.bitstream.depth import ABSENT

MODEL_ID = bitstream.make_model_id(b"variable depth test")
K = 16
HEADER_BYTES = 58
FLAGS_OFFSET = 7


def _codes(shape, seed=0):
    return np.random.default_rng(seed).integers(0, K, size=shape).astype(np.int32)


def _depth(shape, kept, seed=1):
    return np.random.default_rng(seed).integers(1, kept + 1, size=shape).astype(np.int32)


def _tables(n, seed=2):
    rng = np.random.default_rng(seed)
    return np.stack([bitstream.code_probabilities_from_counts(rng.integers(0, 50, size=K)) for _ in range(n)])


@pytest.fixture(scope="module")
def prior():
    import keras

    from vqvae_tf.priors.pixelcnn import GatedPixelCNN

    keras.utils.set_random_seed(0)
    return GatedPixelCNN(K, channels=8, num_layers=2, map_shape=(4, 4))


def _encode(codes, depth, method="packed", **kwargs):
    h, w, _ = codes.shape
    return encode_stream(
        codes,
        num_codes=K,
        model_id=MODEL_ID,
        image_shape=(8 * h, 8 * w, 3),
        total_stages=4,
        method=method,
        depth=depth,
        **kwargs,
    )


def _expected(codes, depth):
    stages = np.arange(codes.shape[-1])
    return np.where(stages[None, None, :] < depth[..., None], codes, ABSENT)


@pytest.mark.parametrize("method", ["packed", "static", "prior"])
def test_round_trip_keeps_each_position_s_stages_and_marks_the_rest_absent(method, prior):
    codes, depth = _codes((6, 7, 3)), _depth((6, 7), 3)
    tables = _tables(3)
    extra = dict(code_probabilities=tables) if method != "packed" else {}
    if method == "prior":
        extra["prior"] = prior
    data = _encode(codes, depth, method, **extra)
    header = read_header(data)
    assert header.variable_depth and header.kept_stages == 3 and header.total_stages == 4
    stream = decode_stream(data, **extra)
    np.testing.assert_array_equal(stream.depth, depth)
    np.testing.assert_array_equal(stream.codes, _expected(codes, depth))


def test_shallow_positions_cost_fewer_bytes_than_the_uniform_map():
    codes = _codes((16, 16, 4))
    uniform = encode_stream(codes, num_codes=K, model_id=MODEL_ID, image_shape=(128, 128, 3), total_stages=4)
    depth = np.ones((16, 16), np.int32)
    depth[:4] = 4  # a quarter of the positions keep every stage
    variable = _encode(codes, depth)
    # 256 codes of stage 0 + 64 x 3 finer at 4 bits = 224 bytes, against 512 uniform,
    # plus the depth section: 12 bytes and about 0.81 bits per position (26 bytes).
    section = len(depths.encode_section(depth, 4))
    assert section <= 12 + 32
    assert len(variable) == len(uniform) - 512 + 224 + section
    np.testing.assert_array_equal(decode_stream(variable).codes[:4], codes[:4])


def test_uniform_depth_round_trips_like_the_uniform_stream():
    codes = _codes((5, 5, 2))
    data = _encode(codes, np.full((5, 5), 2, np.int32), "static", code_probabilities=_tables(2))
    np.testing.assert_array_equal(decode_stream(data, code_probabilities=_tables(2)).codes, codes)


@pytest.mark.parametrize(
    "depth, message",
    [
        (np.zeros((3, 3), np.int32), r"depth must be in 1\.\.2"),
        (np.full((3, 3), 3, np.int32), r"depth must be in 1\.\.2"),
        (np.ones((3, 4), np.int32), r"depth must have shape \(3, 3\)"),
        (np.ones((3, 3), np.float32), "integer numpy array"),
    ],
)
def test_bad_depth_is_refused_with_what_was_expected(depth, message):
    with pytest.raises(BitstreamError, match=message):
        _encode(_codes((3, 3, 2)), depth)


def test_depth_needs_a_stage_axis_and_an_image():
    with pytest.raises(BitstreamError, match=r"stage axis \(h, w, n\)"):
        encode_stream(
            _codes((3, 3)), num_codes=K, model_id=MODEL_ID, image_shape=(24, 24, 3), depth=np.ones((3, 3), np.int32)
        )
    with pytest.raises(BitstreamError, match="audio streams keep whole frames"):
        encode_stream(
            _codes((10, 2)),
            num_codes=K,
            model_id=MODEL_ID,
            audio=bitstream.AudioFormat(16000, 3200),
            depth=np.ones((10,), np.int32),
        )


def _reframe(data: bytes, payload: bytes) -> bytes:
    """`data` with its payload replaced (lengths and CRC fixed): what a writer of bad payloads makes."""
    params_length = struct.unpack_from("<H", data, 52)[0]
    head = bytearray(data[: HEADER_BYTES + params_length])
    struct.pack_into("<I", head, 54, len(payload))
    body = bytes(head) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def test_corrupt_depth_sections_fail_clearly():
    codes, depth = _codes((4, 4, 3)), _depth((4, 4), 3)
    data = _encode(codes, depth)
    payload = data[HEADER_BYTES:-4]
    with pytest.raises(BitstreamError, match="truncated depth section"):
        decode_stream(_reframe(data, payload[:5]))
    too_long = struct.pack("<I", 1 << 20) + payload[4:]
    with pytest.raises(BitstreamError, match="declares 1048576 bytes of depths"):
        decode_stream(_reframe(data, too_long))
    no_depths = payload[:4] + bytes(6) + payload[10:]
    with pytest.raises(BitstreamError, match="every depth has frequency 0"):
        decode_stream(_reframe(data, no_depths))
    with pytest.raises(BitstreamError, match="packed payload is"):
        decode_stream(_reframe(data, payload[:-1]))


def test_the_flag_on_a_map_without_stage_axis_is_an_invalid_header():
    data = bytearray(encode_stream(_codes((3, 3)), num_codes=K, model_id=MODEL_ID, image_shape=(24, 24, 3)))
    data[FLAGS_OFFSET] |= 2
    body = bytes(data[:-4])
    with pytest.raises(BitstreamError, match="variable-depth flag needs an image map with a stage axis"):
        read_header(body + struct.pack("<I", zlib.crc32(body)))


def test_the_prior_runs_once_for_many_depth_maps_of_one_code_map(prior, monkeypatch):
    from vqvae_tf.codec.bitstream import prior_method

    calls = []
    real = prior_method._tiles
    monkeypatch.setattr(prior_method, "_tiles", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(prior_method, "_last_stage_zero", [])
    codes, tables = _codes((6, 7, 3)), _tables(3)
    streams = [
        _encode(codes, _depth((6, 7), 3, seed=s), "prior", code_probabilities=tables, prior=prior) for s in (1, 2)
    ]
    assert len(calls) == 1  # stage 0 is the same: its prior part was reused
    for seed, data in zip((1, 2), streams):
        stream = decode_stream(data, code_probabilities=tables, prior=prior)
        np.testing.assert_array_equal(stream.depth, _depth((6, 7), 3, seed=seed))
    # Other stage-0 codes, or another prior's weights, run the prior again.
    _encode(_codes((6, 7, 3), seed=5), _depth((6, 7), 3), "prior", code_probabilities=tables, prior=prior)
    assert len(calls) == 2
    import keras

    from vqvae_tf.priors.pixelcnn import GatedPixelCNN

    keras.utils.set_random_seed(1)
    other = GatedPixelCNN(K, channels=8, num_layers=2, map_shape=(4, 4))
    data = _encode(_codes((6, 7, 3), seed=5), _depth((6, 7), 3), "prior", code_probabilities=tables, prior=other)
    assert len(calls) == 3
    with pytest.raises(BitstreamError, match="prior"):
        decode_stream(data, code_probabilities=tables, prior=prior)

"""The `.vqz` version 2 (`vqvae_tf.codec.bitstream`): one layout for images and audio, stages kept of S.

Version 1 reading is covered by `test_bitstream.py` (its `_forge` writes
version-1 headers) and by the shipped fixtures of `tests/test_compat.py`.
"""

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vqvae_tf.codec import bitstream
from vqvae_tf.codec.bitstream import AudioFormat, BitstreamError, Kind, Method, decode_stream, encode_stream
from vqvae_tf.codec.prior_coding.tiled import NO_LABEL
from vqvae_tf.codec.prior_coding.tiled import PARAMS as PRIOR_PARAMS

MODEL_ID = bitstream.make_model_id(b"v2 model")
V2 = struct.Struct("<4sBBBB16sIHHIIIIHHHI")  # the layout documented in vqvae_tf.codec.bitstream
V1 = struct.Struct("<4sBBH16sIIHHIIIHI")
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPEECH = AudioFormat(sample_rate=22050, num_samples=33075, channels=1, source_channels=2)

#: Prior parameters with a valid tile (1, 4) and one segment per batch.
PRIOR_AUDIO_PARAMS = PRIOR_PARAMS.pack(bytes(8), NO_LABEL, 1, 4, 1, 0)


def _codes(shape, num_codes, seed=0):
    return np.random.default_rng(seed).integers(0, num_codes, size=shape).astype(np.int32)


def _stage_probabilities(stages, num_codes, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([bitstream.code_probabilities_from_counts(rng.integers(0, 50, num_codes)) for _ in range(stages)])


def _forge(
    *,
    method=0,
    kind=0,
    flags=0,
    num_codes=4,
    total=1,
    kept=1,
    code=(2, 2),
    signal=(4, 4, 1, 0),
    params=b"",
    payload=b"\x1b",
):
    head = V2.pack(
        b"VQZ1", 2, method, kind, flags, MODEL_ID, num_codes, total, kept, *code, *signal, len(params), len(payload)
    )
    body = head + params + payload
    return body + struct.pack("<I", zlib.crc32(body))


def _error(data, **kwargs) -> str:
    with pytest.raises(BitstreamError) as info:
        decode_stream(data, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_image_header_layout_is_the_documented_one():
    codes = _codes((3, 5, 2), 512)
    data = encode_stream(codes, num_codes=512, model_id=MODEL_ID, image_shape=(11, 19, 3), total_stages=4)
    fields = V2.unpack_from(data)
    assert fields[:5] == (b"VQZ1", 2, 0, 0, 1)  # magic, version, packed, image, stage axis
    assert fields[5] == MODEL_ID
    assert fields[6:] == (512, 4, 2, 3, 5, 11, 19, 3, 0, 0, len(data) - V2.size - 4)
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])
    header = bitstream.read_header(data)
    assert (header.version, header.kind, header.image_shape, header.audio) == (2, Kind.IMAGE, (11, 19, 3), None)
    assert (header.code_shape, header.kept_stages, header.total_stages) == ((3, 5, 2), 2, 4)
    np.testing.assert_array_equal(decode_stream(data).codes, codes)


@pytest.mark.parametrize("method", ["packed", "static"])
@pytest.mark.parametrize("shape, total", [((40,), None), ((40, 1), 4), ((40, 3), 3), ((7, 2), 8)])
def test_audio_streams_round_trip_with_their_fields(method, shape, total):
    codes = _codes(shape, 1024, seed=1)
    kept = shape[1] if len(shape) == 2 else None
    probabilities = _stage_probabilities(kept, 1024) if kept else _stage_probabilities(1, 1024)[0]
    data = encode_stream(
        codes,
        num_codes=1024,
        model_id=MODEL_ID,
        audio=SPEECH,
        total_stages=total,
        method=method,
        code_probabilities=probabilities,
    )
    fields = V2.unpack_from(data)
    assert fields[3] == 1 and fields[10] == 0  # kind audio, no code width
    assert fields[11:15] == (22050, 33075, 1, 2)
    stream = decode_stream(data, code_probabilities=probabilities)
    np.testing.assert_array_equal(stream.codes, codes)
    header = stream.header
    assert header.kind == Kind.AUDIO and header.kind.label == "audio" and header.image_shape is None
    assert header.audio == SPEECH and header.audio.duration == 1.5
    assert header.code_shape == shape and header.kept_stages == (kept or 1)
    assert header.total_stages == (total or kept or 1)


def test_static_codes_each_stage_kept_under_its_own_distribution():
    rng = np.random.default_rng(2)
    # Stage 0 uses few codes, stage 1 many: per-stage rows pay off.
    codes = np.stack([rng.integers(0, 4, (32, 32)), rng.integers(0, 256, (32, 32))], axis=-1).astype(np.int32)
    counts = np.stack([np.bincount(codes[..., s].ravel(), minlength=256) for s in range(2)])
    per_stage = np.stack([bitstream.code_probabilities_from_counts(row) for row in counts])
    pooled = bitstream.code_probabilities_from_counts(counts.sum(axis=0))
    kwargs = dict(num_codes=256, model_id=MODEL_ID, image_shape=(128, 128, 3), total_stages=4, method="static")
    data = encode_stream(codes, code_probabilities=per_stage, **kwargs)
    np.testing.assert_array_equal(decode_stream(data, code_probabilities=per_stage).codes, codes)
    # Measured: 1350 bytes against 1570 pooled (2 + 8 bits a position against about 11).
    assert len(data) < 0.9 * len(encode_stream(codes, code_probabilities=pooled, **kwargs))
    assert "fingerprint" in _error(data, code_probabilities=pooled)
    assert "fingerprint" in _error(data, code_probabilities=per_stage[::-1])
    assert "shape (256,) or (2, 256), got (3, 256)" in _error(data, code_probabilities=np.ones((3, 256)))
    # The first stage alone is the same codes as stage 0 of the full map.
    first = encode_stream(codes[..., :1], code_probabilities=per_stage[:1], **kwargs)
    np.testing.assert_array_equal(decode_stream(first, code_probabilities=per_stage[:1]).codes, codes[..., :1])


def test_version_1_static_stage_maps_decode_in_c_order_under_one_distribution():
    codes = _codes((3, 4, 2), 16, seed=3)
    probabilities = _stage_probabilities(1, 16)[0]
    from vqvae_tf.codec.entropy import AnsEncoder

    encoder = AnsEncoder()
    encoder.push(codes.reshape(-1), probabilities)
    payload = encoder.payload()
    params = bitstream.static.distribution_fingerprint(probabilities)
    head = V1.pack(b"VQZ1", 1, 1, 1, MODEL_ID, 8, 8, 3, 2, 3, 4, 16, len(params), len(payload))
    body = head + params + payload
    data = body + struct.pack("<I", zlib.crc32(body))
    stream = decode_stream(data, code_probabilities=probabilities)
    np.testing.assert_array_equal(stream.codes, codes)
    header = stream.header
    assert (header.version, header.kind, header.kept_stages, header.total_stages) == (1, Kind.IMAGE, 2, 2)


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"kind": 2}, "unknown signal kind id 2"),
        ({"flags": 4}, "unsupported flags"),
        ({"flags": 2}, "the variable-depth flag needs an image map with a stage axis"),
        (
            {"kind": 1, "flags": 3, "total": 2, "kept": 2, "code": (4, 0), "signal": (8000, 64, 1, 1)},
            "the variable-depth flag needs an image map with a stage axis",
        ),
        ({"total": 4}, "1 of 4 stages declared without the stage-axis flag"),
        ({"flags": 1, "total": 2, "kept": 3, "code": (1, 1), "payload": b"\x00"}, "3 stages kept of the model's 2"),
        ({"flags": 1, "total": 0, "kept": 0}, "total stages is 0"),
        ({"signal": (4, 4, 1, 7)}, "reserved field of an image stream is 7"),
        ({"signal": (0, 4, 1, 0)}, "image height is 0"),
        ({"code": (2, 0)}, "code width is 0"),
        ({"kind": 1, "code": (4, 1), "signal": (16000, 64, 1, 1)}, "code width of an audio stream is 1"),
        ({"kind": 1, "code": (4, 0), "signal": (0, 64, 1, 1)}, "sample rate is 0"),
        ({"kind": 1, "code": (4, 0), "signal": (8000, 0, 1, 1)}, "number of samples is 0"),
        ({"kind": 1, "code": (4, 0), "signal": (8000, 64, 1, 0)}, "source channels is 0"),
        (
            # An audio prior stream codes every stage of (frames, S) frames in segments of whole frames.
            {"kind": 1, "code": (4, 0), "signal": (8000, 64, 1, 1), "method": 2, "params": PRIOR_AUDIO_PARAMS},
            "an audio 'prior' stream codes all 1 stages in segments",
        ),
        ({"num_codes": 1}, "num_codes is 1"),
    ],
)
def test_invalid_version_2_headers_are_named(fields, expected):
    assert expected in _error(_forge(**fields))


def test_audio_sample_limit_refuses_before_allocating():
    data = encode_stream(_codes((4,), 4), num_codes=4, model_id=MODEL_ID, audio=AudioFormat(8000, 10**6))
    assert "audio of 1000000 samples exceeds max_samples=999999" in _error(data, max_samples=999_999)
    assert decode_stream(data, max_samples=10**6).header.audio.num_samples == 10**6


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(image_shape=(8, 8, 3), audio=SPEECH), "exactly one of image_shape"),
        (dict(), "exactly one of image_shape"),
        (dict(audio=(16000, 100)), "audio must be an AudioFormat, got tuple"),
        (dict(audio=AudioFormat(0, 100)), "audio sample_rate"),
        (dict(audio=AudioFormat(8000, 2**32)), "audio num_samples"),
        (dict(image_shape=(8, 8, 3), total_stages=2), "total_stages of a map without a stage axis"),
        (dict(audio=SPEECH, method="prior"), "method 'prior' codes audio frames of all their stages"),
    ],
)
def test_encode_rejects_bad_signal_arguments(kwargs, expected):
    codes = _codes((2, 2), 4) if "image_shape" in kwargs else _codes((4,), 4)
    with pytest.raises(BitstreamError) as info:
        encode_stream(codes, num_codes=4, model_id=MODEL_ID, **kwargs)
    assert expected in str(info.value)


def test_encode_checks_codes_against_the_kind_and_the_stages():
    kwargs = dict(num_codes=4, model_id=MODEL_ID)
    with pytest.raises(BitstreamError, match=r"\(frames,\) or \(frames, stages\) for audio, got shape \(2, 2, 2\)"):
        encode_stream(_codes((2, 2, 2), 4), audio=SPEECH, **kwargs)
    with pytest.raises(BitstreamError, match=r"\(h, w\) or \(h, w, stages\), got shape \(4,\)"):
        encode_stream(_codes((4,), 4), image_shape=(8, 8, 1), **kwargs)
    with pytest.raises(BitstreamError, match=r"total_stages \(the map keeps 3\)"):
        encode_stream(_codes((2, 2, 3), 4), image_shape=(8, 8, 1), total_stages=2, **kwargs)


def test_every_truncation_and_bit_flip_of_an_audio_stream_raises():
    probabilities = _stage_probabilities(2, 64)
    data = encode_stream(
        _codes((6, 2), 64),
        num_codes=64,
        model_id=MODEL_ID,
        audio=SPEECH,
        total_stages=4,
        method="static",
        code_probabilities=probabilities,
    )
    for length in range(len(data)):
        assert "truncated" in _error(data[:length], code_probabilities=probabilities) or length < 4
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        _error(bytes(flipped), code_probabilities=probabilities)


@FUZZ
@given(
    method=st.integers(0, 2),
    kind=st.integers(0, 2),
    flags=st.integers(0, 2),
    stages=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    code=st.tuples(st.integers(0, 40), st.integers(0, 40)),
    signal=st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(0, 3), st.integers(0, 3)),
    num_codes=st.integers(0, 1 << 21),
    params=st.binary(max_size=10),
    payload=st.binary(max_size=64),
)
def test_forged_version_2_headers_never_crash(method, kind, flags, stages, code, signal, num_codes, params, payload):
    data = _forge(
        method=method,
        kind=kind,
        flags=flags,
        total=stages[0],
        kept=stages[1],
        code=code,
        signal=signal,
        num_codes=num_codes,
        params=params,
        payload=payload,
    )
    try:
        stream = decode_stream(data, code_probabilities=np.ones(max(num_codes, 2)), max_pixels=1 << 16)
    except BitstreamError as error:
        assert str(error) and "\n" not in str(error)
        return
    assert stream.codes.shape == stream.header.code_shape
    assert stream.header.kept_stages <= stream.header.total_stages
    assert stream.header.method == Method(method)

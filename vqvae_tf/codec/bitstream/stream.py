"""Encoding and decoding whole `.vqz` streams, in memory and as files.

`encode_stream` checks its arguments, codes the payload with the chosen
method (`packing`, `static`, or the prior coder of
`vqvae_tf.codec.prior_coding`) and frames it with the header and CRC;
`decode_stream` parses the header (`header.read_header`), applies the
caller's limits before allocating, and decodes the payload.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import numpy as np

from vqvae_tf.codec.bitstream import depth as depths
from vqvae_tf.codec.bitstream import packing, static
from vqvae_tf.codec.bitstream.header import (
    CRC,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SAMPLES,
    FIXED,
    FLAG_STAGE_AXIS,
    FLAG_VARIABLE_DEPTH,
    MAGIC,
    MAX_NUM_CODES,
    MODEL_ID_SIZE,
    UINT16_MAX,
    UINT32_MAX,
    VERSION,
    AudioFormat,
    BitstreamError,
    Header,
    Kind,
    Method,
    bits_per_code,
    read_header,
)
from vqvae_tf.codec.bitstream.prior_method import prior_decode, prior_encode
from vqvae_tf.utils import atomic
from vqvae_tf.utils.checks import check_int

__all__ = ["DecodedStream", "decode_stream", "encode_stream", "read_file", "write_file"]

# 1 << 62: any count of pixels a machine can hold; the real limit is the caller's.
_MAX_PIXELS_LIMIT = 1 << 62


@dataclasses.dataclass(frozen=True)
class DecodedStream:
    """A decoded `.vqz` stream.

    Attributes:
        codes: int32 code map of shape `header.code_shape`; with variable
            depth, `depth.ABSENT` (-1) at the stages a position does not keep.
        image_shape: `(height, width, channels)` of the original image, or
            None for audio.
        num_codes: codebook size K.
        model_id: fingerprint of the model that made the codes.
        method: payload coding method.
        header: the full parsed header (`kind`, `audio`, `total_stages`, ...).
        depth: int32 `(h, w)` stages kept per position of a variable-depth
            stream, else None.
    """

    codes: np.ndarray
    image_shape: tuple[int, int, int] | None
    num_codes: int
    model_id: bytes
    method: Method
    header: Header
    depth: np.ndarray | None = None


# --------------------------------------------------------------------------- encode


def encode_stream(
    codes: np.ndarray,
    *,
    num_codes: int,
    model_id: bytes,
    image_shape: tuple[int, int, int] | None = None,
    audio: AudioFormat | None = None,
    total_stages: int | None = None,
    method: str | Method = "packed",
    code_probabilities: np.ndarray | None = None,
    prior=None,
    label: int | None = None,
    tile: tuple[int, int] | None = None,
    depth: np.ndarray | None = None,
) -> bytes:
    """Encodes a code map into a `.vqz` stream (format version 2).

    Exactly one of `image_shape` (an image stream) and `audio` (an audio
    stream) is given.

    Args:
        codes: integer array, values in `[0, num_codes)`: for an image
            `(h, w)`, or `(h, w, n)` with a stage axis (the first `n` of the
            model's stages); for audio `(frames,)` or `(frames, n)`.
        num_codes: codebook size K, `2 <= K <= MAX_NUM_CODES`.
        model_id: 16-byte fingerprint of the model (see `make_model_id`).
        image_shape: `(height, width, channels)` of the original image.
        audio: the `AudioFormat` of the original audio.
        total_stages: the model's quantizer stages S for a map with a stage
            axis, `n <= S <= 65535`; defaults to `n` (all stages kept).
            Must be 1 (or None) for a map without a stage axis.
        method: `"packed"` (fixed width), `"static"` (entropy coded under a
            fixed distribution) or `"prior"` (entropy coded under an
            autoregressive prior; for an image map with a stage axis the
            prior codes stage 0 and the later stages are coded under their
            static tables, rows 1.. of `code_probabilities`; audio frames
            `(frames, S)` keep every stage and are all coded by a speech
            prior over S * K tokens). Defaults to `"packed"`.
        code_probabilities: strictly positive float array, the model's code
            distribution: `(K,)` for every code, or `(n, K)` (one row per
            stage kept) for a map with a stage axis; required by
            `"static"` and by `"prior"` with a stage axis, ignored
            otherwise. See `code_probabilities_from_counts`.
        prior: a prior over the codes (`GatedPixelCNN`, `TransformerPrior`,
            `UnigramPrior`) with `num_codes == K`; required by `"prior"`,
            ignored otherwise.
        label: class id for a class-conditional prior, else None.
        tile: `(tile_h, tile_w)` of the `"prior"` method; defaults to the
            prior's `map_shape` (see `prior_coding.encode_prior_payload`).
        depth: for an image map `(h, w, n)`: int `(h, w)` in `1..n`, the
            stages each position keeps (a variable-depth stream; the codes
            past a position's depth are not stored). Defaults to None
            (every position keeps all `n`). See `bitstream.depth`.

    Returns:
        The stream as `bytes`.

    Raises:
        BitstreamError: for any invalid argument.

    Example:

    >>> codes = np.array([[0, 1], [2, 3]], dtype=np.int32)
    >>> data = encode_stream(codes, num_codes=4, model_id=bytes(16),
    ...                      image_shape=(8, 8, 3))
    >>> decode_stream(data).codes.tolist()
    [[0, 1], [2, 3]]
    >>> speech = encode_stream(np.zeros((50, 2), np.int32), num_codes=4, model_id=bytes(16),
    ...                        audio=AudioFormat(sample_rate=16000, num_samples=16000), total_stages=4)
    >>> header = read_header(speech)
    >>> header.kind.label, header.audio.sample_rate, header.kept_stages, header.total_stages
    ('audio', 16000, 2, 4)
    """
    method = _parse_method(method)
    num_codes = check_int("num_codes", num_codes, 2, MAX_NUM_CODES, error=BitstreamError)
    model_id = _check_model_id(model_id, "model_id")
    kind, signal = _check_signal(image_shape, audio)
    spatial = 2 if kind == Kind.IMAGE else 1
    flat, code_shape = _check_codes(codes, num_codes, spatial)
    stage_axis = len(code_shape) > spatial
    kept = code_shape[-1] if stage_axis else 1
    total_stages = _check_total_stages(total_stages, kept, stage_axis)
    if depth is not None:
        if kind != Kind.IMAGE:
            raise BitstreamError("depth is for image code maps (h, w, n); audio streams keep whole frames")
        depth = depths.check_depth(depth, code_shape)
        params, payload = _encode_variable(
            flat.reshape(code_shape), depth, num_codes, method, code_probabilities, prior, label, tile
        )
    elif method == Method.PACKED:
        params, payload = b"", packing.pack(flat, bits_per_code(num_codes))
    elif method == Method.STATIC:
        if code_probabilities is None:
            raise BitstreamError("method 'static' needs code_probabilities, got None")
        probabilities = static.check_probabilities(code_probabilities, num_codes, kept if stage_axis else None)
        params = static.distribution_fingerprint(probabilities)
        payload = static.encode(flat, probabilities, kept)
    else:
        if kind == Kind.AUDIO and (not stage_axis or kept != total_stages):
            raise BitstreamError(
                "method 'prior' codes audio frames of all their stages (frames, S) under a speech prior; got codes "
                f"of shape {code_shape} of total_stages={total_stages}: use 'static' for fewer stages"
            )
        probabilities = code_probabilities if stage_axis else None
        params, payload = prior_encode(flat.reshape(code_shape), num_codes, prior, label, tile, probabilities, kind)

    if len(payload) > UINT32_MAX:
        raise BitstreamError(f"payload of {len(payload)} bytes exceeds the 4 GiB format limit")
    head = FIXED.pack(
        MAGIC,
        VERSION,
        int(method),
        int(kind),
        (FLAG_STAGE_AXIS if stage_axis else 0) | (FLAG_VARIABLE_DEPTH if depth is not None else 0),
        model_id,
        num_codes,
        total_stages,
        kept,
        code_shape[0],
        code_shape[1] if kind == Kind.IMAGE else 0,
        *signal,
        len(params),
        len(payload),
    )
    body = b"".join((head, params, payload))
    return body + CRC.pack(zlib.crc32(body))


def _encode_variable(codes, depth, num_codes, method, code_probabilities, prior, label, tile) -> tuple[bytes, bytes]:
    """`(params, payload)` of a variable-depth map: the depth section, then the codes kept, stage by stage."""
    kept = codes.shape[-1]
    section, per_stage = depths.encode_section(depth, kept), depths.split_stages(codes, depth)
    if method == Method.PACKED:
        return b"", section + packing.pack(np.concatenate(per_stage), bits_per_code(num_codes))
    if method == Method.STATIC:
        if code_probabilities is None:
            raise BitstreamError("method 'static' needs code_probabilities, got None")
        probabilities = static.check_probabilities(code_probabilities, num_codes, kept)
        return static.distribution_fingerprint(probabilities), section + static.encode_stages(per_stage, probabilities)
    params, payload = prior_encode(codes, num_codes, prior, label, tile, code_probabilities, per_stage=per_stage)
    return params, section + payload


def _decode_variable(header: Header, payload, code_probabilities, prior) -> tuple[np.ndarray, np.ndarray]:
    """`(codes with ABSENT, depth)` of a variable-depth payload."""
    height, width, kept = header.code_shape
    depth, start = depths.decode_section(payload, (height, width), kept)
    counts, rest = depths.stage_counts(depth, kept), payload[start:]
    if header.method == Method.PACKED:
        flat = packing.unpack(rest, sum(counts), header.num_codes)
        per_stage = np.split(flat, np.cumsum(counts)[:-1])
    elif header.method == Method.STATIC:
        if code_probabilities is None:
            raise BitstreamError("stream uses method 'static': pass the model's code_probabilities, got None")
        probabilities = static.check_probabilities(code_probabilities, header.num_codes, kept)
        per_stage = static.decode_stages(rest, counts, probabilities, header.distribution_fingerprint)
    else:
        per_stage = prior_decode(header, rest, prior, code_probabilities, counts=counts)
    return depths.merge_stages(per_stage, depth), depth


def _check_signal(image_shape, audio) -> tuple[Kind, tuple[int, int, int, int]]:
    """The kind and the four signal fields (a, b, c, d) of the header."""
    if (image_shape is None) == (audio is None):
        raise BitstreamError("pass exactly one of image_shape (an image stream) and audio (an audio stream)")
    if audio is None:
        return Kind.IMAGE, _check_image_shape(image_shape) + (0,)
    if not isinstance(audio, AudioFormat):
        raise BitstreamError(f"audio must be an AudioFormat, got {type(audio).__name__}")
    return Kind.AUDIO, (
        check_int("audio sample_rate", audio.sample_rate, 1, UINT32_MAX, error=BitstreamError),
        check_int("audio num_samples", audio.num_samples, 1, UINT32_MAX, error=BitstreamError),
        check_int("audio channels", audio.channels, 1, UINT16_MAX, error=BitstreamError),
        check_int("audio source_channels", audio.source_channels, 1, UINT16_MAX, error=BitstreamError),
    )


def _check_total_stages(total_stages, kept: int, stage_axis: bool) -> int:
    if total_stages is None:
        return kept
    if not stage_axis:
        return check_int("total_stages of a map without a stage axis", total_stages, 1, 1, error=BitstreamError)
    return check_int(f"total_stages (the map keeps {kept})", total_stages, kept, UINT16_MAX, error=BitstreamError)


def _parse_method(method) -> Method:
    if isinstance(method, Method):
        return method
    if isinstance(method, str):
        try:
            return Method[method.upper()]
        except KeyError:
            pass
    names = ", ".join(repr(m.name.lower()) for m in Method)
    raise BitstreamError(f"method must be one of {names}, got {method!r}")


def _check_model_id(model_id, name: str) -> bytes:
    if not isinstance(model_id, (bytes, bytearray)) or len(model_id) != MODEL_ID_SIZE:
        got = f"{len(model_id)} bytes" if isinstance(model_id, (bytes, bytearray)) else type(model_id).__name__
        raise BitstreamError(f"{name} must be {MODEL_ID_SIZE} bytes (see make_model_id), got {got}")
    return bytes(model_id)


def _check_image_shape(image_shape) -> tuple[int, int, int]:
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3:
        raise BitstreamError(f"image_shape must be (height, width, channels), got {image_shape!r}")
    height, width, channels = image_shape
    return (
        check_int("image height", height, 1, UINT32_MAX, error=BitstreamError),
        check_int("image width", width, 1, UINT32_MAX, error=BitstreamError),
        check_int("image channels", channels, 1, UINT16_MAX, error=BitstreamError),
    )


def _check_codes(codes, num_codes: int, spatial: int = 2) -> tuple[np.ndarray, tuple[int, ...]]:
    if not isinstance(codes, np.ndarray):
        raise BitstreamError(f"codes must be a numpy array, got {type(codes).__name__}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise BitstreamError(f"codes must have an integer dtype, got {codes.dtype}")
    if codes.ndim not in (spatial, spatial + 1):
        layout = "(h, w) or (h, w, stages)" if spatial == 2 else "(frames,) or (frames, stages) for audio"
        raise BitstreamError(f"codes must have shape {layout}, got shape {codes.shape}")
    if codes.size == 0:
        raise BitstreamError(f"codes must not be empty, got shape {codes.shape}")
    limits = (UINT32_MAX,) * spatial + (UINT16_MAX,)
    for axis, (size, limit) in enumerate(zip(codes.shape, limits)):
        if size > limit:
            raise BitstreamError(f"codes axis {axis} has size {size}, the format allows at most {limit}")
    low, high = codes.min(), codes.max()
    if low < 0 or high >= num_codes:
        raise BitstreamError(f"codes must be in [0, {num_codes}), got values in [{low}, {high}]")
    return codes.reshape(-1).astype(np.int32), tuple(int(s) for s in codes.shape)


# --------------------------------------------------------------------------- decode


def decode_stream(
    data: bytes,
    *,
    expected_model_id: bytes | None = None,
    code_probabilities: np.ndarray | None = None,
    prior=None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> DecodedStream:
    """Decodes a `.vqz` stream (version 1 or 2) back into its code map, exactly.

    Args:
        data: the whole stream.
        expected_model_id: if given, the 16-byte id of the model the caller
            will decode with; a stream made by another model is refused.
            Defaults to `None` (no check).
        code_probabilities: the model's code distribution, `(K,)` or, for a
            version-2 map with a stage axis of `n` stages, `(n, K)`: the
            same array the stream was encoded with; required for streams
            coded with the `"static"` method and by `"prior"` streams with a
            stage axis (their stages after the first), ignored otherwise. Defaults
            to `None`.
        prior: the prior the codes were coded with; required for streams
            coded with the `"prior"` method (its fingerprint must match the
            stream's), ignored otherwise. Defaults to `None`.
        max_pixels: refuse streams whose image (`height * width`) or code map
            (`h * w * stages`) has more elements than this, before allocating.
            Defaults to `DEFAULT_MAX_PIXELS` (2**26).
        max_samples: refuse audio streams of more samples than this.
            Defaults to `DEFAULT_MAX_SAMPLES` (2**29).

    Returns:
        A `DecodedStream`; `codes` is int32 of shape `header.code_shape`.

    Raises:
        BitstreamError: if the stream is invalid, corrupted, too large, made
            by another model, or coded with another distribution or prior.
    """
    max_pixels = check_int("max_pixels", max_pixels, 1, _MAX_PIXELS_LIMIT, error=BitstreamError)
    max_samples = check_int("max_samples", max_samples, 1, _MAX_PIXELS_LIMIT, error=BitstreamError)
    if expected_model_id is not None:
        expected_model_id = _check_model_id(expected_model_id, "expected_model_id")
    header = read_header(data)
    _check_limits(header, max_pixels, max_samples, expected_model_id)
    payload = memoryview(data).cast("B")[header.payload_start : header.payload_start + header.payload_length]

    depth = None
    if header.variable_depth:
        flat, depth = _decode_variable(header, payload, code_probabilities, prior)
    elif header.method == Method.PACKED:
        flat = packing.unpack(payload, header.num_symbols, header.num_codes)
    elif header.method == Method.STATIC:
        if code_probabilities is None:
            raise BitstreamError("stream uses method 'static': pass the model's code_probabilities, got None")
        # Version 1 coded every map in C order under one distribution.
        per_stage = header.version >= 2 and header.has_stage_axis
        stages = header.kept_stages if per_stage else 1
        probabilities = static.check_probabilities(code_probabilities, header.num_codes, stages if per_stage else None)
        flat = static.decode(payload, header.num_symbols, probabilities, header.distribution_fingerprint, stages)
    else:
        flat = prior_decode(header, payload, prior, code_probabilities)
    return DecodedStream(
        codes=flat.reshape(header.code_shape),
        image_shape=header.image_shape,
        num_codes=header.num_codes,
        model_id=header.model_id,
        method=header.method,
        header=header,
        depth=depth,
    )


def _check_limits(header: Header, max_pixels: int, max_samples: int, expected_model_id: bytes | None) -> None:
    if header.kind == Kind.IMAGE:
        height, width, _ = header.image_shape
        if height * width > max_pixels:
            raise BitstreamError(f"image of {height}x{width} = {height * width} pixels exceeds max_pixels={max_pixels}")
    elif header.audio.num_samples > max_samples:
        raise BitstreamError(f"audio of {header.audio.num_samples} samples exceeds max_samples={max_samples}")
    if header.num_symbols > max_pixels:
        raise BitstreamError(
            f"code map of shape {header.code_shape} = {header.num_symbols} codes exceeds max_pixels={max_pixels}"
        )
    if expected_model_id is not None and header.model_id != expected_model_id:
        raise BitstreamError(
            f"stream was made by model {header.model_id.hex()}, expected model {expected_model_id.hex()}"
        )


# --------------------------------------------------------------------------- files


def write_file(path, codes: np.ndarray, **encode_kwargs) -> int:
    """Encodes `codes` (see `encode_stream`) and writes the stream atomically.

    The stream goes to a temporary file in the destination directory that
    replaces `path` only once complete: a failure leaves `path` untouched
    and no temporary file behind.

    Returns:
        The number of bytes written.
    """
    data = encode_stream(codes, **encode_kwargs)
    atomic.write_bytes(Path(path), data)
    return len(data)


def read_file(path, **decode_kwargs) -> DecodedStream:
    """Reads and decodes a `.vqz` file (see `decode_stream` for the arguments).

    Reads no more than a stream within `max_pixels` can need, so a huge file
    is refused without being loaded.
    """
    max_pixels = decode_kwargs.get("max_pixels", DEFAULT_MAX_PIXELS)
    max_pixels = check_int("max_pixels", max_pixels, 1, _MAX_PIXELS_LIMIT, error=BitstreamError)
    # 4 bytes per code bounds every method (packed uses <= 20 bits, the ANS
    # coders <= 24 bits per code plus a word of state), plus the largest header.
    limit = max_pixels * 4 + FIXED.size + UINT16_MAX + 4 + CRC.size
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise BitstreamError(
            f"{path} is larger than {limit} bytes, the most a stream within max_pixels={max_pixels} needs"
        )
    return decode_stream(data, **decode_kwargs)

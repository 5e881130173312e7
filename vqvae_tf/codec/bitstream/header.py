"""The `.vqz` header: format constants, the methods and kinds, and the parsing of the fixed header.

The byte layouts (version 2, written; version 1, read only) are specified in
`vqvae_tf.codec.bitstream`. `read_header` distrusts every field: it checks
the framing (magic, version, declared length, CRC) first, then each field,
then the method's parameters, and allocates nothing proportional to the
declared sizes.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
import struct
import zlib

from vqvae_tf.codec.bitstream.audio_format import AudioFormat
from vqvae_tf.codec.prior_coding.tiled import NO_LABEL
from vqvae_tf.codec.prior_coding.tiled import PARAMS as PRIOR_PARAMS

__all__ = [
    "AudioFormat",
    "BitstreamError",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SAMPLES",
    "Header",
    "Kind",
    "MAGIC",
    "MAX_NUM_CODES",
    "MODEL_ID_SIZE",
    "Method",
    "READ_VERSIONS",
    "VERSION",
    "bits_per_code",
    "make_model_id",
    "params_length",
    "read_header",
]

MAGIC = b"VQZ1"
#: The version `encode_stream` writes.
VERSION = 2
#: The versions `read_header` reads (1 is legacy, images only).
READ_VERSIONS = (1, 2)
MODEL_ID_SIZE = 16
# Well above real codebooks (FSQ/LFQ reach 2**18) and inside what
# constriction's 24-bit categorical model can represent.
MAX_NUM_CODES = 1 << 20
# 8192 x 8192: refuses decompression bombs while allowing large photos.
DEFAULT_MAX_PIXELS = 1 << 26
# About 3 hours at 48 kHz (2 GiB of float32): refuses audio bombs.
DEFAULT_MAX_SAMPLES = 1 << 29

#: Version 1: magic, version, method, flags, model id, image height, width,
#: channels, stages, code height, width, num_codes, params length, payload length.
FIXED_V1 = struct.Struct("<4sBBH16sIIHHIIIHI")
#: Version 2: magic, version, method, kind, flags, model id, num_codes, total
#: stages, kept stages, code height, code width, signal fields a, b (uint32),
#: c, d (uint16), params length, payload length.
FIXED_V2 = struct.Struct("<4sBBBB16sIHHIIIIHHHI")
#: The fixed header of the version written.
FIXED = FIXED_V2
FIXED_SIZE = {1: FIXED_V1.size, 2: FIXED_V2.size}
CRC = struct.Struct("<I")
FLAG_STAGE_AXIS = 1
#: Version 2, images with a stage axis: positions keep different numbers of
#: stages, a depth section opens the payload (`vqvae_tf.codec.bitstream.depth`).
FLAG_VARIABLE_DEPTH = 2
KNOWN_FLAGS = FLAG_STAGE_AXIS | FLAG_VARIABLE_DEPTH
#: Method parameters of the static method: the distribution's fingerprint.
DISTRIBUTION_FINGERPRINT_SIZE = 8
UINT16_MAX = 0xFFFF
UINT32_MAX = 0xFFFFFFFF


class BitstreamError(ValueError):
    """A `.vqz` stream or the arguments to encode one are invalid."""


class Method(enum.IntEnum):
    """Payload coding methods; the value is the id stored in the header."""

    PACKED = 0
    STATIC = 1
    PRIOR = 2


class Kind(enum.IntEnum):
    """The kind of signal a stream holds; the value is the id stored in a version-2 header."""

    IMAGE = 0
    AUDIO = 1

    @property
    def label(self) -> str:
        """`"image"` or `"audio"`."""
        return self.name.lower()


PARAMS_LENGTH = {Method.PACKED: 0, Method.STATIC: DISTRIBUTION_FINGERPRINT_SIZE, Method.PRIOR: PRIOR_PARAMS.size}
#: What follows the prior's parameters in an image `prior` stream with a stage
#: axis (`(h, w, n)`): the prior codes stage 0, static per-stage tables the
#: rest, so the payload is the prior's payload, then the static one. Fields:
#: the prior payload's length in bytes (uint32) and the fingerprint of the
#: finer stages' tables. Audio `prior` streams (every stage under the prior,
#: `vqvae_tf.codec.prior_coding.sequences`) have no tail.
STAGED_PRIOR_TAIL = struct.Struct(f"<I{DISTRIBUTION_FINGERPRINT_SIZE}s")


def params_length(method: Method, has_stage_axis: bool, kind: Kind = None) -> int:
    """Bytes of method parameters a stream of `method` carries (an image staged prior's tail included)."""
    staged = method == Method.PRIOR and has_stage_axis and kind != Kind.AUDIO
    return PARAMS_LENGTH[method] + (STAGED_PRIOR_TAIL.size if staged else 0)


def bits_per_code(num_codes: int) -> int:
    """`ceil(log2 K)`: the width of one code in the packed method."""
    return (num_codes - 1).bit_length()


def make_model_id(*parts: bytes) -> bytes:
    """Returns a 16-byte model id: BLAKE2b of `parts` (e.g. serialised weights).

    Example:

    >>> len(make_model_id(b"encoder.tflite bytes"))
    16
    """
    digest = hashlib.blake2b(digest_size=MODEL_ID_SIZE)
    for part in parts:
        digest.update(part)
    return digest.digest()


@dataclasses.dataclass(frozen=True)
class Header:
    """The parsed, validated header of a `.vqz` stream.

    Attributes:
        version: format version (1 or 2).
        method: payload coding method.
        flags: raw flag bits.
        model_id: the 16-byte fingerprint of the model that made the codes.
        kind: `Kind.IMAGE` or `Kind.AUDIO` (version 1: always image).
        image_shape: `(height, width, channels)` of the original image, or
            None for audio.
        audio: the `AudioFormat` of an audio stream, or None for images.
        code_shape: the stored code map: images `(h, w)`, or `(h, w, n)`
            with a stage axis; audio `(frames,)` or `(frames, n)`.
        num_codes: codebook size K.
        total_stages: the model's quantizer stages S (1 without a stage
            axis); the map keeps the first `kept_stages` of them.
        method_params: the method-specific parameter bytes.
        payload_length: payload size in bytes.
        total_length: size of the whole stream in bytes.
    """

    version: int
    method: Method
    flags: int
    model_id: bytes
    kind: Kind
    image_shape: tuple[int, int, int] | None
    audio: AudioFormat | None
    code_shape: tuple[int, ...]
    num_codes: int
    total_stages: int
    method_params: bytes
    payload_length: int
    total_length: int

    @property
    def has_stage_axis(self) -> bool:
        """Whether the code map ends with a stage axis."""
        return bool(self.flags & FLAG_STAGE_AXIS)

    @property
    def variable_depth(self) -> bool:
        """Whether positions keep different numbers of stages (a depth section opens the payload)."""
        return bool(self.flags & FLAG_VARIABLE_DEPTH)

    @property
    def kept_stages(self) -> int:
        """Stages stored, n <= `total_stages`: the stream's quality."""
        return self.code_shape[-1] if self.has_stage_axis else 1

    @property
    def num_symbols(self) -> int:
        """Number of entries of the map (`h * w * n`; with variable depth, codes kept are fewer)."""
        return math.prod(self.code_shape)

    @property
    def bits_per_code(self) -> int:
        """`ceil(log2 K)`: the width of one code in the packed method."""
        return bits_per_code(self.num_codes)

    @property
    def payload_start(self) -> int:
        """Offset of the payload in the stream."""
        return FIXED_SIZE[self.version] + len(self.method_params)

    @property
    def distribution_fingerprint(self) -> bytes | None:
        """Fingerprint of the static method's distribution, else `None`."""
        return self.method_params if self.method == Method.STATIC else None

    @property
    def prior_params(self) -> dict | None:
        """The prior method's parameters as a dict, else `None`.

        Keys: `fingerprint` (hex), `label` (None if unconditional), `tile`
        `(height, width)`, `tiles_per_batch`, `codes_crc32`.
        """
        if self.method != Method.PRIOR:
            return None
        fingerprint, label, tile_h, tile_w, per_batch, crc = PRIOR_PARAMS.unpack_from(self.method_params)
        params = dict(
            fingerprint=fingerprint.hex(),
            label=None if label == NO_LABEL else label,
            tile=(tile_h, tile_w),
            tiles_per_batch=per_batch,
            codes_crc32=crc,
        )
        if self.has_stage_axis and self.kind == Kind.IMAGE:
            prior_bytes, finer = STAGED_PRIOR_TAIL.unpack_from(self.method_params, PRIOR_PARAMS.size)
            params.update(prior_payload_bytes=prior_bytes, finer_stages_fingerprint=finer.hex())
        return params


# --------------------------------------------------------------------------- parsing


def read_header(data: bytes) -> Header:
    """Parses and validates the header of a `.vqz` stream (version 1 or 2), checking its CRC.

    Decodes no payload and allocates nothing proportional to the declared
    sizes, so it is safe on untrusted data (e.g. for an `info` command).

    Args:
        data: the whole stream.

    Returns:
        The `Header`.

    Raises:
        BitstreamError: if the stream is truncated, corrupted, not a `.vqz`
            stream, or of an unsupported version, kind, method or flag.
    """
    data = _as_bytes(data)
    version, fields, params = _check_framing(data)
    parse = _parse_v1 if version == 1 else _parse_v2
    values = parse(fields)
    method = _check_method(values["method_id"])
    has_stage_axis = bool(values["flags"] & FLAG_STAGE_AXIS)
    _check_method_params(method, params, values, has_stage_axis)
    payload_length = len(data) - FIXED_SIZE[version] - len(params) - CRC.size
    if method == Method.PRIOR and has_stage_axis and values["kind"] == Kind.IMAGE:
        prior_bytes, _ = STAGED_PRIOR_TAIL.unpack_from(params, PRIOR_PARAMS.size)
        if prior_bytes > payload_length:
            raise BitstreamError(
                f"invalid header: the prior part of the payload is {prior_bytes} bytes, "
                f"longer than the whole payload ({payload_length} bytes)"
            )
    return Header(
        version=version,
        method=method,
        flags=values["flags"],
        model_id=bytes(values["model_id"]),
        kind=values["kind"],
        image_shape=values["image_shape"],
        audio=values["audio"],
        code_shape=values["code_shape"],
        num_codes=values["num_codes"],
        total_stages=values["total_stages"],
        method_params=params,
        payload_length=payload_length,
        total_length=len(data),
    )


def _as_bytes(data) -> memoryview:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"data must be bytes, got {type(data).__name__}")
    try:
        return memoryview(data).cast("B")
    except TypeError as error:
        raise BitstreamError(f"data must be contiguous bytes: {error}") from None


def _check_framing(data: memoryview) -> tuple[int, tuple, bytes]:
    """`(version, fixed fields, method params)`, once magic, version, declared length and CRC are right."""
    if len(data) >= len(MAGIC) and bytes(data[: len(MAGIC)]) != MAGIC:
        raise BitstreamError(f"not a .vqz stream: magic is {bytes(data[: len(MAGIC)])!r}, expected {MAGIC!r}")
    if len(data) <= len(MAGIC):
        minimum = FIXED_V1.size + CRC.size
        raise BitstreamError(f"truncated stream: got {len(data)} bytes, a .vqz stream has at least {minimum}")
    version = data[len(MAGIC)]
    if version not in READ_VERSIONS:
        raise BitstreamError(
            f"unsupported .vqz version {version}, this reader supports versions {', '.join(map(str, READ_VERSIONS))}"
        )
    layout = FIXED_V1 if version == 1 else FIXED_V2
    minimum = layout.size + CRC.size
    if len(data) < minimum:
        raise BitstreamError(
            f"truncated stream: got {len(data)} bytes, a version-{version} .vqz stream has at least {minimum}"
        )
    fields = layout.unpack_from(data)
    params_length, payload_length = fields[-2], fields[-1]
    total = layout.size + params_length + payload_length + CRC.size
    if len(data) < total:
        raise BitstreamError(f"truncated stream: header declares {total} bytes, got {len(data)}")
    if len(data) > total:
        raise BitstreamError(f"{len(data) - total} unexpected trailing bytes after a {total}-byte stream")
    (stored_crc,) = CRC.unpack_from(data, total - CRC.size)
    actual_crc = zlib.crc32(data[: total - CRC.size])
    if stored_crc != actual_crc:
        raise BitstreamError(f"corrupted stream: CRC32 is {actual_crc:#010x}, header stores {stored_crc:#010x}")
    return version, fields, bytes(data[layout.size : layout.size + params_length])


def _check_positive(*named) -> None:
    for name, value in named:
        if value < 1:
            raise BitstreamError(f"invalid header: {name} is {value}, expected >= 1")


def _check_flags_and_codes(flags: int, num_codes: int, known: int = KNOWN_FLAGS) -> None:
    if flags & ~known:
        raise BitstreamError(f"unsupported flags {flags:#06x}, this reader knows {known:#06x}")
    if not 2 <= num_codes <= MAX_NUM_CODES:
        raise BitstreamError(f"invalid header: num_codes is {num_codes}, expected 2 <= K <= {MAX_NUM_CODES}")


def _parse_v1(fields) -> dict:
    (_, _, method_id, flags, model_id, height, width, channels, stages, code_h, code_w, num_codes, _, _) = fields
    _check_flags_and_codes(flags, num_codes, known=FLAG_STAGE_AXIS)
    _check_positive(
        ("image height", height),
        ("image width", width),
        ("image channels", channels),
        ("stages", stages),
        ("code height", code_h),
        ("code width", code_w),
    )
    stage_axis = bool(flags & FLAG_STAGE_AXIS)
    if not stage_axis and stages != 1:
        raise BitstreamError(f"invalid header: {stages} stages declared without the stage-axis flag")
    return dict(
        method_id=method_id,
        flags=flags,
        model_id=model_id,
        kind=Kind.IMAGE,
        image_shape=(height, width, channels),
        audio=None,
        code_shape=(code_h, code_w, stages) if stage_axis else (code_h, code_w),
        num_codes=num_codes,
        total_stages=stages,
    )


def _parse_v2(fields) -> dict:
    (_, _, method_id, kind_id, flags, model_id, num_codes, total, kept, code_h, code_w, a, b, c, d, _, _) = fields
    try:
        kind = Kind(kind_id)
    except ValueError:
        raise BitstreamError(f"unknown signal kind id {kind_id}, known ids are {[int(k) for k in Kind]}") from None
    _check_flags_and_codes(flags, num_codes)
    _check_positive(("total stages", total), ("kept stages", kept), ("code height", code_h))
    stage_axis = bool(flags & FLAG_STAGE_AXIS)
    if not stage_axis and (total, kept) != (1, 1):
        raise BitstreamError(f"invalid header: {kept} of {total} stages declared without the stage-axis flag")
    if kept > total:
        raise BitstreamError(f"invalid header: {kept} stages kept of the model's {total}")
    if flags & FLAG_VARIABLE_DEPTH and (kind != Kind.IMAGE or not stage_axis):
        raise BitstreamError("invalid header: the variable-depth flag needs an image map with a stage axis")
    stages = (kept,) if stage_axis else ()
    if kind == Kind.IMAGE:
        _check_positive(("image height", a), ("image width", b), ("image channels", c), ("code width", code_w))
        if d:
            raise BitstreamError(f"invalid header: reserved field of an image stream is {d}, expected 0")
        image_shape, audio, code_shape = (a, b, c), None, (code_h, code_w) + stages
    else:
        _check_positive(("sample rate", a), ("number of samples", b), ("channels", c), ("source channels", d))
        if code_w:
            raise BitstreamError(f"invalid header: code width of an audio stream is {code_w}, expected 0")
        image_shape, audio, code_shape = None, AudioFormat(a, b, c, d), (code_h,) + stages
    return dict(
        method_id=method_id,
        flags=flags,
        model_id=model_id,
        kind=kind,
        image_shape=image_shape,
        audio=audio,
        code_shape=code_shape,
        num_codes=num_codes,
        total_stages=total,
    )


def _check_method(method_id: int) -> Method:
    try:
        return Method(method_id)
    except ValueError:
        raise BitstreamError(
            f"unknown coding method id {method_id}, known ids are {[int(m) for m in Method]}"
        ) from None


def _check_method_params(method: Method, params: bytes, values: dict, has_stage_axis: bool) -> None:
    kind = values["kind"]
    expected = params_length(method, has_stage_axis, kind)
    if len(params) != expected:
        raise BitstreamError(
            f"invalid header: method {method.name.lower()!r} takes {expected} parameter bytes, got {len(params)}"
        )
    if method == Method.PRIOR:
        _, _, tile_h, tile_w, per_batch, _ = PRIOR_PARAMS.unpack_from(params)
        if not (tile_h and tile_w and per_batch):
            raise BitstreamError(
                f"invalid header: method 'prior' with tile {tile_h}x{tile_w} and "
                f"{per_batch} tiles per batch, expected all >= 1"
            )
        # Audio: every stage under the speech prior, in segments of whole frames.
        code_shape, total = values["code_shape"], values["total_stages"]
        if kind == Kind.AUDIO and (not has_stage_axis or code_shape[-1] != total or tile_h != 1 or tile_w % total):
            raise BitstreamError(
                f"invalid header: an audio 'prior' stream codes all {total} stages in segments (1, T * {total}); "
                f"got code shape {code_shape} and segments {tile_h}x{tile_w}"
            )

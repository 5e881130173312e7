"""The `.vqz` header: format constants, the methods, and the parsing of the fixed header.

The byte layout is specified in `vqvae_tf.codec.bitstream`. `read_header`
distrusts every field: it checks the framing (magic, version, declared
length, CRC) first, then each field, then the method's parameters, and
allocates nothing proportional to the declared sizes.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
import struct
import zlib

from vqvae_tf.codec.prior_coding.tiled import NO_LABEL
from vqvae_tf.codec.prior_coding.tiled import PARAMS as PRIOR_PARAMS

__all__ = [
    "BitstreamError",
    "DEFAULT_MAX_PIXELS",
    "Header",
    "MAGIC",
    "MAX_NUM_CODES",
    "MODEL_ID_SIZE",
    "Method",
    "VERSION",
    "bits_per_code",
    "make_model_id",
    "read_header",
]

MAGIC = b"VQZ1"
VERSION = 1
MODEL_ID_SIZE = 16
# Well above real codebooks (FSQ/LFQ reach 2**18) and inside what
# constriction's 24-bit categorical model can represent.
MAX_NUM_CODES = 1 << 20
# 8192 x 8192: refuses decompression bombs while allowing large photos.
DEFAULT_MAX_PIXELS = 1 << 26

#: magic, version, method, flags, model id, image height, width, channels,
#: stages, code height, width, num_codes, params length, payload length.
FIXED = struct.Struct("<4sBBH16sIIHHIIIHI")
CRC = struct.Struct("<I")
FLAG_STAGE_AXIS = 1
KNOWN_FLAGS = FLAG_STAGE_AXIS
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


PARAMS_LENGTH = {Method.PACKED: 0, Method.STATIC: DISTRIBUTION_FINGERPRINT_SIZE, Method.PRIOR: PRIOR_PARAMS.size}


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
        version: format version.
        method: payload coding method.
        flags: raw flag bits.
        model_id: the 16-byte fingerprint of the model that made the codes.
        image_shape: `(height, width, channels)` of the original image.
        code_shape: `(h, w)`, or `(h, w, stages)` when the map has a stage axis.
        num_codes: codebook size K.
        method_params: the method-specific parameter bytes.
        payload_length: payload size in bytes.
        total_length: size of the whole stream in bytes.
    """

    version: int
    method: Method
    flags: int
    model_id: bytes
    image_shape: tuple[int, int, int]
    code_shape: tuple[int, ...]
    num_codes: int
    method_params: bytes
    payload_length: int
    total_length: int

    @property
    def num_symbols(self) -> int:
        """Number of codes in the map (`h * w * stages`)."""
        return math.prod(self.code_shape)

    @property
    def bits_per_code(self) -> int:
        """`ceil(log2 K)`: the width of one code in the packed method."""
        return bits_per_code(self.num_codes)

    @property
    def payload_start(self) -> int:
        """Offset of the payload in the stream."""
        return FIXED.size + len(self.method_params)

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
        fingerprint, label, tile_h, tile_w, per_batch, crc = PRIOR_PARAMS.unpack(self.method_params)
        return dict(
            fingerprint=fingerprint.hex(),
            label=None if label == NO_LABEL else label,
            tile=(tile_h, tile_w),
            tiles_per_batch=per_batch,
            codes_crc32=crc,
        )


# --------------------------------------------------------------------------- parsing


def read_header(data: bytes) -> Header:
    """Parses and validates the header of a `.vqz` stream, checking its CRC.

    Decodes no payload and allocates nothing proportional to the declared
    sizes, so it is safe on untrusted data (e.g. for an `info` command).

    Args:
        data: the whole stream.

    Returns:
        The `Header`.

    Raises:
        BitstreamError: if the stream is truncated, corrupted, not a `.vqz`
            stream, or of an unsupported version, method or flag.
    """
    data = _as_bytes(data)
    fields = _check_framing(data)
    (
        _,
        version,
        method_id,
        flags,
        model_id,
        image_height,
        image_width,
        channels,
        stages,
        code_height,
        code_width,
        num_codes,
        params_length,
        payload_length,
    ) = fields
    method = _check_method(method_id)
    _check_sizes(flags, image_height, image_width, channels, stages, code_height, code_width, num_codes)
    has_stage_axis = bool(flags & FLAG_STAGE_AXIS)
    params = bytes(data[FIXED.size : FIXED.size + params_length])
    _check_method_params(method, params, has_stage_axis)
    return Header(
        version=version,
        method=method,
        flags=flags,
        model_id=bytes(model_id),
        image_shape=(image_height, image_width, channels),
        code_shape=(code_height, code_width, stages) if has_stage_axis else (code_height, code_width),
        num_codes=num_codes,
        method_params=params,
        payload_length=payload_length,
        total_length=FIXED.size + params_length + payload_length + CRC.size,
    )


def _as_bytes(data) -> memoryview:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"data must be bytes, got {type(data).__name__}")
    try:
        return memoryview(data).cast("B")
    except TypeError as error:
        raise BitstreamError(f"data must be contiguous bytes: {error}") from None


def _check_framing(data: memoryview) -> tuple:
    """The fixed header's fields, once magic, version, declared length and CRC are right."""
    minimum = FIXED.size + CRC.size
    if len(data) >= len(MAGIC) and bytes(data[: len(MAGIC)]) != MAGIC:
        raise BitstreamError(f"not a .vqz stream: magic is {bytes(data[: len(MAGIC)])!r}, expected {MAGIC!r}")
    if len(data) < minimum:
        raise BitstreamError(f"truncated stream: got {len(data)} bytes, a .vqz stream has at least {minimum}")
    fields = FIXED.unpack_from(data)
    version, params_length, payload_length = fields[1], fields[12], fields[13]
    if version != VERSION:
        raise BitstreamError(f"unsupported .vqz version {version}, this reader supports version {VERSION}")
    total = FIXED.size + params_length + payload_length + CRC.size
    if len(data) < total:
        raise BitstreamError(f"truncated stream: header declares {total} bytes, got {len(data)}")
    if len(data) > total:
        raise BitstreamError(f"{len(data) - total} unexpected trailing bytes after a {total}-byte stream")
    (stored_crc,) = CRC.unpack_from(data, total - CRC.size)
    actual_crc = zlib.crc32(data[: total - CRC.size])
    if stored_crc != actual_crc:
        raise BitstreamError(f"corrupted stream: CRC32 is {actual_crc:#010x}, header stores {stored_crc:#010x}")
    return fields


def _check_method(method_id: int) -> Method:
    try:
        return Method(method_id)
    except ValueError:
        raise BitstreamError(
            f"unknown coding method id {method_id}, known ids are {[int(m) for m in Method]}"
        ) from None


def _check_sizes(flags, image_height, image_width, channels, stages, code_height, code_width, num_codes) -> None:
    if flags & ~KNOWN_FLAGS:
        raise BitstreamError(f"unsupported flags {flags:#06x}, this reader knows {KNOWN_FLAGS:#06x}")
    for name, value in (
        ("image height", image_height),
        ("image width", image_width),
        ("image channels", channels),
        ("stages", stages),
        ("code height", code_height),
        ("code width", code_width),
    ):
        if value < 1:
            raise BitstreamError(f"invalid header: {name} is {value}, expected >= 1")
    if not 2 <= num_codes <= MAX_NUM_CODES:
        raise BitstreamError(f"invalid header: num_codes is {num_codes}, expected 2 <= K <= {MAX_NUM_CODES}")
    if not flags & FLAG_STAGE_AXIS and stages != 1:
        raise BitstreamError(f"invalid header: {stages} stages declared without the stage-axis flag")


def _check_method_params(method: Method, params: bytes, has_stage_axis: bool) -> None:
    expected = PARAMS_LENGTH[method]
    if len(params) != expected:
        raise BitstreamError(
            f"invalid header: method {method.name.lower()!r} takes {expected} parameter bytes, got {len(params)}"
        )
    if method == Method.PRIOR:
        if has_stage_axis:
            raise BitstreamError("invalid header: method 'prior' with the stage-axis flag; it codes (h, w) maps")
        _, _, tile_h, tile_w, per_batch, _ = PRIOR_PARAMS.unpack(params)
        if not (tile_h and tile_w and per_batch):
            raise BitstreamError(
                f"invalid header: method 'prior' with tile {tile_h}x{tile_w} and "
                f"{per_batch} tiles per batch, expected all >= 1"
            )

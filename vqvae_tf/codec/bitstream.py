"""The `.vqz` bitstream: integer code maps to bytes and back.

A VQ-VAE codec turns an image into a map of discrete codes (an int32 array of
shape `(h, w)`, or `(h, w, stages)` for residual quantizers) with values in
`[0, K)`. This module stores such a map in a small, self-checking binary
format and reads it back exactly. Methods 0 and 1 need no neural network
(nor TensorFlow); method 2 runs the prior it is given.

Format, version 1
-----------------
All integers are unsigned and little-endian. Offsets are in bytes.

| offset | size | field                | meaning                                         |
|-------:|-----:|----------------------|-------------------------------------------------|
|      0 |    4 | magic                | `b"VQZ1"`                                       |
|      4 |    1 | version              | format version, `1`                             |
|      5 |    1 | method               | payload coding method (see below)               |
|      6 |    2 | flags                | bit 0: the code map has a stage axis            |
|        |      |                      | (rank 3); other bits must be 0                  |
|      8 |   16 | model_id             | fingerprint of the model that made the codes    |
|     24 |    4 | image_height         | original image height, >= 1                     |
|     28 |    4 | image_width          | original image width, >= 1                      |
|     32 |    2 | image_channels       | original image channels, >= 1                   |
|     34 |    2 | stages               | quantizer stages, >= 1 (1 unless flag bit 0)    |
|     36 |    4 | code_height          | (padded) code-map height, >= 1                  |
|     40 |    4 | code_width           | (padded) code-map width, >= 1                   |
|     44 |    4 | num_codes            | codebook size K, 2 <= K <= 2**20                |
|     48 |    2 | params_length        | P, length of the method parameters              |
|     50 |    4 | payload_length       | N, length of the payload                        |
|     54 |    P | method parameters    | method-specific, see below                      |
| 54 + P |    N | payload              | the coded code map                              |
| 54+P+N |    4 | crc32                | `zlib.crc32` of every byte before it            |

The codes are serialised in C order of the code map: row by row, and within
a position all stages before the next position.

Methods:

* `0` packed: every code takes exactly `ceil(log2 K)` bits, most significant
  bit first, codes back to back; the last byte is padded with zero bits, so
  `N == ceil(h * w * stages * ceil(log2 K) / 8)`. `P == 0`.
* `1` static: an i.i.d. entropy code under a fixed per-model distribution
  over the K codes. The payload is the compressed word stream of
  `constriction.stream.stack.AnsCoder` (32-bit words, each stored
  little-endian, `N % 4 == 0`) for
  `constriction.stream.model.Categorical(probabilities, perfect=False)`;
  the codes are pushed with `encode_reverse`, so they decode in order.
  `P == 8`: the first 8 bytes of BLAKE2b of the normalised probabilities as
  little-endian float64, so a decoder holding another distribution fails
  with a clear error instead of producing wrong codes.
* `2` prior: each code is entropy coded under an autoregressive prior's
  conditional distribution given the codes before it
  (`vqvae_tf.codec.prior_coding`; decoding needs the prior, i.e. TensorFlow, and
  runs it position by position). Only maps without a stage axis. `P == 20`:

  | offset | size | field            | meaning                                      |
  |-------:|-----:|------------------|----------------------------------------------|
  |      0 |    8 | prior fingerprint| BLAKE2b of the prior's class, config, weights |
  |      8 |    2 | label            | class id, `0xFFFF` for an unconditional prior |
  |     10 |    2 | tile_height      | tile side in codes, >= 1                     |
  |     12 |    2 | tile_width       | tile side in codes, >= 1                     |
  |     14 |    2 | tiles_per_batch  | tiles run through the prior together, >= 1   |
  |     16 |    4 | codes_crc32      | `zlib.crc32` of the int32 codes (C order, LE) |

  The map is cut into `tile_height x tile_width` tiles in raster order,
  each coded on its own (tiles at the right and bottom edges are
  edge-padded; padding is not coded). Tiles are grouped by
  `tiles_per_batch`; group after group, positions in raster order of the
  tile, at each position the group's tiles in order: that is the order the
  codes pop from the payload, the compressed word stream of
  `constriction.stream.stack.AnsCoder` (32-bit little-endian words) with
  `constriction.stream.model.Categorical(perfect=False)` over the prior's
  softmax in float64. The fingerprint makes a decoder holding another prior
  fail clearly; the codes' CRC makes a prior that computes other
  probabilities (another machine or software stack) fail instead of
  returning wrong codes.
* `3`-`255`: unassigned.

New methods take a new method id and carry what they need in the method
parameters, so files written with earlier methods stay readable. A layout
change of the fixed header takes a new version number.

Decoding never trusts the header: every size is checked against the actual
data length and against caller-set limits before anything is allocated, and
every failure raises `BitstreamError` (a `ValueError`) with a one-line message.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import logging
import math
import struct
import zlib
from pathlib import Path

import numpy as np

# prior_coding imports TensorFlow only when a prior runs: the format stays TF-free.
from vqvae_tf.utils import atomic
from vqvae_tf.codec import prior_coding

__all__ = [
    "BitstreamError",
    "DecodedStream",
    "Header",
    "Method",
    "DEFAULT_MAX_PIXELS",
    "MAGIC",
    "MAX_NUM_CODES",
    "MODEL_ID_SIZE",
    "VERSION",
    "code_probabilities_from_counts",
    "decode_stream",
    "encode_stream",
    "make_model_id",
    "read_file",
    "read_header",
    "write_file",
]

logger = logging.getLogger(__name__)

MAGIC = b"VQZ1"
VERSION = 1
MODEL_ID_SIZE = 16
# Well above real codebooks (FSQ/LFQ reach 2**18) and inside what
# constriction's 24-bit categorical model can represent.
MAX_NUM_CODES = 1 << 20
# 8192 x 8192: refuses decompression bombs while allowing large photos.
DEFAULT_MAX_PIXELS = 1 << 26

_FIXED = struct.Struct("<4sBBH16sIIHHIIIHI")
_CRC = struct.Struct("<I")
_FLAG_STAGE_AXIS = 1
_KNOWN_FLAGS = _FLAG_STAGE_AXIS
_FINGERPRINT_SIZE = 8
_UINT16_MAX = 0xFFFF
_UINT32_MAX = 0xFFFFFFFF
# Codes per packing chunk: a multiple of 8, so every chunk but the last ends
# on a byte boundary and chunks concatenate; bounds the bit-matrix memory.
_PACK_CHUNK = 1 << 16


class BitstreamError(ValueError):
    """A `.vqz` stream or the arguments to encode one are invalid."""


class Method(enum.IntEnum):
    """Payload coding methods; the value is the id stored in the header."""

    PACKED = 0
    STATIC = 1
    PRIOR = 2


_PARAMS_LENGTH = {Method.PACKED: 0, Method.STATIC: _FINGERPRINT_SIZE, Method.PRIOR: prior_coding.PARAMS.size}


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
        return _bits_per_code(self.num_codes)

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
        fingerprint, label, tile_h, tile_w, per_batch, crc = prior_coding.PARAMS.unpack(self.method_params)
        return dict(fingerprint=fingerprint.hex(), label=None if label == prior_coding.NO_LABEL else label,
                    tile=(tile_h, tile_w), tiles_per_batch=per_batch, codes_crc32=crc)


@dataclasses.dataclass(frozen=True)
class DecodedStream:
    """A decoded `.vqz` stream.

    Attributes:
        codes: int32 code map of shape `header.code_shape`.
        image_shape: `(height, width, channels)` of the original image.
        num_codes: codebook size K.
        model_id: fingerprint of the model that made the codes.
        method: payload coding method.
        header: the full parsed header.
    """

    codes: np.ndarray
    image_shape: tuple[int, int, int]
    num_codes: int
    model_id: bytes
    method: Method
    header: Header


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
    if not (math.isfinite(pseudo_count) and pseudo_count > 0):
        raise BitstreamError(f"pseudo_count must be a positive number, got {pseudo_count!r}")
    smoothed = counts + pseudo_count
    return smoothed / smoothed.sum()


# --------------------------------------------------------------------------- encode


def encode_stream(
    codes: np.ndarray,
    *,
    num_codes: int,
    model_id: bytes,
    image_shape: tuple[int, int, int],
    method: str | Method = "packed",
    code_probabilities: np.ndarray | None = None,
    prior=None,
    label: int | None = None,
    tile: tuple[int, int] | None = None,
) -> bytes:
    """Encodes a code map into a `.vqz` stream.

    Args:
        codes: integer array of shape `(h, w)` or `(h, w, stages)`, values in
            `[0, num_codes)`.
        num_codes: codebook size K, `2 <= K <= MAX_NUM_CODES`.
        model_id: 16-byte fingerprint of the model (see `make_model_id`).
        image_shape: `(height, width, channels)` of the original image.
        method: `"packed"` (fixed width), `"static"` (entropy coded under a
            fixed distribution) or `"prior"` (entropy coded under an
            autoregressive prior; needs TensorFlow). Defaults to `"packed"`.
        code_probabilities: strictly positive float vector of shape `(K,)`,
            the model's code distribution; required by `"static"`, ignored
            otherwise. See `code_probabilities_from_counts`.
        prior: a prior over the codes (`GatedPixelCNN`, `TransformerPrior`,
            `UnigramPrior`) with `num_codes == K`; required by `"prior"`,
            ignored otherwise.
        label: class id for a class-conditional prior, else None.
        tile: `(tile_h, tile_w)` of the `"prior"` method; defaults to the
            prior's `map_shape` (see `prior_coding.encode_prior_payload`).

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
    """
    method = _parse_method(method)
    num_codes = _check_num_codes(num_codes)
    model_id = _check_model_id(model_id, "model_id")
    image_shape = _check_image_shape(image_shape)
    flat, code_shape = _check_codes(codes, num_codes)

    if method == Method.PACKED:
        params, payload = b"", _pack(flat, _bits_per_code(num_codes))
    elif method == Method.STATIC:
        if code_probabilities is None:
            raise BitstreamError("method 'static' needs code_probabilities, got None")
        probabilities = _check_probabilities(code_probabilities, num_codes)
        params = _fingerprint(probabilities)
        payload = _ans_encode(flat, probabilities)
    else:
        params, payload = _prior_encode(codes, code_shape, num_codes, prior, label, tile)

    if len(payload) > _UINT32_MAX:
        raise BitstreamError(f"payload of {len(payload)} bytes exceeds the 4 GiB format limit")
    flags = _FLAG_STAGE_AXIS if len(code_shape) == 3 else 0
    stages = code_shape[2] if len(code_shape) == 3 else 1
    head = _FIXED.pack(
        MAGIC, VERSION, int(method), flags, model_id,
        *image_shape, stages, code_shape[0], code_shape[1], num_codes,
        len(params), len(payload),
    )
    body = b"".join((head, params, payload))
    return body + _CRC.pack(zlib.crc32(body))


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


def _check_int(value, name: str, low: int, high: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise BitstreamError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if not low <= value <= high:
        raise BitstreamError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def _check_num_codes(num_codes) -> int:
    return _check_int(num_codes, "num_codes", 2, MAX_NUM_CODES)


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
        _check_int(height, "image height", 1, _UINT32_MAX),
        _check_int(width, "image width", 1, _UINT32_MAX),
        _check_int(channels, "image channels", 1, _UINT16_MAX),
    )


def _check_codes(codes, num_codes: int) -> tuple[np.ndarray, tuple[int, ...]]:
    if not isinstance(codes, np.ndarray):
        raise BitstreamError(f"codes must be a numpy array, got {type(codes).__name__}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise BitstreamError(f"codes must have an integer dtype, got {codes.dtype}")
    if codes.ndim not in (2, 3):
        raise BitstreamError(f"codes must have shape (h, w) or (h, w, stages), got shape {codes.shape}")
    if codes.size == 0:
        raise BitstreamError(f"codes must not be empty, got shape {codes.shape}")
    limits = (_UINT32_MAX, _UINT32_MAX, _UINT16_MAX)
    for axis, (size, limit) in enumerate(zip(codes.shape, limits)):
        if size > limit:
            raise BitstreamError(f"codes axis {axis} has size {size}, the format allows at most {limit}")
    low, high = codes.min(), codes.max()
    if low < 0 or high >= num_codes:
        raise BitstreamError(f"codes must be in [0, {num_codes}), got values in [{low}, {high}]")
    return codes.reshape(-1).astype(np.int32), tuple(int(s) for s in codes.shape)


def _check_probabilities(probabilities, num_codes: int) -> np.ndarray:
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


def _fingerprint(probabilities: np.ndarray) -> bytes:
    data = probabilities.astype("<f8").tobytes()
    return hashlib.blake2b(data, digest_size=_FINGERPRINT_SIZE).digest()


def _bits_per_code(num_codes: int) -> int:
    return (num_codes - 1).bit_length()


def _pack(flat: np.ndarray, bits: int) -> bytes:
    parts = []
    for start in range(0, flat.size, _PACK_CHUNK):
        words = flat[start:start + _PACK_CHUNK].astype(">u4")
        bit_matrix = np.unpackbits(words.view(np.uint8).reshape(-1, 4), axis=1)
        parts.append(np.packbits(bit_matrix[:, 32 - bits:]).tobytes())
    return b"".join(parts)


def _check_prior(prior, num_codes: int):
    if prior is None:
        raise BitstreamError("method 'prior' needs the prior the codes are coded with, got prior=None")
    prior_codes = getattr(prior, "num_codes", None)
    if prior_codes != num_codes:
        raise BitstreamError(f"the prior models {prior_codes} codes, the stream has num_codes={num_codes}")


def _prior_encode(codes, code_shape, num_codes, prior, label, tile) -> tuple[bytes, bytes]:
    if len(code_shape) != 2:
        raise BitstreamError(f"method 'prior' codes maps of shape (h, w), got shape {code_shape} (a stage axis)")
    _check_prior(prior, num_codes)
    try:
        return prior_coding.encode_prior_payload(prior, codes, label, tile=tile)
    except prior_coding.PriorCodingError as error:
        raise BitstreamError(f"cannot prior-code the codes: {error}") from None


def _categorical(probabilities: np.ndarray):
    import constriction  # Only the static method needs it.

    return constriction.stream.model.Categorical(probabilities, perfect=False)


def _ans_encode(flat: np.ndarray, probabilities: np.ndarray) -> bytes:
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(flat, _categorical(probabilities))
    return coder.get_compressed().astype("<u4").tobytes()


# --------------------------------------------------------------------------- decode


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
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"data must be bytes, got {type(data).__name__}")
    try:
        data = memoryview(data).cast("B")
    except TypeError as error:
        raise BitstreamError(f"data must be contiguous bytes: {error}") from None
    minimum = _FIXED.size + _CRC.size
    if len(data) >= len(MAGIC) and bytes(data[:len(MAGIC)]) != MAGIC:
        raise BitstreamError(f"not a .vqz stream: magic is {bytes(data[:len(MAGIC)])!r}, expected {MAGIC!r}")
    if len(data) < minimum:
        raise BitstreamError(f"truncated stream: got {len(data)} bytes, a .vqz stream has at least {minimum}")
    (_, version, method_id, flags, model_id, image_height, image_width, channels, stages,
     code_height, code_width, num_codes, params_length, payload_length) = _FIXED.unpack_from(data)
    if version != VERSION:
        raise BitstreamError(f"unsupported .vqz version {version}, this reader supports version {VERSION}")
    total = _FIXED.size + params_length + payload_length + _CRC.size
    if len(data) < total:
        raise BitstreamError(f"truncated stream: header declares {total} bytes, got {len(data)}")
    if len(data) > total:
        raise BitstreamError(f"{len(data) - total} unexpected trailing bytes after a {total}-byte stream")
    (stored_crc,) = _CRC.unpack_from(data, total - _CRC.size)
    actual_crc = zlib.crc32(data[:total - _CRC.size])
    if stored_crc != actual_crc:
        raise BitstreamError(f"corrupted stream: CRC32 is {actual_crc:#010x}, header stores {stored_crc:#010x}")

    try:
        method = Method(method_id)
    except ValueError:
        raise BitstreamError(f"unknown coding method id {method_id}, known ids are {[int(m) for m in Method]}") from None
    if flags & ~_KNOWN_FLAGS:
        raise BitstreamError(f"unsupported flags {flags:#06x}, this reader knows {_KNOWN_FLAGS:#06x}")
    for name, value in (("image height", image_height), ("image width", image_width),
                        ("image channels", channels), ("stages", stages),
                        ("code height", code_height), ("code width", code_width)):
        if value < 1:
            raise BitstreamError(f"invalid header: {name} is {value}, expected >= 1")
    if not 2 <= num_codes <= MAX_NUM_CODES:
        raise BitstreamError(f"invalid header: num_codes is {num_codes}, expected 2 <= K <= {MAX_NUM_CODES}")
    has_stage_axis = bool(flags & _FLAG_STAGE_AXIS)
    if not has_stage_axis and stages != 1:
        raise BitstreamError(f"invalid header: {stages} stages declared without the stage-axis flag")
    expected_params = _PARAMS_LENGTH[method]
    if expected_params is not None and params_length != expected_params:
        raise BitstreamError(
            f"invalid header: method {method.name.lower()!r} takes {expected_params} parameter bytes, got {params_length}"
        )
    if method == Method.PRIOR:
        if has_stage_axis:
            raise BitstreamError("invalid header: method 'prior' with the stage-axis flag; it codes (h, w) maps")
        _, _, tile_h, tile_w, per_batch, _ = prior_coding.PARAMS.unpack_from(data, _FIXED.size)
        if not (tile_h and tile_w and per_batch):
            raise BitstreamError(f"invalid header: method 'prior' with tile {tile_h}x{tile_w} and "
                                 f"{per_batch} tiles per batch, expected all >= 1")
    code_shape = (code_height, code_width, stages) if has_stage_axis else (code_height, code_width)
    params_start = _FIXED.size
    return Header(
        version=version,
        method=method,
        flags=flags,
        model_id=bytes(model_id),
        image_shape=(image_height, image_width, channels),
        code_shape=code_shape,
        num_codes=num_codes,
        method_params=bytes(data[params_start:params_start + params_length]),
        payload_length=payload_length,
        total_length=total,
    )


def decode_stream(
    data: bytes,
    *,
    expected_model_id: bytes | None = None,
    code_probabilities: np.ndarray | None = None,
    prior=None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedStream:
    """Decodes a `.vqz` stream back into its code map, exactly.

    Args:
        data: the whole stream.
        expected_model_id: if given, the 16-byte id of the model the caller
            will decode with; a stream made by another model is refused.
            Defaults to `None` (no check).
        code_probabilities: the model's code distribution, shape `(K,)`;
            required for streams coded with the `"static"` method, ignored
            otherwise. Defaults to `None`.
        prior: the prior the codes were coded with; required for streams
            coded with the `"prior"` method (its fingerprint must match the
            stream's), ignored otherwise. Defaults to `None`.
        max_pixels: refuse streams whose image (`height * width`) or code map
            (`h * w * stages`) has more elements than this, before allocating.
            Defaults to `DEFAULT_MAX_PIXELS` (2**26).

    Returns:
        A `DecodedStream`; `codes` is int32 of shape `header.code_shape`.

    Raises:
        BitstreamError: if the stream is invalid, corrupted, too large, made
            by another model, or coded with another distribution or prior.
    """
    max_pixels = _check_int(max_pixels, "max_pixels", 1, 1 << 62)
    if expected_model_id is not None:
        expected_model_id = _check_model_id(expected_model_id, "expected_model_id")
    header = read_header(data)
    height, width, _ = header.image_shape
    if height * width > max_pixels:
        raise BitstreamError(
            f"image of {height}x{width} = {height * width} pixels exceeds max_pixels={max_pixels}"
        )
    if header.num_symbols > max_pixels:
        raise BitstreamError(
            f"code map of shape {header.code_shape} = {header.num_symbols} codes exceeds max_pixels={max_pixels}"
        )
    if expected_model_id is not None and header.model_id != expected_model_id:
        raise BitstreamError(
            f"stream was made by model {header.model_id.hex()}, expected model {expected_model_id.hex()}"
        )
    payload_start = _FIXED.size + len(header.method_params)
    payload = memoryview(data).cast("B")[payload_start:payload_start + header.payload_length]

    if header.method == Method.PACKED:
        flat = _unpack(payload, header.num_symbols, header.num_codes)
    elif header.method == Method.STATIC:
        if code_probabilities is None:
            raise BitstreamError("stream uses method 'static': pass the model's code_probabilities, got None")
        probabilities = _check_probabilities(code_probabilities, header.num_codes)
        if _fingerprint(probabilities) != header.distribution_fingerprint:
            raise BitstreamError(
                f"code_probabilities fingerprint {_fingerprint(probabilities).hex()} does not match "
                f"the stream's {header.distribution_fingerprint.hex()}: another model's distribution"
            )
        flat = _ans_decode(payload, header.num_symbols, probabilities)
    else:
        _check_prior(prior, header.num_codes)
        try:
            flat = prior_coding.decode_prior_payload(prior, header.method_params, payload, header.code_shape)
        except prior_coding.PriorCodingError as error:
            raise BitstreamError(f"invalid prior payload: {error}") from None
    return DecodedStream(
        codes=flat.reshape(header.code_shape),
        image_shape=header.image_shape,
        num_codes=header.num_codes,
        model_id=header.model_id,
        method=header.method,
        header=header,
    )


def _unpack(payload: memoryview, count: int, num_codes: int) -> np.ndarray:
    bits = _bits_per_code(num_codes)
    expected = -(-count * bits // 8)
    if len(payload) != expected:
        raise BitstreamError(
            f"packed payload is {len(payload)} bytes, {count} codes of {bits} bits need {expected}"
        )
    padding = expected * 8 - count * bits
    if padding and payload[-1] & ((1 << padding) - 1):
        raise BitstreamError("packed payload has non-zero padding bits")
    flat = np.empty(count, dtype=np.int32)
    chunk_bytes = _PACK_CHUNK * bits // 8
    for index, start in enumerate(range(0, count, _PACK_CHUNK)):
        size = min(_PACK_CHUNK, count - start)
        chunk = np.frombuffer(payload, np.uint8, count=-(-size * bits // 8), offset=index * chunk_bytes)
        bit_matrix = np.zeros((size, 32), dtype=np.uint8)
        bit_matrix[:, 32 - bits:] = np.unpackbits(chunk, count=size * bits).reshape(size, bits)
        flat[start:start + size] = np.packbits(bit_matrix, axis=1).view(">u4")[:, 0]
    high = int(flat.max())
    if high >= num_codes:
        raise BitstreamError(f"packed payload holds code {high}, expected codes in [0, {num_codes})")
    return flat


def _ans_decode(payload: memoryview, count: int, probabilities: np.ndarray) -> np.ndarray:
    import constriction

    if len(payload) % 4:
        raise BitstreamError(f"static payload is {len(payload)} bytes, expected a multiple of 4")
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        flat = coder.decode(_categorical(probabilities), count)
    except (ValueError, KeyError, RuntimeError) as error:
        raise BitstreamError(f"invalid static payload: {error}") from None
    if not coder.is_empty():
        raise BitstreamError(f"static payload has {coder.num_words()} unused words after {count} codes")
    return flat.astype(np.int32, copy=False)


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
    max_pixels = _check_int(max_pixels, "max_pixels", 1, 1 << 62)
    # 4 bytes per code bounds every method (packed uses <= 20 bits, the ANS
    # coders <= 24 bits per code plus a word of state), plus the largest header.
    limit = max_pixels * 4 + _FIXED.size + _UINT16_MAX + 4 + _CRC.size
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise BitstreamError(f"{path} is larger than {limit} bytes, the most a stream within max_pixels={max_pixels} needs")
    return decode_stream(data, **decode_kwargs)



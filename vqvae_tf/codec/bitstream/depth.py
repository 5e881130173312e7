"""Variable depth: a residual image map whose positions keep different numbers of stages.

A stream with the variable-depth flag (`header.FLAG_VARIABLE_DEPTH`) stores
an `(h, w, n)` map in which position `p` keeps only its first `depth[p]`
stages, `1 <= depth[p] <= n`; the decoder gives the stages a position does
not keep the decoder's `absent_code`, exactly as it does for the stages a
uniform stream leaves out (quantizer dropout trained the model on every
prefix, so any prefix decodes). The encoder spends the finer stages where
they buy the most distortion per bit (`vqvae_tf.codec.depth_choice`).

Layout: the payload starts with the *depth section*, then the method's
payload of the codes kept:

| size  | field        | meaning                                                   |
|------:|--------------|-----------------------------------------------------------|
|     4 | depth_bytes  | L, length of the depth map's ANS words                    |
| 2 * n | frequencies  | uint16 count of each depth 1..n, scaled to at most 65535  |
|     L | depth words  | the `(h, w)` depths in raster order, `static`-style ANS    |

The depths are coded under `code_probabilities_from_counts(frequencies)`
(every depth stays codable), which both ends compute from the same
integers, so the table is identical on every machine. The codes kept are
then ordered stage by stage: stage `s` holds, in raster order, the
positions whose depth exceeds `s`. Every method codes that order: `packed`
packs it back to back, `static` codes stage `s` under row `s` of the
model's tables, `prior` codes stage 0 (every position) with the prior and
the rest as `static` does.
"""

from __future__ import annotations

import struct

import numpy as np

from vqvae_tf.codec.bitstream.header import BitstreamError
from vqvae_tf.codec.bitstream.static import code_probabilities_from_counts
from vqvae_tf.codec.entropy import AnsDecoder, AnsEncoder, AnsError

__all__ = [
    "ABSENT",
    "check_depth",
    "decode_section",
    "encode_section",
    "merge_stages",
    "split_stages",
    "stage_counts",
]

#: What a decoded map holds at the stages a position does not keep.
ABSENT = -1
_LENGTH = struct.Struct("<I")
_UINT16_MAX = 0xFFFF


def check_depth(depth, code_shape: tuple[int, ...]) -> np.ndarray:
    """`depth` as int32 `(h, w)`, if it fits an `(h, w, n)` map: integers in `1..n`.

    Raises:
        BitstreamError: another shape, a non-integer dtype, or a value out of range.
    """
    if len(code_shape) != 3:
        raise BitstreamError(f"depth needs an image code map with a stage axis (h, w, n), got codes {code_shape}")
    if not isinstance(depth, np.ndarray) or not np.issubdtype(depth.dtype, np.integer):
        shown = depth.dtype if isinstance(depth, np.ndarray) else type(depth).__name__
        raise BitstreamError(f"depth must be an integer numpy array, got {shown}")
    if depth.shape != code_shape[:2]:
        raise BitstreamError(f"depth must have shape {code_shape[:2]} (the code map's positions), got {depth.shape}")
    low, high, kept = int(depth.min()), int(depth.max()), code_shape[2]
    if low < 1 or high > kept:
        raise BitstreamError(f"depth must be in 1..{kept} (the stages of the map), got values in [{low}, {high}]")
    return depth.astype(np.int32)


def split_stages(codes: np.ndarray, depth: np.ndarray) -> list[np.ndarray]:
    """The codes kept, per stage: entry `s` is stage `s` at the positions deeper than `s`, raster order."""
    return [np.ascontiguousarray(codes[..., stage][depth > stage], np.int32) for stage in range(codes.shape[-1])]


def stage_counts(depth: np.ndarray, kept: int) -> list[int]:
    """Codes kept per stage: how many positions are deeper than `s`, for `s < kept`."""
    return [int(np.count_nonzero(depth > stage)) for stage in range(kept)]


def merge_stages(per_stage: list[np.ndarray], depth: np.ndarray) -> np.ndarray:
    """Inverse of `split_stages`: the int32 `(h, w, n)` map, `ABSENT` where a position keeps no code."""
    codes = np.full(depth.shape + (len(per_stage),), ABSENT, np.int32)
    for stage, values in enumerate(per_stage):
        codes[..., stage][depth > stage] = values
    return codes


def _table(frequencies: np.ndarray) -> np.ndarray:
    return code_probabilities_from_counts(frequencies.astype(np.float64))


def encode_section(depth: np.ndarray, kept: int) -> bytes:
    """The depth section of a checked `(h, w)` depth map of a map of `kept` stages."""
    counts = np.bincount(depth.reshape(-1) - 1, minlength=kept).astype(np.float64)
    # Scaled so the largest count is 65535; a depth that occurs keeps >= 1.
    frequencies = np.where(counts > 0, np.maximum(1, np.round(counts * _UINT16_MAX / counts.max())), 0)
    frequencies = frequencies.astype("<u2")
    encoder = AnsEncoder()
    encoder.push(depth.reshape(-1) - 1, _table(frequencies))
    words = encoder.payload()
    return _LENGTH.pack(len(words)) + frequencies.tobytes() + words


def decode_section(payload: memoryview, shape: tuple[int, int], kept: int) -> tuple[np.ndarray, int]:
    """`(depth (h, w) int32, bytes read)` from the start of a variable-depth payload.

    Raises:
        BitstreamError: a truncated or invalid section.
    """
    head = _LENGTH.size + 2 * kept
    if len(payload) < head:
        raise BitstreamError(f"truncated depth section: payload is {len(payload)} bytes, its header needs {head}")
    (length,) = _LENGTH.unpack_from(payload)
    if head + length > len(payload):
        raise BitstreamError(
            f"invalid depth section: it declares {length} bytes of depths, the payload has {len(payload) - head}"
        )
    frequencies = np.frombuffer(payload, "<u2", count=kept, offset=_LENGTH.size)
    if not frequencies.any():
        raise BitstreamError("invalid depth section: every depth has frequency 0")
    try:
        decoder = AnsDecoder(payload[head : head + length])
        depth = decoder.pop(_table(frequencies), shape[0] * shape[1]) + 1
        decoder.finish()
    except AnsError as error:
        raise BitstreamError(f"invalid depth section: {error}") from None
    depth = depth.astype(np.int32).reshape(shape)
    used = np.bincount(depth.reshape(-1) - 1, minlength=kept)[:kept] > 0
    if np.any(used & (frequencies == 0)):
        raise BitstreamError("invalid depth section: it holds a depth its frequencies declare absent")
    return depth, head + length

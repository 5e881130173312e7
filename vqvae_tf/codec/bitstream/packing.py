"""The `packed` method (0): fixed-width codes, most significant bit first, back to back.

Every code takes exactly `ceil(log2 K)` bits; the last byte is padded with
zero bits. Codes go through a bit matrix in chunks of `_PACK_CHUNK`, which
bounds the memory of packing and unpacking.
"""

from __future__ import annotations

import numpy as np

from vqvae_tf.codec.bitstream.header import BitstreamError, bits_per_code

__all__ = ["pack", "unpack"]

# Codes per packing chunk: a multiple of 8, so every chunk but the last ends
# on a byte boundary and chunks concatenate; bounds the bit-matrix memory.
_PACK_CHUNK = 1 << 16


def pack(flat: np.ndarray, bits: int) -> bytes:
    """int32 codes `(n,)` below `2**bits` -> `ceil(n * bits / 8)` bytes."""
    parts = []
    for start in range(0, flat.size, _PACK_CHUNK):
        words = flat[start : start + _PACK_CHUNK].astype(">u4")
        bit_matrix = np.unpackbits(words.view(np.uint8).reshape(-1, 4), axis=1)
        parts.append(np.packbits(bit_matrix[:, 32 - bits :]).tobytes())
    return b"".join(parts)


def unpack(payload: memoryview, count: int, num_codes: int) -> np.ndarray:
    """Inverse of `pack`: `count` int32 codes, checked to be in `[0, num_codes)`.

    Raises:
        BitstreamError: a payload of the wrong length, non-zero padding bits,
            or a code of `num_codes` or more.
    """
    bits = bits_per_code(num_codes)
    expected = -(-count * bits // 8)
    if len(payload) != expected:
        raise BitstreamError(f"packed payload is {len(payload)} bytes, {count} codes of {bits} bits need {expected}")
    padding = expected * 8 - count * bits
    if padding and payload[-1] & ((1 << padding) - 1):
        raise BitstreamError("packed payload has non-zero padding bits")
    flat = np.empty(count, dtype=np.int32)
    chunk_bytes = _PACK_CHUNK * bits // 8
    for index, start in enumerate(range(0, count, _PACK_CHUNK)):
        size = min(_PACK_CHUNK, count - start)
        chunk = np.frombuffer(payload, np.uint8, count=-(-size * bits // 8), offset=index * chunk_bytes)
        bit_matrix = np.zeros((size, 32), dtype=np.uint8)
        bit_matrix[:, 32 - bits :] = np.unpackbits(chunk, count=size * bits).reshape(size, bits)
        flat[start : start + size] = np.packbits(bit_matrix, axis=1).view(">u4")[:, 0]
    high = int(flat.max())
    if high >= num_codes:
        raise BitstreamError(f"packed payload holds code {high}, expected codes in [0, {num_codes})")
    return flat

"""Coding batches of code maps with a prior: the core, and standalone payloads of whole maps.

The core (`push_batch`, `pop_batch`) codes a batch of maps `(n, H, W)`:
positions in raster order, at each position the batch's maps in index
order, each code under the prior's conditional distribution. Encoding runs
the prior once on the true codes (a causal prior gives every position's
logits together); decoding runs it once per position on the partly decoded
maps. Maps may carry edge padding that is not coded (`extents`), which the
tiles of a `.vqz` method-2 stream use (`vqvae_tf.codec.prior_coding.tiled`).

Standalone payload (`encode_codes`, `checksum=True`): the ANS words as
little-endian uint32, then 4 bytes: CRC32 of the codes (int32,
little-endian, C order).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from vqvae_tf.codec.entropy import AnsDecoder, AnsEncoder, AnsError
from vqvae_tf.codec.prior_coding import quantized
from vqvae_tf.codec.prior_coding.probabilities import (
    PriorCodingError,
    check_codes,
    check_labels,
    check_map_shape,
    check_prior,
    logits_function,
    probabilities_from_logits,
)

__all__ = ["codes_crc", "decode_codes", "decode_payload", "encode_codes", "pop_batch", "push_batch"]

_CRC = struct.Struct("<I")


def codes_crc(codes) -> int:
    """CRC32 of `codes` as int32, little-endian, C order."""
    return zlib.crc32(np.ascontiguousarray(codes, dtype="<i4").tobytes())


def _coded_mask(extents, row, col):
    """Which maps of a batch code position `(row, col)` (the others pad it)."""
    if extents is None:
        return None
    heights, widths = extents
    return (row < heights) & (col < widths)


def _position_logits(prior):
    """`(codes (n, H, W), labels, row, col) -> float32 logits (n, K)` at one position, from the codes before it."""
    if hasattr(prior, "logits_at"):  # `LitePrior`: one TFLite call per position (and per row)
        return lambda codes, labels, row, col: prior.logits_at(codes, row, col)
    logits_of = logits_function(prior)
    return lambda codes, labels, row, col: logits_of(codes, labels)[:, row, col]


def push_batch(encoder: AnsEncoder, prior, batch, labels, extents=None):
    """Pushes one batch of maps `(n, H, W)` onto `encoder` so it pops in decode order.

    Positions pop in raster order; at each position the grid flags of the
    coded maps of the batch, then their codes, in index order: the order in
    which `pop_batch` can compute them (tables: `quantized`). `extents`
    (`(heights, widths)`, ints `(n,)`) marks the real part of each map; the
    rest is edge padding, never coded. Batches must be pushed in REVERSE
    decode order (the coder is a stack).
    """
    n, height, width = batch.shape
    if hasattr(prior, "logits_at"):
        # The decoder's inputs exactly: the codes before each position, zeros after.
        logits_at = _position_logits(prior)
        order = np.arange(height * width).reshape(height, width)
        logits = np.stack(
            [
                logits_at(np.where(order < t, batch, 0).astype(np.int32), labels, *divmod(t, width))
                for t in range(height * width)
            ],
            axis=1,
        ).reshape(n, height, width, -1)
    else:
        logits = logits_function(prior)(batch, labels)
    flag_table = quantized.flag_probabilities()
    chunks = []
    for t in range(height * width):
        row, col = divmod(t, width)
        coded = _coded_mask(extents, row, col)
        rows = slice(None) if coded is None else coded
        if coded is not None and not coded.any():
            continue
        position_logits = logits[rows, row, col]
        grids = quantized.choose_grids(position_logits)
        chunks.append((grids.astype(np.int32), flag_table))
        chunks.append((batch[rows, row, col], quantized.tables(position_logits, grids)))
    for symbols, table in reversed(chunks):
        encoder.push(symbols, table)


def pop_batch(decoder: AnsDecoder, prior, shape, labels, extents=None, *, scheme=quantized.SCHEME):
    """Inverse of `push_batch`: pops one batch of maps of `shape` `(n, H, W)`.

    `scheme=b""` decodes vqvae_tf 0.2's streams: float tables from the
    logits (`probabilities_from_logits`), no grid flags.
    """
    legacy = scheme != quantized.SCHEME
    logits_at = _position_logits(prior)
    flag_table = quantized.flag_probabilities()
    n, height, width = shape
    codes = np.zeros(shape, np.int32)
    for t in range(height * width):
        row, col = divmod(t, width)
        coded = _coded_mask(extents, row, col)
        if coded is not None and not coded.all():
            # Padding copies the nearest real code, decoded before it in raster order.
            pad = ~coded
            heights, widths = extents
            codes[pad, row, col] = codes[pad, np.minimum(row, heights[pad] - 1), np.minimum(col, widths[pad] - 1)]
            if not coded.any():
                continue
        rows = slice(None) if coded is None else coded
        logits = logits_at(codes, labels, row, col)[rows]
        if legacy:
            table = probabilities_from_logits(logits)
        else:
            grids = decoder.pop(flag_table, n if coded is None else int(coded.sum()))
            table = quantized.tables(logits, grids)
        codes[rows, row, col] = decoder.pop(table)
    return codes


def decode_payload(payload, pop):
    """Runs `pop(decoder)` on the payload's words; a corrupt payload raises `PriorCodingError`.

    Corrupt: not whole words, words the decoder cannot pop, or words left
    after `pop`.
    """
    try:
        decoder = AnsDecoder(payload)
        codes = pop(decoder)
        decoder.finish()
    except AnsError as error:
        raise PriorCodingError(f"corrupt payload: {error}.") from None
    return codes


def encode_codes(prior, codes, labels=None, *, checksum=True):
    """Entropy-codes code maps with the prior's conditional distributions.

    Args:
        prior: a trained prior (`GatedPixelCNN`, `TransformerPrior` or
            `UnigramPrior`); the decoder must hold the same weights.
        codes: integer array `(H, W)` (one map) or `(N, H, W)`, values in
            `[0, prior.num_codes)`.
        labels: for a class-conditional prior, an int (one map) or ints
            `(N,)`; else None.
        checksum: append the CRC32 of the codes (4 bytes) so that a corrupt
            payload or another prior fails to decode instead of giving wrong
            codes. Defaults to True.

    Returns:
        `bytes`: the payload (see the module docstring for the layout).

    Raises:
        PriorCodingError: bad codes or labels.

    Example:

    >>> payload = encode_codes(prior, codes)             # codes (7, 7)
    >>> np.array_equal(decode_codes(prior, payload, (7, 7)), codes)
    True
    """
    check_prior(prior)
    codes = check_codes(prior, codes)
    single = codes.ndim == 2
    batch = codes[None] if single else codes
    labels = check_labels(prior, labels, batch.shape[0], single)
    encoder = AnsEncoder()
    push_batch(encoder, prior, batch, labels)
    payload = encoder.payload()
    if checksum:
        payload += _CRC.pack(codes_crc(batch))
    return payload


def decode_codes(prior, payload, map_shape, labels=None, *, checksum=True):
    """Decodes a payload of `encode_codes` back into the exact code maps.

    Args:
        prior: the prior the payload was coded with (same weights).
        payload: bytes from `encode_codes`.
        map_shape: `(H, W)` for one map or `(N, H, W)`, as encoded.
        labels: the label(s) used when encoding, or None.
        checksum: whether the payload ends with the codes' CRC32 (must match
            `encode_codes`). Defaults to True.

    Returns:
        int32 array of shape `map_shape`.

    Raises:
        PriorCodingError: a truncated or corrupt payload, a checksum
            mismatch (another prior or corrupted data), or bad arguments.
    """
    check_prior(prior)
    map_shape = check_map_shape(prior, map_shape)
    single = len(map_shape) == 2
    shape = (1,) + map_shape if single else map_shape
    labels = check_labels(prior, labels, shape[0], single)
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise PriorCodingError(f"`payload` must be bytes; received {type(payload).__name__}.")
    payload = bytes(payload)
    stored_crc = None
    if checksum:
        if len(payload) < _CRC.size:
            raise PriorCodingError(f"truncated payload: {len(payload)} bytes, expected at least {_CRC.size}.")
        (stored_crc,) = _CRC.unpack(payload[-_CRC.size :])
        payload = payload[: -_CRC.size]
    codes = decode_payload(payload, lambda decoder: pop_batch(decoder, prior, shape, labels))
    if stored_crc is not None and stored_crc != codes_crc(codes):
        raise PriorCodingError(
            "corrupt payload or another prior: the decoded codes fail the CRC32 check "
            f"(stored {stored_crc:#010x}, decoded {codes_crc(codes):#010x})."
        )
    return codes[0] if single else codes

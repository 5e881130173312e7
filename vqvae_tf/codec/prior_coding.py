"""Lossless entropy coding of code maps with an autoregressive prior.

Each code `z_i` of a map is coded with the prior's conditional distribution
`p(z_i | z_<i)` by an ANS coder (`constriction.stream.stack.AnsCoder` with
`constriction.stream.model.Categorical(perfect=False)`), so a map costs about
its prior NLL in bits (plus under 32 bits of coder state) instead of
`H * W * ceil(log2 K)` bits.

Encoding needs ONE forward pass: the prior is causal, so the logits at every
position given the true codes come out together. Decoding runs the prior
once per raster position on the partially decoded maps (the not-yet-decoded
positions hold 0, which a causal prior never looks at) and pops the codes of
that position from the stack.

Determinism, the one thing an entropy coder cannot get wrong: the decoder
must build bit-identical probability tables. Both sides therefore

1. run the SAME traced function (`tf.function` around the prior) on the CPU
   in float32, on inputs of the same shape `(N, H, W)`: a causal network's
   output at position i is then a function of the codes before i computed by
   the same kernels in the same order (tested bit-exact for `GatedPixelCNN`
   and `TransformerPrior`); the KV cache and the PixelCNN's row-cropped
   sampler use other shapes, hence other kernels, and are NOT used;
2. convert the logits of one position `(N, K)` to float64 probabilities with
   the same NumPy procedure (`probabilities_from_logits`) on an array of the
   same shape;
3. let constriction quantise them (deterministic for identical float64
   input).

Bit-identical logits across machines with different CPUs, thread counts or
TensorFlow builds are not guaranteed (no learned entropy coder can promise
that without integer arithmetic): code and decode with the same software
stack, and rely on the checksum of the codes (standalone payloads and
`.vqz` method 2 both carry one) to turn a mismatch into an error instead of
wrong codes.

Payload (standalone, `checksum=True`): the ANS words as little-endian uint32,
then 4 bytes: CRC32 of the decoded codes (int32, little-endian, C order).

Inside a `.vqz` stream (method 2, `encode_prior_payload`) the payload is the
words alone and the CRC32 of the codes sits in the method parameters
(`PARAMS`), beside the prior's fingerprint: the stream's own CRC covers the
bytes, the codes' CRC catches a decoder whose prior computes other
probabilities. A method-2 map of any size is cut into tiles (by default the
prior's `map_shape`, the map size it was trained on) that are coded
independently, in batches of `tiles_per_batch` tiles per prior call: a
decoder then needs `tile_h * tile_w` prior calls per batch instead of one
per code of the whole map, and a prior with a fixed map size (the
Transformer's position embeddings) still codes any map. Tiles at the right
and bottom edges are edge-padded; padding is not coded.
"""

from __future__ import annotations

import hashlib
import json
import struct
import weakref
import zlib

import numpy as np

__all__ = [
    "DEFAULT_TILES_PER_BATCH",
    "NO_LABEL",
    "PARAMS",
    "PriorCodingError",
    "decode_codes",
    "decode_prior_payload",
    "default_tile",
    "encode_codes",
    "encode_prior_payload",
    "prior_fingerprint",
    "probabilities_from_logits",
]

#: Method parameters of a `.vqz` method-2 stream (20 bytes, little-endian):
#: 8-byte prior fingerprint, class label (uint16, `NO_LABEL` for an
#: unconditional prior), tile height and width (uint16), tiles per batch
#: (uint16) and the CRC32 of the code map (uint32, int32 codes in C order).
PARAMS = struct.Struct("<8sHHHHI")
NO_LABEL = 0xFFFF
#: Tiles that go through the prior together in a method-2 stream: bounds the
#: memory of one prior call (64 tiles of 8 x 8 codes: 4,096 positions).
DEFAULT_TILES_PER_BATCH = 64
_UINT16_MAX = 0xFFFF
_FINGERPRINT_SIZE = 8
_CRC = struct.Struct("<I")
# One traced logits function per prior (weak keys: dies with the prior).
_LOGITS_FUNCTIONS = weakref.WeakKeyDictionary()


class PriorCodingError(ValueError):
    """A payload cannot be decoded with this prior, or bad arguments to code one."""


# ----------------------------------------------------------------------------
# The shared, deterministic probability model


def probabilities_from_logits(logits):
    """float32 logits `(n, K)` -> float64 probabilities `(n, K)`, deterministically.

    Softmax in float64 after subtracting the row maximum. Encoder and decoder
    call this on arrays of the same shape, so NumPy's reductions run in the
    same order and the tables are bit-identical.
    """
    x = np.array(logits, dtype=np.float64, order="C")
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def _logits_function(prior):
    """`codes (N, H, W) int32, labels -> float32 logits (N, H, W, K)` as NumPy."""
    import keras
    import tensorflow as tf

    if not isinstance(prior, keras.Model):
        # e.g. `UnigramPrior`: plain NumPy-backed logits, already deterministic.
        return lambda codes, labels: np.asarray(prior.logits(codes, labels), np.float32)
    function = _LOGITS_FUNCTIONS.get(prior)
    if function is None:

        @tf.function(autograph=False)
        def traced(codes, labels):
            return tf.cast(prior(codes, labels, training=False), tf.float32)

        def function(codes, labels):
            with tf.device("/CPU:0"):
                labels = None if labels is None else tf.constant(labels, tf.int32)
                return traced(tf.constant(codes, tf.int32), labels).numpy()

        _LOGITS_FUNCTIONS[prior] = function
    return function


def _check_prior(prior):
    for name in ("num_codes", "num_classes", "logits"):
        if not hasattr(prior, name):
            raise TypeError(
                "`prior` must be an autoregressive prior (GatedPixelCNN, TransformerPrior, "
                f"UnigramPrior); received {type(prior).__name__} without `{name}`."
            )


def _check_map_shape(prior, map_shape):
    if not isinstance(map_shape, (tuple, list)) or len(map_shape) not in (2, 3) or any(
        isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in map_shape
    ):
        raise PriorCodingError(
            f"`map_shape` must be (H, W) or (N, H, W) with positive ints; received {map_shape!r}."
        )
    expected = getattr(prior, "map_shape", None)
    if expected is not None and tuple(map_shape[-2:]) != tuple(expected):
        raise PriorCodingError(
            f"this prior codes maps of size {tuple(expected)}; received map_shape {tuple(map_shape)}."
        )
    return tuple(int(s) for s in map_shape)


def _check_codes(prior, codes):
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise PriorCodingError(f"`codes` must be integers; received dtype {codes.dtype}.")
    _check_map_shape(prior, codes.shape)
    if codes.min() < 0 or codes.max() >= prior.num_codes:
        raise PriorCodingError(
            f"`codes` must be in [0, {prior.num_codes}); received values in "
            f"[{codes.min()}, {codes.max()}]."
        )
    return codes.astype(np.int32)


def _check_labels(prior, labels, batch, single):
    if prior.num_classes == 0:
        if labels is not None:
            raise PriorCodingError("this prior is unconditional (num_classes=0); expected labels=None.")
        return None
    if labels is None:
        raise PriorCodingError(
            f"this prior is class-conditional (num_classes={prior.num_classes}); pass the "
            "label(s) the codes were coded with."
        )
    labels = np.asarray(labels)
    if single and labels.ndim == 0:
        labels = labels[None]
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (batch,):
        raise PriorCodingError(
            f"`labels` must be {'an int or ' if single else ''}integers of shape ({batch},); "
            f"received {labels.dtype} of shape {labels.shape}."
        )
    if labels.min() < 0 or labels.max() >= prior.num_classes:
        raise PriorCodingError(
            f"`labels` must be in [0, {prior.num_classes}); received values in "
            f"[{labels.min()}, {labels.max()}]."
        )
    return labels.astype(np.int32)


def _categorical():
    import constriction

    return constriction.stream.model.Categorical(perfect=False)


# ----------------------------------------------------------------------------
# The coding core: batches of maps, some positions possibly padding


def _coded_mask(extents, row, col):
    """Which maps of a batch code position `(row, col)` (the others pad it)."""
    if extents is None:
        return None
    heights, widths = extents
    return (row < heights) & (col < widths)


def _push_batch(coder, prior, batch, labels, extents=None):
    """Pushes one batch of maps `(n, H, W)` onto `coder` so it pops in decode order.

    Positions pop in raster order, at each position the coded maps of the
    batch in index order: the order in which `_pop_batch` can compute them.
    `extents` (`(heights, widths)`, ints `(n,)`) marks the real part of each
    map; the rest is edge padding (`_pad_value`), never coded. Batches must be
    pushed in REVERSE decode order (the coder is a stack).
    """
    logits = _logits_function(prior)(batch, labels)
    n, height, width = batch.shape
    symbols, tables = [], []
    for t in range(height * width):
        row, col = divmod(t, width)
        coded = _coded_mask(extents, row, col)
        rows = slice(None) if coded is None else coded
        if coded is not None and not coded.any():
            continue
        symbols.append(batch[rows, row, col])
        # Same (n_coded, K) array the decoder builds: bit-identical tables.
        tables.append(probabilities_from_logits(logits[rows, row, col]))
    coder.encode_reverse(np.concatenate(symbols), _categorical(), np.concatenate(tables))


def _pop_batch(coder, prior, shape, labels, extents=None):
    """Inverse of `_push_batch`: pops one batch of maps of `shape` `(n, H, W)`."""
    logits_of = _logits_function(prior)
    n, height, width = shape
    codes = np.zeros(shape, np.int32)
    family = _categorical()
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
        table = probabilities_from_logits(logits_of(codes, labels)[rows, row, col])
        codes[rows, row, col] = coder.decode(family, table)
    return codes


def _new_coder(words=None):
    import constriction

    return constriction.stream.stack.AnsCoder() if words is None else constriction.stream.stack.AnsCoder(words)


def _words_of(payload):
    if len(payload) % 4:
        raise PriorCodingError(
            f"corrupt payload: the coded part is {len(payload)} bytes, expected a multiple of 4."
        )
    return np.frombuffer(payload, dtype="<u4").astype(np.uint32)


def _decoding(payload, pop):
    """Runs `pop(coder)` on the payload's words; ANS failures and leftover words raise `PriorCodingError`."""
    words = _words_of(payload)
    try:
        coder = _new_coder(words)
        codes = pop(coder)
    except (ValueError, RuntimeError, KeyError, AssertionError) as error:
        raise PriorCodingError(f"corrupt payload: the ANS decoder failed ({error}).") from None
    if not coder.is_empty():
        raise PriorCodingError(
            f"corrupt payload: {coder.num_words()} words left after decoding {codes.size} codes."
        )
    return codes


# ----------------------------------------------------------------------------
# Encoding and decoding whole maps


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
    _check_prior(prior)
    codes = _check_codes(prior, codes)
    single = codes.ndim == 2
    batch = codes[None] if single else codes
    labels = _check_labels(prior, labels, batch.shape[0], single)
    coder = _new_coder()
    _push_batch(coder, prior, batch, labels)
    payload = coder.get_compressed().astype("<u4").tobytes()
    if checksum:
        payload += _CRC.pack(_crc(batch))
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
    _check_prior(prior)
    map_shape = _check_map_shape(prior, map_shape)
    single = len(map_shape) == 2
    shape = (1,) + map_shape if single else map_shape
    labels = _check_labels(prior, labels, shape[0], single)
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise PriorCodingError(f"`payload` must be bytes; received {type(payload).__name__}.")
    payload = bytes(payload)
    stored_crc = None
    if checksum:
        if len(payload) < _CRC.size:
            raise PriorCodingError(f"truncated payload: {len(payload)} bytes, expected at least {_CRC.size}.")
        (stored_crc,) = _CRC.unpack(payload[-_CRC.size:])
        payload = payload[: -_CRC.size]
    codes = _decoding(payload, lambda coder: _pop_batch(coder, prior, shape, labels))
    if stored_crc is not None and stored_crc != _crc(codes):
        raise PriorCodingError(
            "corrupt payload or another prior: the decoded codes fail the CRC32 check "
            f"(stored {stored_crc:#010x}, decoded {_crc(codes):#010x})."
        )
    return codes[0] if single else codes


def _crc(codes):
    return zlib.crc32(np.ascontiguousarray(codes, dtype="<i4").tobytes())


# ----------------------------------------------------------------------------
# `.vqz` method 2 ("prior"): one map of any size, coded in tiles


def prior_fingerprint(prior):
    """8-byte BLAKE2b of the prior's class, config and weights.

    Stored in a method-2 stream so that a decoder holding another prior (or
    other weights) refuses the stream instead of decoding garbage.
    """
    import keras

    digest = hashlib.blake2b(digest_size=_FINGERPRINT_SIZE)
    digest.update(type(prior).__name__.encode())
    if isinstance(prior, keras.Model):
        digest.update(json.dumps(prior.get_config(), sort_keys=True, default=str).encode())
        for weight in prior.weights:
            digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    else:
        digest.update(np.ascontiguousarray(prior.counts).tobytes())
        digest.update(struct.pack("<d", prior.alpha))
    return digest.digest()


def default_tile(prior, code_shape):
    """The default tile of a method-2 stream: the prior's `map_shape`, else the whole map."""
    expected = getattr(prior, "map_shape", None)
    return tuple(int(s) for s in (expected if expected is not None else code_shape))


def _check_tiling(prior, tile, tiles_per_batch, code_shape):
    if (not isinstance(tile, (tuple, list)) or len(tile) != 2 or any(
            isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 1 <= s <= _UINT16_MAX for s in tile)):
        raise PriorCodingError(f"`tile` must be (height, width) with ints in [1, {_UINT16_MAX}]; received {tile!r}.")
    if (isinstance(tiles_per_batch, bool) or not isinstance(tiles_per_batch, (int, np.integer))
            or not 1 <= tiles_per_batch <= _UINT16_MAX):
        raise PriorCodingError(f"`tiles_per_batch` must be an int in [1, {_UINT16_MAX}]; received {tiles_per_batch!r}.")
    tile = (int(tile[0]), int(tile[1]))
    _check_map_shape(prior, (1,) + tile)
    # A prior with a fixed map size may pad a small map up to it; any other
    # tile is at most the map, which bounds the decoder's memory by the map's.
    if getattr(prior, "map_shape", None) is None and (tile[0] > code_shape[0] or tile[1] > code_shape[1]):
        raise PriorCodingError(f"tile {tile} is larger than the code map {tuple(code_shape)}.")
    return tile, int(tiles_per_batch)


def _tile_grid(code_shape, tile):
    """Tile origins in raster order and each tile's real extent `(heights, widths)`."""
    (height, width), (tile_h, tile_w) = code_shape, tile
    origins = [(top, left) for top in range(0, height, tile_h) for left in range(0, width, tile_w)]
    heights = np.array([min(tile_h, height - top) for top, _ in origins], np.int64)
    widths = np.array([min(tile_w, width - left) for _, left in origins], np.int64)
    return origins, heights, widths


def _batches(count, tiles_per_batch):
    return [slice(start, min(start + tiles_per_batch, count)) for start in range(0, count, tiles_per_batch)]


def encode_prior_payload(prior, codes, label=None, *, tile=None, tiles_per_batch=DEFAULT_TILES_PER_BATCH):
    """Method parameters and payload of a `.vqz` method-2 ("prior") stream.

    The map is cut into tiles of `tile` codes in raster order; tiles at the
    right and bottom edges are edge-padded to the full tile size, and the
    padding is neither coded nor charged (the decoder copies it from the
    nearest decoded code). Groups of `tiles_per_batch` tiles run through the
    prior together, one prior call per tile position when decoding, so a
    whole photo decodes in `tile_h * tile_w` calls per group.

    Args:
        prior: the prior.
        codes: integer code map `(h, w)`.
        label: int class id for a conditional prior, else None.
        tile: `(tile_h, tile_w)`; defaults to the prior's `map_shape` (a
            prior with a fixed map size codes exactly maps of that size), or
            the whole map for a prior without one (whose tiles may not be
            larger than the map).
        tiles_per_batch: tiles per prior call. Defaults to
            `DEFAULT_TILES_PER_BATCH` (64).

    Returns:
        `(params, payload)`: `params` is `PARAMS.pack(fingerprint, label,
        tile_h, tile_w, tiles_per_batch, crc32 of the codes)` (20 bytes;
        label `NO_LABEL` = 0xFFFF when unconditional), `payload` the ANS
        words, little-endian uint32.

    Raises:
        PriorCodingError: bad codes, label or tiling (e.g. a tile other than
            the prior's map size).

    Example:

    >>> params, payload = encode_prior_payload(prior, codes)   # codes (40, 60)
    >>> np.array_equal(decode_prior_payload(prior, params, payload, (40, 60)), codes)
    True
    """
    _check_prior(prior)
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.size == 0:
        raise PriorCodingError(f"a .vqz stream holds one code map (h, w); received shape {codes.shape}.")
    if label is not None and (isinstance(label, bool) or not isinstance(label, (int, np.integer))
                              or not 0 <= label < NO_LABEL):
        raise PriorCodingError(f"`label` must be an int in [0, {NO_LABEL}); received {label!r}.")
    tile, tiles_per_batch = _check_tiling(prior, default_tile(prior, codes.shape) if tile is None else tile,
                                          tiles_per_batch, codes.shape)
    padded_shape = tuple(-(-size // side) * side for size, side in zip(codes.shape, tile))
    if not np.issubdtype(codes.dtype, np.integer):
        raise PriorCodingError(f"`codes` must be integers; received dtype {codes.dtype}.")
    if codes.min() < 0 or codes.max() >= prior.num_codes:
        raise PriorCodingError(f"`codes` must be in [0, {prior.num_codes}); received values in "
                               f"[{codes.min()}, {codes.max()}].")
    padded = np.pad(codes.astype(np.int32), [(0, p - s) for p, s in zip(padded_shape, codes.shape)], mode="edge")
    origins, heights, widths = _tile_grid(codes.shape, tile)
    tiles = np.stack([padded[top:top + tile[0], left:left + tile[1]] for top, left in origins])
    labels = _check_labels(prior, label, 1, True)
    coder = _new_coder()
    for batch in reversed(_batches(len(tiles), tiles_per_batch)):
        batch_labels = None if labels is None else np.repeat(labels, batch.stop - batch.start)
        _push_batch(coder, prior, tiles[batch], batch_labels, (heights[batch], widths[batch]))
    payload = coder.get_compressed().astype("<u4").tobytes()
    params = PARAMS.pack(prior_fingerprint(prior), NO_LABEL if label is None else int(label), *tile,
                         tiles_per_batch, _crc(codes))
    return params, payload


def decode_prior_payload(prior, params, payload, code_shape):
    """Inverse of `encode_prior_payload`: `(params, payload)` -> codes `(h, w)`.

    Raises:
        PriorCodingError: malformed parameters, a stream made with another
            prior, a corrupt payload, or decoded codes that fail the stored
            CRC32 (the prior computed other probabilities than when coding:
            another machine or software stack, see the module docstring).
    """
    _check_prior(prior)
    if len(params) != PARAMS.size:
        raise PriorCodingError(
            f"method-2 parameters must be {PARAMS.size} bytes (see PARAMS); received {len(params)}."
        )
    fingerprint, label, tile_h, tile_w, tiles_per_batch, stored_crc = PARAMS.unpack(bytes(params))
    if fingerprint != prior_fingerprint(prior):
        raise PriorCodingError(
            f"the stream was coded with prior {fingerprint.hex()}, but this prior is "
            f"{prior_fingerprint(prior).hex()}."
        )
    code_shape = tuple(code_shape)
    if len(code_shape) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
                                   for s in code_shape):
        raise PriorCodingError(f"`code_shape` must be (h, w) with positive ints; received {code_shape!r}.")
    tile, tiles_per_batch = _check_tiling(prior, (tile_h, tile_w), tiles_per_batch, code_shape)
    labels = _check_labels(prior, None if label == NO_LABEL else label, 1, True)
    origins, heights, widths = _tile_grid(code_shape, tile)

    def pop_all(coder):
        tiles = []
        for batch in _batches(len(origins), tiles_per_batch):
            count = batch.stop - batch.start
            batch_labels = None if labels is None else np.repeat(labels, count)
            tiles.append(_pop_batch(coder, prior, (count,) + tile, batch_labels, (heights[batch], widths[batch])))
        return np.concatenate(tiles)

    tiles = _decoding(bytes(payload), pop_all)
    codes = np.empty(code_shape, np.int32)
    for (top, left), tile_codes, h, w in zip(origins, tiles, heights, widths):
        codes[top:top + h, left:left + w] = tile_codes[:h, :w]
    if _crc(codes) != stored_crc:
        raise PriorCodingError(
            f"the decoded codes fail the stream's CRC32 (stored {stored_crc:#010x}, decoded "
            f"{_crc(codes):#010x}): a corrupt payload, or a prior that computes other probabilities than "
            "when coding (another machine or software stack)."
        )
    return codes

"""`.vqz` method 2 ("prior"): one code map of any size, coded in tiles with a prior.

The method parameters (`PARAMS`) carry the prior's fingerprint and the
CRC32 of the codes beside the tiling: the stream's own CRC covers the
bytes, the codes' CRC catches a decoder whose prior computes other
probabilities. The map is cut into tiles (by default the prior's
`map_shape`, the map size it was trained on) that are coded independently,
in batches of `tiles_per_batch` tiles per prior call: a decoder then needs
`tile_h * tile_w` prior calls per batch instead of one per code of the
whole map, and a prior with a fixed map size (the Transformer's position
embeddings) still codes any map. Tiles at the right and bottom edges are
edge-padded; padding is not coded. The payload is the ANS words alone.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from vqvae_tf.codec.entropy import AnsEncoder
from vqvae_tf.codec.prior_coding import quantized
from vqvae_tf.codec.prior_coding.maps import codes_crc, decode_payload, pop_batch, push_batch
from vqvae_tf.codec.prior_coding.probabilities import (
    PriorCodingError,
    check_code_values,
    check_integers,
    check_labels,
    check_map_shape,
    check_prior,
    is_shape,
)
from vqvae_tf.utils import fingerprint
from vqvae_tf.utils.checks import check_int

__all__ = [
    "DEFAULT_TILES_PER_BATCH",
    "NO_LABEL",
    "PARAMS",
    "decode_prior_payload",
    "default_tile",
    "encode_prior_payload",
    "prior_fingerprint",
]

#: Method parameters of a `.vqz` method-2 stream (20 bytes, little-endian):
#: 8-byte prior fingerprint, class label (uint16, `NO_LABEL` for an
#: unconditional prior), tile height and width (uint16), tiles per batch
#: (uint16) and the CRC32 of the code map (uint32, int32 codes in C order).
PARAMS = struct.Struct("<8sHHHHI")
NO_LABEL = 0xFFFF
#: Tiles that go through the prior together in a method-2 stream: bounds the
#: memory of one prior call (256 tiles of 8 x 8 codes; a 768x512 photo has 96).
DEFAULT_TILES_PER_BATCH = 256
_UINT16_MAX = 0xFFFF
_FINGERPRINT_SIZE = 8
#: The probabilities of vqvae_tf 0.2's prior streams: float tables straight
#: from the Keras prior's logits, no grid flags. Decoded (never written) so
#: that streams made before the grid tables still open, with the Keras prior
#: that made them (TensorFlow); hashing the empty scheme gives their fingerprint.
LEGACY_SCHEME = b""


def prior_fingerprint(prior, *, scheme=quantized.SCHEME):
    """8 bytes identifying the prior and the probability scheme (`quantized.SCHEME`).

    BLAKE2b of the scheme, the prior's class, config and weights. Stored in a
    method-2 stream so that a decoder holding another prior (or other
    weights, or an older scheme) refuses the stream instead of decoding
    garbage. A `LitePrior` carries the fingerprint of the Keras prior it was
    exported from (`prior.json`), so either side may be Keras or LiteRT.
    `scheme=LEGACY_SCHEME` gives the fingerprint that vqvae_tf 0.2 wrote
    (no scheme hashed), which only a Keras prior can compute.
    """
    if hasattr(prior, "fingerprint"):
        if prior.fingerprint is None:
            raise PriorCodingError(f"{prior!r} carries no fingerprint (its prior.json's); it cannot code streams.")
        return bytes(prior.fingerprint) if scheme == quantized.SCHEME else None
    import keras

    digest = hashlib.blake2b(digest_size=_FINGERPRINT_SIZE)
    digest.update(scheme)
    digest.update(type(prior).__name__.encode())
    if isinstance(prior, keras.Model):
        fingerprint.update_with_model(digest, prior)
    else:
        digest.update(np.ascontiguousarray(prior.counts).tobytes())
        digest.update(struct.pack("<d", prior.alpha))
    return digest.digest()


def default_tile(prior, code_shape):
    """The default tile of a method-2 stream: the prior's `map_shape`, else the whole map."""
    expected = getattr(prior, "map_shape", None)
    return tuple(int(s) for s in (expected if expected is not None else code_shape))


def _check_tiling(prior, tile, tiles_per_batch, code_shape):
    if not is_shape(tile, (2,)) or max(tile) > _UINT16_MAX:
        raise PriorCodingError(f"`tile` must be (height, width) with ints in [1, {_UINT16_MAX}]; received {tile!r}.")
    tiles_per_batch = check_int("tiles_per_batch", tiles_per_batch, 1, _UINT16_MAX, error=PriorCodingError)
    tile = (int(tile[0]), int(tile[1]))
    check_map_shape(prior, (1,) + tile)
    # A prior with a fixed map size may pad a small map up to it; any other
    # tile is at most the map, which bounds the decoder's memory by the map's.
    if getattr(prior, "map_shape", None) is None and (tile[0] > code_shape[0] or tile[1] > code_shape[1]):
        raise PriorCodingError(f"tile {tile} is larger than the code map {tuple(code_shape)}.")
    return tile, tiles_per_batch


def _tile_grid(code_shape, tile):
    """Tile origins in raster order and each tile's real extent `(heights, widths)`."""
    (height, width), (tile_h, tile_w) = code_shape, tile
    origins = [(top, left) for top in range(0, height, tile_h) for left in range(0, width, tile_w)]
    heights = np.array([min(tile_h, height - top) for top, _ in origins], np.int64)
    widths = np.array([min(tile_w, width - left) for _, left in origins], np.int64)
    return origins, heights, widths


def _batches(count, tiles_per_batch):
    return [slice(start, min(start + tiles_per_batch, count)) for start in range(0, count, tiles_per_batch)]


def _repeat(labels, batch):
    """The labels of a batch of tiles of one map: its label repeated, or None."""
    return None if labels is None else np.repeat(labels, batch.stop - batch.start)


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
            `DEFAULT_TILES_PER_BATCH` (256).

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
    check_prior(prior)
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.size == 0:
        raise PriorCodingError(f"a .vqz stream holds one code map (h, w); received shape {codes.shape}.")
    if label is not None:
        check_int("label", label, 0, NO_LABEL - 1, error=PriorCodingError)
    tile, tiles_per_batch = _check_tiling(
        prior, default_tile(prior, codes.shape) if tile is None else tile, tiles_per_batch, codes.shape
    )
    check_integers(codes)
    check_code_values(prior, codes)
    padded_shape = tuple(-(-size // side) * side for size, side in zip(codes.shape, tile))
    padded = np.pad(codes.astype(np.int32), [(0, p - s) for p, s in zip(padded_shape, codes.shape)], mode="edge")
    origins, heights, widths = _tile_grid(codes.shape, tile)
    tiles = np.stack([padded[top : top + tile[0], left : left + tile[1]] for top, left in origins])
    labels = check_labels(prior, label, 1, True)
    encoder = AnsEncoder()
    for batch in reversed(_batches(len(tiles), tiles_per_batch)):
        push_batch(encoder, prior, tiles[batch], _repeat(labels, batch), (heights[batch], widths[batch]))
    params = PARAMS.pack(
        prior_fingerprint(prior), NO_LABEL if label is None else int(label), *tile, tiles_per_batch, codes_crc(codes)
    )
    return params, encoder.payload()


def _unpack_params(prior, params):
    """`(scheme, label, tile_h, tile_w, tiles_per_batch, stored_crc)`, if the stream was coded with `prior`."""
    if len(params) != PARAMS.size:
        raise PriorCodingError(f"method-2 parameters must be {PARAMS.size} bytes (see PARAMS); received {len(params)}.")
    stored_fingerprint, *fields = PARAMS.unpack(bytes(params))
    if stored_fingerprint == prior_fingerprint(prior):
        return (quantized.SCHEME, *fields)
    if stored_fingerprint == prior_fingerprint(prior, scheme=LEGACY_SCHEME):
        return (LEGACY_SCHEME, *fields)
    raise PriorCodingError(
        f"the stream was coded with prior {stored_fingerprint.hex()}, but this prior is "
        f"{prior_fingerprint(prior).hex()}."
    )


def decode_prior_payload(prior, params, payload, code_shape):
    """Inverse of `encode_prior_payload`: `(params, payload)` -> codes `(h, w)`.

    Raises:
        PriorCodingError: malformed parameters, a stream made with another
            prior, a corrupt payload, or decoded codes that fail the stored
            CRC32 (the prior computed other probabilities than when coding:
            another machine or software stack, see `vqvae_tf.codec.prior_coding`).
    """
    check_prior(prior)
    scheme, label, tile_h, tile_w, tiles_per_batch, stored_crc = _unpack_params(prior, params)
    code_shape = tuple(code_shape)
    if not is_shape(code_shape, (2,)):
        raise PriorCodingError(f"`code_shape` must be (h, w) with positive ints; received {code_shape!r}.")
    tile, tiles_per_batch = _check_tiling(prior, (tile_h, tile_w), tiles_per_batch, code_shape)
    labels = check_labels(prior, None if label == NO_LABEL else label, 1, True)
    origins, heights, widths = _tile_grid(code_shape, tile)

    def pop_all(decoder):
        tiles = []
        for batch in _batches(len(origins), tiles_per_batch):
            shape = (batch.stop - batch.start,) + tile
            extents = (heights[batch], widths[batch])
            tiles.append(pop_batch(decoder, prior, shape, _repeat(labels, batch), extents, scheme=scheme))
        return np.concatenate(tiles)

    tiles = decode_payload(bytes(payload), pop_all)
    codes = np.empty(code_shape, np.int32)
    for (top, left), tile_codes, h, w in zip(origins, tiles, heights, widths):
        codes[top : top + h, left : left + w] = tile_codes[:h, :w]
    if codes_crc(codes) != stored_crc:
        raise PriorCodingError(
            f"the decoded codes fail the stream's CRC32 (stored {stored_crc:#010x}, decoded "
            f"{codes_crc(codes):#010x}): a corrupt payload, or a prior that computes other probabilities than "
            "when coding (another machine or software stack)."
        )
    return codes

"""Bounded-memory tiling of a convolutional encoder and decoder over big images.

A 4000 x 3000 photo run through the network in one call needs several
gigabytes of activations (128 channels at half resolution alone is 3 GB in
float32). The codec therefore cuts the (padded) image into square tiles of
`tile` pixels, runs each tile with a margin (`halo`) of its neighbours
around it, keeps only the tile's own part of the result and stitches those
parts together.

Why a halo and not plain tiles: every output of a convolutional network
depends on a window of inputs (the receptive field: about 70 pixels for the
paper's encoder at 8x). Without context, the codes and pixels along tile
borders come out different from a whole-image run, visible as seams. With a
halo at least half the receptive field wide, a tile sees everything its own
outputs depend on, so tiling reproduces the whole-image result (up to float
summation order); at the image border, the tile and the whole image see the
same zero padding. `bench/codec_rd.py` and the tests measure the difference.

Memory is bounded by one tile plus its halo, whatever the image size; the
price is the recomputed halo (with the defaults, 256-pixel tiles and a
6-code halo at 8x: (44/32)^2 = 1.9x the work of one whole-image call).

Everything here is NumPy: the callers pass the model as a function.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pad_to_multiple", "spans", "encode_tiled", "decode_tiled", "to_uint8"]


def pad_to_multiple(image: np.ndarray, factor: int) -> np.ndarray:
    """Edge-pads an `(H, W, C)` image so H and W are multiples of `factor`.

    Edge (replicate) padding keeps the padded border close to the image, so
    it costs few bits and does not bleed dark borders into the kept pixels.
    """
    height, width = image.shape[:2]
    pad_h, pad_w = -height % factor, -width % factor
    if not (pad_h or pad_w):
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def spans(length: int, core: int, halo: int) -> list[tuple[int, int, int, int]]:
    """Cuts `[0, length)` into cores of `core` units, each with a `halo` margin.

    Returns:
        A list of `(core_start, core_end, input_start, input_end)`: the part a
        tile keeps and the part it reads (the core widened by `halo` on both
        sides, clipped to `[0, length)`).

    Example:

    >>> spans(10, 4, 1)
    [(0, 4, 0, 5), (4, 8, 3, 9), (8, 10, 7, 10)]
    """
    if length < 1 or core < 1 or halo < 0:
        raise ValueError(f"spans needs length >= 1, core >= 1, halo >= 0; received {length}, {core}, {halo}")
    result = []
    for start in range(0, length, core):
        end = min(start + core, length)
        result.append((start, end, max(0, start - halo), min(length, end + halo)))
    return result


def encode_tiled(encode, image: np.ndarray, factor: int, tile: int, halo: int) -> np.ndarray:
    """Runs `encode` tile by tile over a padded image and stitches the codes.

    Args:
        encode: function from an `(h, w, C)` image (h, w multiples of
            `factor`) to its code map `(h / factor, w / factor, ...)`.
        image: `(H, W, C)` image with H and W multiples of `factor`.
        factor: the encoder's downsampling factor.
        tile: core tile side in code positions.
        halo: margin in code positions read around each core.

    Returns:
        The code map `(H / factor, W / factor, ...)`.
    """
    rows, cols = image.shape[0] // factor, image.shape[1] // factor
    codes = None
    for r0, r1, ri0, ri1 in spans(rows, tile, halo):
        for c0, c1, ci0, ci1 in spans(cols, tile, halo):
            part = encode(image[ri0 * factor : ri1 * factor, ci0 * factor : ci1 * factor])
            if codes is None:
                codes = np.empty((rows, cols) + part.shape[2:], dtype=part.dtype)
            codes[r0:r1, c0:c1] = part[r0 - ri0 : r1 - ri0, c0 - ci0 : c1 - ci0]
    return codes


def decode_tiled(decode, codes: np.ndarray, factor: int, channels: int, tile: int, halo: int) -> np.ndarray:
    """Runs `decode` tile by tile over a code map; returns a uint8 image.

    Args:
        decode: function from a code map `(h, w, ...)` to a float image
            `(h * factor, w * factor, channels)`, nominally in [0, 1].
        codes: the code map `(h, w, ...)`.
        factor: the decoder's upsampling factor.
        channels: image channels the decoder produces.
        tile: core tile side in code positions.
        halo: margin in code positions read around each core.

    Returns:
        uint8 image `(h * factor, w * factor, channels)`. Each tile is turned
        to uint8 at once, so no float copy of the whole image is ever held.
    """
    rows, cols = codes.shape[:2]
    image = np.empty((rows * factor, cols * factor, channels), dtype=np.uint8)
    for r0, r1, ri0, ri1 in spans(rows, tile, halo):
        for c0, c1, ci0, ci1 in spans(cols, tile, halo):
            part = decode(codes[ri0:ri1, ci0:ci1])
            keep = part[(r0 - ri0) * factor : (r1 - ri0) * factor, (c0 - ci0) * factor : (c1 - ci0) * factor]
            image[r0 * factor : r1 * factor, c0 * factor : c1 * factor] = to_uint8(keep)
    return image


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image nominally in [0, 1] to uint8 (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)

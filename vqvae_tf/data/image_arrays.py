"""In-memory image arrays: the checks and the size and channel conversions, before tf.data.

Plain numpy, so a bad array fails clearly and up front, before a pipeline is
built. Image arrays are NHWC, either uint8 in 0..255 or float32 in [0, 1].
`split_indices` is the fixed train/validation split of every source that has
no split of its own (arrays, MNIST with one split, folders).
"""

from __future__ import annotations

import numpy as np

from vqvae_tf.data.errors import DatasetError


def as_image_array(array, what: str = "images") -> np.ndarray:
    """Validates an image array and returns it NHWC, uint8 or float32.

    Args:
        array: (N, H, W) or (N, H, W, C) with C in {1, 3}; uint8 in 0..255 or
            floating point in [0, 1].
        what: how to name the array in error messages.
    """
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3) or 0 in array.shape:
        raise DatasetError(
            f"{what}: expected a non-empty array of shape (N, H, W) or "
            f"(N, H, W, C) with C in {{1, 3}}, got shape {array.shape}"
        )
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(np.min(array)), float(np.max(array))
        if not (0.0 <= low and high <= 1.0):  # also rejects NaN
            raise DatasetError(f"{what}: float images must lie in [0, 1], got values in [{low}, {high}]")
        return array.astype(np.float32, copy=False)
    raise DatasetError(
        f"{what}: expected dtype uint8 (0..255) or float in [0, 1], got "
        f"{array.dtype} (convert with .astype(np.uint8) if it holds 0..255)"
    )


def as_label_array(labels, num_images: int, what: str = "labels") -> np.ndarray:
    """Validates integer class labels, one per image; returns int32."""
    labels = np.asarray(labels)
    if labels.shape != (num_images,) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"{what}: expected {num_images} integer labels of shape "
            f"({num_images},), got shape {labels.shape} dtype {labels.dtype}"
        )
    if num_images and labels.min() < 0:
        raise DatasetError(f"{what}: labels must be >= 0, got minimum {labels.min()}")
    return labels.astype(np.int32)


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """NHWC images with 1 or 3 channels -> `channels` (repeat gray / luminance)."""
    have = images.shape[-1]
    if have == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    # ITU-R BT.601 luma, the weights of tf.image.rgb_to_grayscale.
    gray = images.astype(np.float32) @ np.array([0.2989, 0.5870, 0.1140], np.float32)
    gray = gray[..., None]
    return np.round(gray).astype(np.uint8) if images.dtype == np.uint8 else gray


def fit_to_size(images: np.ndarray, size: int) -> np.ndarray:
    """Makes images at least `size` pixels high and wide, keeping the pixels.

    Images smaller than `size` are first upscaled by the largest integer
    factor that fits (nearest neighbour, so 8x8 digits become 32x32), then
    zero-padded equally on both sides (MNIST 28x28 -> 32x32 gets 2 pixels of
    black border). Larger dimensions are left alone, for cropping later.
    """
    n, h, w, c = images.shape
    if h >= size and w >= size:
        return images
    factor = max(1, min(size // h, size // w))
    if factor > 1:
        images = np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)
        h, w = h * factor, w * factor
    pad_h, pad_w = max(0, size - h), max(0, size - w)
    return np.pad(images, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))


def centre_crop(images: np.ndarray, size: int) -> np.ndarray:
    """The central size x size window of NHWC images at least that large."""
    h, w = images.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return images[:, top : top + size, left : left + size]


def tiles(image: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping size x size tiles of one HWC image, row by row.

    The grid is centred: the pixels left over split equally between the
    borders. An image smaller than `size` gives zero tiles.
    """
    h, w, c = image.shape
    rows, cols = h // size, w // size
    top, left = (h - rows * size) // 2, (w - cols * size) // 2
    grid = image[top : top + rows * size, left : left + cols * size]
    grid = grid.reshape(rows, size, cols, size, c).swapaxes(1, 2)
    return grid.reshape(rows * cols, size, size, c)


def split_indices(n: int, validation_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A fixed train/validation split of `n` examples (sorted index arrays).

    A permutation with a fixed seed, independent of any training seed, so the
    held-out examples never change between runs, and a class-sorted file is
    still split evenly.
    """
    n_val = int(round(n * validation_fraction))
    permutation = np.random.default_rng(0).permutation(n)
    return np.sort(permutation[n_val:]), np.sort(permutation[:n_val])

"""PNG grids of images (Pillow, no TensorFlow): the one grid writer of the project.

`image_grid` lays images out row by row; `comparison_grid` is its two-row
case (inputs above their reconstructions, for the training callbacks), and
the prior's sample grids are `save_image_grid`. Every grid is upscaled by
nearest neighbour so that small crops are visible, and written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vqvae_tf.utils.atomic import atomic_output

# Upscaling makes each image at least this many pixels tall.
_MIN_HEIGHT = 64


def image_grid(images, rows, padding=2, scale=None):
    """One uint8 image of `images` in `rows` rows, row-major.

    Args:
        images: float array `(rows * cols, H, W, C)` in [0, 1], C in (1, 3);
            values are clipped to [0, 1], NaN reads as 0.
        rows: int, number of rows; `len(images)` must be a multiple of it.
        padding: pixels of white between images. Defaults to 2.
        scale: integer upscaling (nearest neighbour); None picks one that
            makes each image at least 64 pixels tall.

    Returns:
        uint8 array `(rows * (H * scale + padding) + padding,
        cols * (W * scale + padding) + padding, 3)`.

    Example:

    >>> image_grid(np.random.rand(6, 16, 16, 1), rows=2, scale=1).shape
    (38, 56, 3)
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) % rows:
        raise ValueError(
            f"image_grid expects (rows * cols, H, W, 1 or 3) images; received shape {images.shape} for {rows} rows."
        )
    if scale is None:
        scale = max(1, -(-_MIN_HEIGHT // images.shape[1]))
    images = np.clip(np.nan_to_num(images, nan=0.0), 0.0, 1.0)
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    if images.shape[-1] == 1:
        images = images.repeat(3, axis=-1)
    n, h, w, _ = images.shape
    cols = n // rows
    grid = np.ones((rows * (h + padding) + padding, cols * (w + padding) + padding, 3), np.float32)
    for index, image in enumerate(images):
        r, c = divmod(index, cols)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top : top + h, left : left + w] = image
    return np.round(grid * 255.0).astype(np.uint8)


def write_png(path, grid):
    """Writes a uint8 `(rows, cols, 3)` array as a PNG at `path`, atomically."""
    with atomic_output(path) as temp:
        Image.fromarray(grid).save(temp, format="PNG")
    return path


def save_image_grid(path, images, rows, padding=2, scale=None):
    """Writes `image_grid(images, rows, ...)` as a PNG at `path`, atomically; returns `Path(path)`."""
    return Path(write_png(path, image_grid(images, rows, padding=padding, scale=scale)))


def comparison_grid(inputs, reconstructions, padding=2, scale=None):
    """One uint8 image: inputs on the top row, reconstructions below.

    Args:
        inputs: float array `(N, H, W, C)` in [0, 1], C in (1, 3).
        reconstructions: array of the same shape; values are clipped to
            [0, 1].
        padding: pixels of white between images. Defaults to 2.
        scale: integer upscaling (nearest neighbour) so that small crops are
            visible; None picks one that makes each image at least 64 pixels
            tall.

    Returns:
        uint8 array `(rows, cols, 3)`.

    Example:

    >>> x = np.random.rand(4, 16, 16, 3)
    >>> comparison_grid(x, x, padding=2, scale=1).shape
    (38, 74, 3)
    """
    inputs = np.asarray(inputs, np.float32)
    reconstructions = np.asarray(reconstructions, np.float32)
    if inputs.ndim != 4 or inputs.shape[-1] not in (1, 3):
        raise ValueError(f"comparison_grid expects images (N, H, W, 1 or 3); received shape {inputs.shape}.")
    if reconstructions.shape != inputs.shape:
        raise ValueError(
            f"reconstructions must have the inputs' shape {inputs.shape}; received {reconstructions.shape}."
        )
    return image_grid(np.concatenate([inputs, reconstructions]), rows=2, padding=padding, scale=scale)


def save_comparison_grid(path, inputs, reconstructions, **kwargs):
    """Writes `comparison_grid(...)` as a PNG at `path`, atomically."""
    return write_png(path, comparison_grid(inputs, reconstructions, **kwargs))

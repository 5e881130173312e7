"""PNG grids of images against their reconstructions (Pillow, no TensorFlow)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vqvae_tf.utils.atomic import atomic_output


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
    n, h, w, c = inputs.shape
    if scale is None:
        scale = max(1, -(-64 // h))
    rows = np.stack([inputs, reconstructions])  # (2, N, H, W, C)
    rows = np.clip(np.nan_to_num(rows, nan=0.0), 0.0, 1.0)
    rows = rows.repeat(scale, axis=2).repeat(scale, axis=3)
    if c == 1:
        rows = rows.repeat(3, axis=-1)
    h, w = h * scale, w * scale
    grid = np.ones((2 * h + 3 * padding, n * w + (n + 1) * padding, 3), np.float32)
    for r in range(2):
        for i in range(n):
            top, left = padding + r * (h + padding), padding + i * (w + padding)
            grid[top:top + h, left:left + w] = rows[r, i]
    return np.round(grid * 255.0).astype(np.uint8)


def save_comparison_grid(path, inputs, reconstructions, **kwargs):
    """Writes `comparison_grid(...)` as a PNG at `path`, atomically."""
    grid = comparison_grid(inputs, reconstructions, **kwargs)
    with atomic_output(path) as temp:
        Image.fromarray(grid).save(temp, format="PNG")
    return path

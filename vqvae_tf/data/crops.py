"""Random training crops and their augmentation, a whole batch at a time in TensorFlow.

`gather_crops` cuts a batch of random crops out of images packed in one flat
tensor (the `photos` and in-memory array sources); `augment` applies random
rotations, reflections, hue and saturation to a uint8 batch (`photos`, and
the streamed photo sources with `augment=True`). Both draw from stateless
seeds, so a seed gives the same crops on every run.
"""

import tensorflow as tf


def gather_crops(flat, offsets, heights, widths, index, seed, size, channels, flip):
    """Random size x size crops of images packed in one flat tensor, vectorised.

    Image k occupies flat[offsets[k]:] row-major with shape (heights[k],
    widths[k], channels). One gather for the whole batch costs far less
    than a per-example map, which keeps the input pipeline off the
    critical path of training on a 2-core machine.
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    h, w = tf.gather(heights, index), tf.gather(widths, index)
    n = tf.shape(index, out_type=tf.int64)[0]

    def uniform_below(limit, s):  # integers in [0, limit)
        u = tf.random.stateless_uniform([n], s, dtype=tf.float64)
        return tf.minimum(tf.cast(u * tf.cast(limit, tf.float64), tf.int64), limit - 1)

    top, left = uniform_below(h - size + 1, seeds[0]), uniform_below(w - size + 1, seeds[1])
    steps = tf.range(size, dtype=tf.int64)
    cols = tf.tile(steps[None], [n, 1])
    if flip:
        mirrored = tf.random.stateless_uniform([n], seeds[2]) < 0.5
        cols = tf.where(mirrored[:, None], size - 1 - cols, cols)
    rows = top[:, None] + steps[None]
    cols = left[:, None] + cols
    pixel = rows[:, :, None] * w[:, None, None] + cols[:, None, :]
    start = tf.gather(offsets, index)[:, None, None] // channels
    # Gather whole pixels (C values each), with int32 indices when the
    # images fit: the same crops for a third to a sixth of the index
    # arithmetic, the input pipeline's main cost (docs/benchmarks.md,
    # training throughput).
    pixels = tf.reshape(flat, [-1, channels])
    pixel_index = start + pixel
    if flat.shape[0] is not None and flat.shape[0] // channels < 2**31:
        pixel_index = tf.cast(pixel_index, tf.int32)
    return tf.gather(pixels, pixel_index)


def augment(crops, seed):
    """Random transpose, vertical flip and (RGB) hue and saturation jitter of a uint8 batch.

    `crops` is (B, S, S, C) uint8; each crop draws its own transform from
    `seed`. Hue rotation and saturation scaling keep HSV's value (the
    largest channel of each pixel); gray crops get only the geometric part.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    n = tf.shape(crops)[0]
    transposed = tf.transpose(crops, [0, 2, 1, 3])
    swap = tf.random.stateless_uniform([n], seeds[0]) < 0.5
    crops = tf.where(swap[:, None, None, None], transposed, crops)
    upside = tf.random.stateless_uniform([n], seeds[1]) < 0.5
    crops = tf.where(upside[:, None, None, None], tf.reverse(crops, [1]), crops)
    if crops.shape[-1] != 3:
        return crops
    hsv = tf.image.rgb_to_hsv(tf.cast(crops, tf.float32) / 255.0)
    hue = tf.random.stateless_uniform([n], seeds[2], -0.5, 0.5)
    saturation = tf.random.stateless_uniform([n], seeds[3], 0.6, 1.4)
    h = tf.math.floormod(hsv[..., 0] + hue[:, None, None], 1.0)
    sat = tf.clip_by_value(hsv[..., 1] * saturation[:, None, None], 0.0, 1.0)
    rgb = tf.image.hsv_to_rgb(tf.stack([h, sat, hsv[..., 2]], -1))
    return tf.cast(tf.round(tf.clip_by_value(rgb, 0.0, 1.0) * 255.0), crops.dtype)

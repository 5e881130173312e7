"""Folder images decoded once into memory, and the training crops cut from them.

`folder:DIR` decodes every training file exactly once (`decode_files`, in
parallel threads) into one flat uint8 tensor when the decoded pixels fit in
`CACHE_BYTES`; each training batch is then one vectorised gather
(`crops.gather_crops`), as for the embedded photos, instead of a per-image
decode, shuffle buffer and crop map. Measured in docs/benchmarks.md
(training throughput). Validation crops are small, so they are always
decoded once into arrays (`centre_crops`). Like every library module it
logs and raises, never prints (docs/design.md, Architecture).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os

import numpy as np
import tensorflow as tf

from vqvae_tf.data.bundle import AUTOTUNE, step_seed
from vqvae_tf.data.crops import augment as augment_crops
from vqvae_tf.data.crops import gather_crops

logger = logging.getLogger(__name__)

#: Decoded folder images are cached in memory when they take fewer bytes
#: (1 GiB: the 1,427 training photos of ../shared/data/photos take 0.49 GB).
CACHE_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class DecodedPool:
    """Images packed row-major in one flat uint8 array, with their shapes and labels."""

    flat: np.ndarray
    offsets: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    labels: np.ndarray
    paths: tuple[str, ...]


def _decode_file(path, channels):
    """One image file as uint8 (H, W, channels), with TensorFlow's decoders (as the streamed path)."""
    data = tf.io.read_file(path)
    return tf.io.decode_image(data, channels=channels, expand_animations=False, dtype=tf.uint8).numpy()


def decode_files(files, channels, what):
    """Decodes each `ImageFile` once, in parallel; returns `(arrays, kept files)`.

    Files that fail to decode, or decode to another size than their header
    said, are skipped with one `logging.warning` giving their count and the
    first names (`what` names the folder in it).
    """

    def decode(file):
        try:
            image = _decode_file(file.path, channels)
        except (tf.errors.OpError, ValueError) as error:
            return None, f"{os.path.basename(file.path)} ({type(error).__name__})"
        if image.shape[:2] != (file.height, file.width):
            return None, f"{os.path.basename(file.path)} (decoded {image.shape[1]}x{image.shape[0]})"
        return image, None

    workers = max(1, min(len(files), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(decode, files))
    bad = [error for _, error in results if error]
    if bad:
        logger.warning(
            "skipped %d image file(s) that failed to decode in %s: %s%s",
            len(bad),
            what,
            ", ".join(bad[:5]),
            ", ..." if len(bad) > 5 else "",
        )
    kept = [(image, file) for (image, _), file in zip(results, files) if image is not None]
    return [image for image, _ in kept], [file for _, file in kept]


def decoded_pool(files, channels, what):
    """The `DecodedPool` of `files`, each decoded once (see `decode_files`)."""
    images, kept = decode_files(files, channels, what)
    sizes = np.array([image.size for image in images], np.int64)
    flat = np.empty(int(sizes.sum()), np.uint8)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    for image, offset in zip(images, offsets):
        flat[offset : offset + image.size] = image.ravel()
    return DecodedPool(
        flat=flat,
        offsets=offsets,
        heights=np.array([i.shape[0] for i in images], np.int64),
        widths=np.array([i.shape[1] for i in images], np.int64),
        labels=np.array([f.label for f in kept], np.int32),
        paths=tuple(f.path for f in kept),
    )


def centre_crops(files, channels, size, what):
    """`(uint8 crops (N, size, size, channels), int32 labels, kept files)`: the centre crop of each file."""
    images, kept = decode_files(files, channels, what)
    crops = []
    for image in images:
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        crops.append(image[top : top + size, left : left + size])
    crops = np.stack(crops) if crops else np.zeros((0, size, size, channels), np.uint8)
    return crops, np.array([f.label for f in kept], np.int32), kept


def pool_batches(pool, config, channels):
    """Infinite `(uint8 crops, int32 labels)` batches cut from `pool`.

    Each pass (epoch) visits every image once in a random order drawn from
    `(seed, epoch)`; each visit takes one random crop (and flip) drawn from
    the batch's `step_seed`, so the stream depends on the seed only.
    """
    size, batch, count = config.image_size, config.batch_size, len(pool.paths)
    flat = tf.constant(pool.flat)
    offsets, heights, widths = (tf.constant(a) for a in (pool.offsets, pool.heights, pool.widths))
    labels = tf.constant(pool.labels)
    order_seed = tf.constant([config.seed, 0x5EED], tf.int64)
    flip = True if config.flip is None else config.flip

    def permutation(epoch):
        keys = tf.random.stateless_uniform([count], tf.random.experimental.stateless_fold_in(order_seed, epoch))
        return tf.argsort(keys)

    def make_batch(step):
        visit = step * batch + tf.range(batch, dtype=tf.int64)
        epochs, which = tf.unique(visit // count)
        orders = tf.map_fn(permutation, epochs, fn_output_signature=tf.int32)
        index = tf.gather_nd(orders, tf.stack([tf.cast(which, tf.int64), visit % count], -1))
        crop_seed = step_seed(config, step)
        crops = gather_crops(flat, offsets, heights, widths, index, crop_seed, size, channels, flip)
        if config.augment:
            crops = augment_crops(crops, tf.random.experimental.stateless_fold_in(crop_seed, 7))
        return crops, tf.gather(labels, index)

    return tf.data.Dataset.counter().map(make_batch, num_parallel_calls=AUTOTUNE)

"""`photos`, the default dataset: random crops of the photos bundled with scikit-image and scikit-learn.

Train: random `image_size` crops with horizontal flips from the training
photos, at full and half resolution (half-size copies add edges and texture
at the crop scale; full-size patches of megapixel photos are mostly smooth),
augmented by default (`augment`: rotations, reflections, hue and
saturation). Validation: non-overlapping full-resolution tiles of the whole
photos named in `PHOTOS_VALIDATION`. Gray photos become RGB. Nothing is
downloaded (`vqvae_tf.data.embedded_photos`).
"""

import numpy as np
import tensorflow as tf

from vqvae_tf.data.bundle import (
    AUTOTUNE,
    DatasetBundle,
    finish,
    in_memory_options,
    pixel_variance,
    step_seed,
    validation_from_arrays,
)
from vqvae_tf.data.crops import augment as augment_crops
from vqvae_tf.data.crops import gather_crops
from vqvae_tf.data.embedded_photos import PHOTOS_VALIDATION, load_photo, photo_names
from vqvae_tf.data.errors import DatasetError
from vqvae_tf.data.image_arrays import convert_channels, tiles

# Reduction factors of the training photos (1 = full resolution).
_PHOTO_REDUCTIONS = (1, 2)


def photos_bundle(_, config):
    """The `photos` `DatasetBundle` (see the module docstring)."""
    size = config.image_size
    channels = config.channels or 3
    if config.with_labels:
        raise DatasetError("photos has no labels, but with_labels=True was requested")
    pool = _training_pool(size, channels)
    val_x = np.concatenate([tiles(convert_channels(load_photo(n)[None], channels)[0], size) for n in PHOTOS_VALIDATION])
    train = in_memory_options(finish(_training_batches(pool, config, channels), config, train=True))
    return DatasetBundle(
        train=train,
        validation=validation_from_arrays(val_x, None, config),
        channels=channels,
        image_size=size,
        description=(
            f"photos: random {size}x{size} crops of {len(photo_names('train'))} "
            f"training photos; {len(val_x)} validation tiles of "
            f"{', '.join(PHOTOS_VALIDATION)}"
        ),
        data_variance=pixel_variance(np.concatenate([p.ravel() for p in pool])),
        num_train=len(photo_names("train")),
        num_validation=len(val_x),
    )


def _training_pool(size, channels):
    """The training photos at every reduction at least `size` pixels high and wide."""
    pool = []
    for name in photo_names("train"):
        photo = load_photo(name)
        for factor in _PHOTO_REDUCTIONS:
            image = photo if factor == 1 else _reduce(photo, factor)
            if min(image.shape[:2]) >= size:
                pool.append(convert_channels(image[None], channels)[0])
    if not pool:
        raise DatasetError(f"image_size {size} is larger than every training photo")
    return pool


def _training_batches(pool, config, channels):
    """Infinite batches of `(uint8 crops, -1 labels)` cut from the photos of `pool`."""
    size = config.image_size
    flat = tf.constant(np.concatenate([p.ravel() for p in pool]))
    sizes = np.array([p.size for p in pool], np.int64)
    offsets = tf.constant(np.concatenate([[0], np.cumsum(sizes)[:-1]]), tf.int64)
    heights = tf.constant([p.shape[0] for p in pool], tf.int64)
    widths = tf.constant([p.shape[1] for p in pool], tf.int64)
    # Pick a photo in proportion to its number of crop positions, so every
    # patch of every photo is equally likely.
    positions = (heights - size + 1) * (widths - size + 1)
    logits = tf.math.log(tf.cast(positions, tf.float32))[None]
    flip = True if config.flip is None else config.flip
    augment = True if config.augment is None else config.augment

    def make_batch(step):
        pick_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(step_seed(config, step), 2))
        index = tf.random.stateless_categorical(logits, config.batch_size, pick_seed)[0]
        crops = gather_crops(flat, offsets, heights, widths, index, crop_seed, size, channels, flip)
        if augment:
            crops = augment_crops(crops, tf.random.experimental.stateless_fold_in(crop_seed, 7))
        return crops, tf.fill([config.batch_size], -1)

    return tf.data.Dataset.counter().map(make_batch, num_parallel_calls=AUTOTUNE)


def _reduce(image, factor):
    from PIL import Image

    return np.asarray(Image.fromarray(image).reduce(factor))

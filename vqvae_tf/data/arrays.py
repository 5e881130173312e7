"""Fixed-size images held in memory: `digits`, `npz:FILE`, `npy:FILE` (and MNIST's arrays).

`npz:FILE`: images under key `images` or `x` (labels optional under `labels`
or `y`), or a Keras-style pre-split `x_train`/`x_test` (+ `y_train`/`y_test`).
`npy:FILE`: one image array, no labels. Arrays are (N, H, W) or (N, H, W, C),
uint8 0..255 or float in [0, 1]. `digits` is scikit-learn's 8x8 digits,
values 0..16 scaled to [0, 1].

Images smaller than `image_size` are upscaled by an integer factor then
zero-padded (`image_arrays.fit_to_size`); larger ones are randomly cropped
for training and centre-cropped for validation. Without a split of their
own the arrays are split by `image_arrays.split_indices`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from vqvae_tf.data import image_arrays
from vqvae_tf.data.bundle import (
    AUTOTUNE,
    DatasetBundle,
    finish,
    in_memory_options,
    pixel_variance,
    step_seed,
    validation_from_arrays,
)
from vqvae_tf.data.crops import gather_crops
from vqvae_tf.data.errors import DatasetError


def array_bundle(train_x, train_y, val_x, val_y, config, name, num_classes=None, default_flip=False):
    """Bundle for fixed-size in-memory images (mnist, digits, npz, npy)."""
    size = config.image_size
    if config.with_labels and train_y is None:
        raise DatasetError(f"{name} has no labels, but with_labels=True was requested")
    source_h, source_w, channels = train_x.shape[1:]
    channels = config.channels or channels
    train_x = image_arrays.fit_to_size(image_arrays.convert_channels(train_x, channels), size)
    val_x = image_arrays.fit_to_size(image_arrays.convert_channels(val_x, channels), size)
    val_x = image_arrays.centre_crop(val_x, size)
    n, h, w, _ = train_x.shape
    flip = default_flip if config.flip is None else config.flip
    flat = tf.constant(train_x.reshape(-1))
    offsets = tf.range(n, dtype=tf.int64) * (h * w * channels)
    heights, widths = tf.fill([n], tf.constant(h, tf.int64)), tf.fill([n], tf.constant(w, tf.int64))
    labels = tf.constant(train_y if train_y is not None else np.full(n, -1, np.int32))

    def make_batch(step, index):
        crops = gather_crops(flat, offsets, heights, widths, index, step_seed(config, step), size, channels, flip)
        return crops, tf.gather(labels, index)

    # A full permutation of indices each epoch: exact shuffling at no memory cost.
    train = (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=config.seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(config.batch_size, drop_remainder=True)
        .enumerate()
        .map(make_batch, num_parallel_calls=AUTOTUNE)
    )
    train = in_memory_options(finish(train, config, train=True))
    return DatasetBundle(
        train=train,
        validation=validation_from_arrays(val_x, val_y, config),
        channels=channels,
        image_size=size,
        description=f"{name}: {n} train / {len(val_x)} validation {source_h}x{source_w} "
        f"images as {size}x{size} (upscaled/padded if smaller, cropped if larger)",
        data_variance=pixel_variance(train_x),
        num_train=n,
        num_validation=len(val_x),
        num_classes=num_classes,
    )


def split_arrays(images, labels, config):
    """`(train images, train labels, validation images, validation labels)`; labels may be None."""
    train, val = image_arrays.split_indices(len(images), config.validation_fraction)
    pick = lambda a, i: None if a is None else a[i]
    return images[train], pick(labels, train), images[val], pick(labels, val)


def digits_bundle(_, config):
    """scikit-learn's 8x8 digits, labelled."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    return array_bundle(*split_arrays(images, digits.target.astype(np.int32), config), config, "digits", num_classes=10)


def _load_array_file(path, kind):
    if not Path(path).is_file():
        raise DatasetError(f"{kind} file {path!r} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read {kind} file {path!r}: {e}") from e


def npz_bundle(path, config):
    """The images (and labels) of an `.npz` file, see the module docstring for its keys."""
    with _load_array_file(path, "npz") as data:
        keys = set(data.files)
        if {"x_train", "x_test"} <= keys:
            arrays = [data.get(k) for k in ("x_train", "y_train", "x_test", "y_test")]
        else:
            image_key = next((k for k in ("images", "x") if k in keys), None)
            if image_key is None:
                raise DatasetError(
                    f"npz file {path!r} has keys {sorted(keys)}; expected images "
                    f"under 'images' or 'x', or 'x_train' and 'x_test'"
                )
            label_key = next((k for k in ("labels", "y") if k in keys), None)
            arrays = [data[image_key], data[label_key] if label_key else None]
    return _arrays_bundle(arrays, config, f"npz:{path}")


def npy_bundle(path, config):
    """The images of an `.npy` file, unlabelled."""
    return _arrays_bundle([_load_array_file(path, "npy"), None], config, f"npy:{path}")


def _arrays_bundle(arrays, config, name):
    """Validates [x, y] (split here) or [x_train, y_train, x_val, y_val]."""
    checked = []
    for i in range(0, len(arrays), 2):
        images = image_arrays.as_image_array(arrays[i], f"{name} images")
        labels = arrays[i + 1]
        if labels is not None:
            labels = image_arrays.as_label_array(labels, len(images), f"{name} labels")
        checked += [images, labels]
    if len(checked) == 2:
        checked = list(split_arrays(*checked, config))
    if checked[0].shape[1:] != checked[2].shape[1:]:
        raise DatasetError(
            f"{name}: train images {checked[0].shape[1:]} and validation images {checked[2].shape[1:]} differ in shape"
        )
    num_classes = (
        int(max(checked[1].max(), checked[3].max())) + 1 if checked[1] is not None and checked[3] is not None else None
    )
    if num_classes is None:
        checked[1] = checked[3] = None
    return array_bundle(*checked, config, name, num_classes=num_classes)

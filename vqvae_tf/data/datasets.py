"""tf.data input pipelines: `make_datasets(spec, ...)` -> `DatasetBundle`.

Dataset specs (the strings a `--dataset` flag passes):

- `photos` (default): real photos bundled in scikit-image and scikit-learn,
  nothing downloaded. Train: random `image_size` crops with horizontal flips
  from the training photos, at full and half resolution (half-size copies add
  edges and texture at the crop scale; full-size patches of megapixel photos
  are mostly smooth), augmented by default (`augment`: rotations, reflections,
  hue and saturation). Validation: non-overlapping full-resolution tiles of the
  whole photos named in `PHOTOS_VALIDATION`. Gray photos become RGB.
- `mnist:DIR`: IDX files `<split>-images-idx3-ubyte[.gz]` and
  `<split>-labels-idx1-ubyte[.gz]`. With `train` and `t10k` (or `test`) the
  two are train and validation; with a single split it is divided by
  `validation_fraction` (0.2 turns the 10,000 t10k digits into 8,000 / 2,000).
- `digits`: scikit-learn's 8x8 digits, values 0..16 scaled to [0, 1].
- `folder:DIR`: PNG/JPEG/BMP files found recursively, decoded in the pipeline;
  immediate subfolders are classes (see `image_io.scan_image_folder`, which
  also says how corrupt files are skipped). An image smaller than
  `image_size` raises `DatasetError` naming it. Validation: a centre crop of
  each held-out file.
- `npz:FILE`: images under key `images` or `x` (labels optional under
  `labels` or `y`), or a Keras-style pre-split `x_train`/`x_test` (+
  `y_train`/`y_test`). `npy:FILE`: one image array, no labels. Arrays are
  (N, H, W) or (N, H, W, C), uint8 0..255 or float in [0, 1].
- `tfrecord:GLOB`: tf.train.Examples with the features in
  `TFRECORD_FEATURES` (write them with `write_tfrecords`). Validation is
  the records whose content hashes into `validation_fraction` of the buckets:
  fixed, and independent of file order and sharding.
- `tfds:NAME[:SPLIT]`: a TensorFlow Datasets dataset already prepared in
  `$TFDS_DATA_DIR` (or ~/tensorflow_datasets); never downloads.

Fixed-size images (mnist, digits, arrays) smaller than `image_size` are
upscaled by an integer factor then zero-padded (`image_io.fit_to_size`: MNIST
28 -> 32 is 2 pixels of padding); larger ones are randomly cropped for
training and centre-cropped for validation.

Batches are float32 in [0, 1], NHWC `(batch, image_size, image_size,
channels)`. The train set repeats forever with `drop_remainder=True` (equal
static shards for distribution strategies); validation is finite and
deterministic. The train/validation split never depends on `seed`; `seed`
sets the shuffling, crops and flips.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from vqvae_tf.data import image_io
from vqvae_tf.data.image_io import (PHOTOS_VALIDATION, DatasetError, load_photo,
                               photo_names, read_idx)

__all__ = ["DatasetBundle", "DatasetError", "PHOTOS_VALIDATION", "SCHEMES",
           "TFRECORD_FEATURES", "load_photo", "make_datasets", "photo_names",
           "read_idx", "write_tfrecords"]

AUTOTUNE = tf.data.AUTOTUNE

SCHEMES = ("photos", "mnist", "digits", "folder", "npz", "npy", "tfrecord", "tfds")
# Sources of photographs: random crops, flips and (optionally) augmentation.
_PHOTO_SCHEMES = ("photos", "folder", "tfrecord", "tfds")

#: The tf.train.Example features read by `tfrecord:` and written by
#: `write_tfrecords`. `label` is -1 when absent.
TFRECORD_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),  # PNG bytes
    "label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "channels": tf.io.FixedLenFeature([], tf.int64),
}

# Decoded folder images are cached in memory below this many bytes.
_CACHE_BYTES = 1 << 30
# Streamed sources estimate data_variance from this many training crops.
_VARIANCE_EXAMPLES = 1024
# Reduction factors of the training photos (1 = full resolution).
_PHOTO_REDUCTIONS = (1, 2)


@dataclasses.dataclass(frozen=True)
class DatasetBundle:
    """Train and validation pipelines plus what a model needs to know.

    Attributes:
        train: infinite dataset of float32 batches (B, S, S, C) in [0, 1],
            or `(images, int32 labels)` when made `with_labels`.
        validation: finite, deterministic dataset of the same structure.
        channels: C.
        image_size: S.
        description: one line saying what the data is.
        data_variance: variance of the training pixels in [0, 1] (the VQ-VAE
            reconstruction loss divides by it); estimated from
            `_VARIANCE_EXAMPLES` crops for streamed sources.
        num_train: training examples (photos: training photos), or None when
            unknown without reading everything (tfrecord, tfds).
        num_validation: validation examples, or None when unknown.
        num_classes: number of classes when there are labels, else None.
        class_names: folder class names, else None.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    channels: int
    image_size: int
    description: str
    data_variance: float
    num_train: int | None
    num_validation: int | None
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class _Config:
    image_size: int
    batch_size: int
    channels: int | None
    seed: int
    validation_fraction: float
    shuffle_buffer: int
    with_labels: bool
    deterministic: bool
    validation_drop_remainder: bool
    flip: bool | None
    cache: bool | None
    augment: bool | None


def make_datasets(spec: str = "photos", *, image_size: int, batch_size: int,
                  channels: int | None = None, seed: int = 0,
                  validation_fraction: float = 0.2, shuffle_buffer: int = 10_000,
                  with_labels: bool = False, deterministic: bool = False,
                  validation_drop_remainder: bool = False, flip: bool | None = None,
                  cache: bool | None = None, augment: bool | None = None) -> DatasetBundle:
    """Builds the train and validation pipelines for a dataset spec.

    Args:
        spec: `SCHEME[:ARG]`, see the module docstring; default `"photos"`.
        image_size: side S of the square images, e.g. 32.
        batch_size: examples per batch (the global batch under a strategy).
        channels: 1 or 3 to convert to; None keeps the source's (photos: 3).
        seed: sets shuffling, crops and flips (not the split). Default 0.
        validation_fraction: share held out when the source has no
            validation split of its own. Default 0.2.
        shuffle_buffer: shuffle buffer for streamed sources (in-memory arrays
            are shuffled fully each epoch). Default 10,000.
        with_labels: yield `(images, labels)`; the source must have labels.
        deterministic: train order exactly reproducible for `seed`. Default
            False lets tf.data reorder parallel work: each batch's content
            is still fixed by the seed, only nearby batches may swap.
        validation_drop_remainder: drop the last partial validation batch
            (e.g. for TPUs); then fewer validation examples than
            `batch_size` is an error. Default False.
        flip: random horizontal flips for training; None means yes for
            photos, folder, tfrecord and tfds, no for digit and array data.
        cache: cache decoded folder/tfrecord/tfds images in memory; None
            means only folders whose decoded size is under 1 GiB.
        augment: random transposes and vertical flips of the training
            crops (with `flip`, all 8 rotations and reflections) and, for
            RGB, a random hue rotation and saturation scale (0.6 to 1.4)
            per crop. Photo sources only (photos, folder, tfrecord, tfds).
            None means yes for `photos`, whose 18 training photos are
            mostly gray (the default `train.py` run's validation PSNR went
            from 26.04 to 29.24 dB, README), and no for the others.

    Returns:
        A `DatasetBundle`.

    Raises:
        DatasetError: bad spec, argument, file or array; the message says
            what was received and what was expected.

    Example:

    >>> bundle = make_datasets("digits", image_size=32, batch_size=16)
    >>> images = next(iter(bundle.train))   # (16, 32, 32, 1) float32
    """
    _check_int("image_size", image_size, 1)
    _check_int("batch_size", batch_size, 1)
    _check_int("shuffle_buffer", shuffle_buffer, 1)
    _check_int("seed", seed, 0)
    if channels not in (None, 1, 3):
        raise DatasetError(f"channels must be None, 1 or 3, got {channels!r}")
    if not 0.0 < validation_fraction < 1.0:
        raise DatasetError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    config = _Config(image_size, batch_size, channels, seed, float(validation_fraction),
                     shuffle_buffer, bool(with_labels), bool(deterministic),
                     bool(validation_drop_remainder), flip, cache, augment)
    scheme, _, argument = str(spec).partition(":")
    builders = {"photos": _photos, "mnist": _mnist, "digits": _digits, "folder": _folder,
                "npz": _npz, "npy": _npy, "tfrecord": _tfrecord, "tfds": _tfds}
    if scheme not in builders:
        raise DatasetError(f"unknown dataset scheme {scheme!r} in spec {spec!r}; known "
                           f"schemes: {', '.join(SCHEMES)}")
    if augment and scheme not in _PHOTO_SCHEMES:
        raise DatasetError(f"augment=True applies to photo sources ({', '.join(_PHOTO_SCHEMES)}); "
                           f"received dataset {spec!r}")
    if scheme in ("photos", "digits"):
        if argument:
            raise DatasetError(f"dataset {scheme!r} takes no argument, got {spec!r}")
    elif not argument:
        raise DatasetError(f"dataset spec {spec!r} needs an argument: {scheme}:PATH")
    bundle = builders[scheme](argument, config)
    if bundle.num_validation == 0:
        raise DatasetError(f"{bundle.description}: the validation set is empty")
    if (config.validation_drop_remainder and bundle.num_validation is not None
            and bundle.num_validation < batch_size):
        raise DatasetError(
            f"{bundle.description}: batch_size {batch_size} is larger than the "
            f"{bundle.num_validation} validation examples, so dropping the remainder "
            f"leaves no validation batch")
    return bundle


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DatasetError(f"{name} must be an integer >= {minimum}, got {value!r}")


# ----------------------------------------------------------------------------
# Shared pipeline pieces.

def _to_float(images):
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.cast(images, tf.float32)


def _finish(dataset, config, train):
    """Float conversion, options and prefetch common to every pipeline."""
    if config.with_labels:
        dataset = dataset.map(lambda x, y: (_to_float(x), y), num_parallel_calls=AUTOTUNE)
    else:
        dataset = dataset.map(lambda x, y: _to_float(x), num_parallel_calls=AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = config.deterministic if train else True
    return dataset.prefetch(AUTOTUNE).with_options(options)


def _pixel_variance(images: np.ndarray) -> float:
    """Variance of pixel values in [0, 1], exact and in O(1) memory for uint8."""
    if images.dtype == np.uint8:
        counts = np.bincount(images.ravel(), minlength=256).astype(np.float64)
        values = np.arange(256) / 255.0
        mean = counts @ values / counts.sum()
        return float(counts @ (values - mean) ** 2 / counts.sum())
    return float(np.var(images, dtype=np.float64))


def _estimate_variance(train: tf.data.Dataset, config) -> float:
    total = n = square = 0.0
    for batch in train.take(max(1, -(-_VARIANCE_EXAMPLES // config.batch_size))):
        x = (batch[0] if config.with_labels else batch).numpy().astype(np.float64)
        total, square, n = total + x.sum(), square + (x * x).sum(), n + x.size
    mean = total / n
    return float(max(square / n - mean * mean, 0.0))


def _gather_crops(flat, offsets, heights, widths, index, seed, size, channels, flip):
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
    start = tf.gather(offsets, index)[:, None, None, None]
    flat_index = start + pixel[..., None] * channels + tf.range(channels, dtype=tf.int64)
    return tf.gather(flat, flat_index)


def _validation_from_arrays(images, labels, config):
    """Finite, ordered validation batches from in-memory size x size arrays."""
    if labels is None:
        labels = np.full(len(images), -1, np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    dataset = dataset.batch(config.batch_size, drop_remainder=config.validation_drop_remainder)
    return _finish(dataset, config, train=False)


def _in_memory_options(dataset):
    # The data is a tensor, not files: sharding by file would fail over to
    # DATA with a warning under a multi-worker strategy, so say it up front.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _array_bundle(train_x, train_y, val_x, val_y, config, name, num_classes=None,
                  default_flip=False):
    """Bundle for fixed-size in-memory images (mnist, digits, npz, npy)."""
    size = config.image_size
    if config.with_labels and train_y is None:
        raise DatasetError(f"{name} has no labels, but with_labels=True was requested")
    source_h, source_w, channels = train_x.shape[1:]
    channels = config.channels or channels
    train_x = image_io.fit_to_size(image_io.convert_channels(train_x, channels), size)
    val_x = image_io.fit_to_size(image_io.convert_channels(val_x, channels), size)
    val_x = image_io.centre_crop(val_x, size)
    n, h, w, _ = train_x.shape
    flip = default_flip if config.flip is None else config.flip
    flat = tf.constant(train_x.reshape(-1))
    offsets = tf.range(n, dtype=tf.int64) * (h * w * channels)
    heights, widths = tf.fill([n], tf.constant(h, tf.int64)), tf.fill([n], tf.constant(w, tf.int64))
    labels = tf.constant(train_y if train_y is not None else np.full(n, -1, np.int32))

    def make_batch(step, index):
        seed = tf.stack([tf.constant(config.seed, tf.int64), step])
        crops = _gather_crops(flat, offsets, heights, widths, index, seed, size, channels, flip)
        return crops, tf.gather(labels, index)

    # A full permutation of indices each epoch: exact shuffling at no memory cost.
    train = (tf.data.Dataset.range(n)
             .shuffle(n, seed=config.seed, reshuffle_each_iteration=True)
             .repeat().batch(config.batch_size, drop_remainder=True).enumerate()
             .map(make_batch, num_parallel_calls=AUTOTUNE))
    train = _in_memory_options(_finish(train, config, train=True))
    return DatasetBundle(
        train=train, validation=_validation_from_arrays(val_x, val_y, config),
        channels=channels, image_size=size,
        description=f"{name}: {n} train / {len(val_x)} validation {source_h}x{source_w} "
                    f"images as {size}x{size} (upscaled/padded if smaller, cropped if larger)",
        data_variance=_pixel_variance(train_x), num_train=n, num_validation=len(val_x),
        num_classes=num_classes)


def _split_arrays(images, labels, config):
    train, val = image_io.split_indices(len(images), config.validation_fraction)
    pick = (lambda a, i: None if a is None else a[i])
    return images[train], pick(labels, train), images[val], pick(labels, val)


# ----------------------------------------------------------------------------
# Sources held in memory.

def _photos(_, config):
    size = config.image_size
    channels = config.channels or 3
    if config.with_labels:
        raise DatasetError("photos has no labels, but with_labels=True was requested")
    pool = []
    for name in photo_names("train"):
        photo = load_photo(name)
        for factor in _PHOTO_REDUCTIONS:
            image = photo if factor == 1 else _reduce(photo, factor)
            if min(image.shape[:2]) >= size:
                pool.append(image_io.convert_channels(image[None], channels)[0])
    if not pool:
        raise DatasetError(f"image_size {size} is larger than every training photo")
    val_x = np.concatenate([image_io.tiles(image_io.convert_channels(load_photo(n)[None], channels)[0], size)
                            for n in PHOTOS_VALIDATION])
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
        seed = tf.stack([tf.constant(config.seed, tf.int64), step])
        pick_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        index = tf.random.stateless_categorical(logits, config.batch_size, pick_seed)[0]
        crops = _gather_crops(flat, offsets, heights, widths, index, crop_seed, size,
                              channels, flip)
        if augment:
            crops = _augment(crops, tf.random.experimental.stateless_fold_in(crop_seed, 7))
        return crops, tf.fill([config.batch_size], -1)

    train = tf.data.Dataset.counter().map(make_batch, num_parallel_calls=AUTOTUNE)
    train = _in_memory_options(_finish(train, config, train=True))
    return DatasetBundle(
        train=train, validation=_validation_from_arrays(val_x, None, config),
        channels=channels, image_size=size,
        description=(f"photos: random {size}x{size} crops of {len(photo_names('train'))} "
                     f"training photos; {len(val_x)} validation tiles of "
                     f"{', '.join(PHOTOS_VALIDATION)}"),
        data_variance=_pixel_variance(np.concatenate([p.ravel() for p in pool])),
        num_train=len(photo_names("train")), num_validation=len(val_x))


def _augment(crops, seed):
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


def _reduce(image, factor):
    from PIL import Image

    return np.asarray(Image.fromarray(image).reduce(factor))


def _mnist(directory, config):
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f"MNIST directory {directory!r} does not exist")
    pattern = re.compile(r"(?P<split>.+)-(?P<kind>images|labels)[-.]idx[13]-ubyte(\.gz)?$")
    found = {}
    for path in sorted(root.iterdir()):
        match = pattern.match(path.name)
        if match:
            found.setdefault(match["split"], {}).setdefault(match["kind"], path)
    splits = {s: k for s, k in found.items() if "images" in k}
    if not splits:
        raise DatasetError(f"no IDX image files (<split>-images-idx3-ubyte[.gz]) in {directory!r}")

    def load(split):
        images = read_idx(splits[split]["images"])
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DatasetError(f"{splits[split]['images']}: expected uint8 images of shape "
                               f"(N, H, W), got {images.dtype} {images.shape}")
        if "labels" not in splits[split]:
            return images[..., None], None
        labels = read_idx(splits[split]["labels"])
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DatasetError(f"{splits[split]['labels']}: expected {images.shape[0]} labels, "
                               f"got shape {labels.shape}")
        return images[..., None], labels.astype(np.int32)

    test = next((s for s in ("t10k", "test") if s in splits), None)
    if "train" in splits and test:
        (train_x, train_y), (val_x, val_y) = load("train"), load(test)
    elif len(splits) == 1:
        train_x, train_y, val_x, val_y = _split_arrays(*load(next(iter(splits))), config)
    else:
        raise DatasetError(f"{directory!r} holds IDX splits {sorted(splits)}; expected one "
                           f"split, or 'train' with 't10k' or 'test'")
    return _array_bundle(train_x, train_y, val_x, val_y, config, f"mnist:{directory}",
                         num_classes=10 if train_y is not None else None)


def _digits(_, config):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    return _array_bundle(*_split_arrays(images, digits.target.astype(np.int32), config),
                         config, "digits", num_classes=10)


def _load_array_file(path, kind):
    if not Path(path).is_file():
        raise DatasetError(f"{kind} file {path!r} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read {kind} file {path!r}: {e}") from e


def _npz(path, config):
    with _load_array_file(path, "npz") as data:
        keys = set(data.files)
        if {"x_train", "x_test"} <= keys:
            arrays = [data.get(k) for k in ("x_train", "y_train", "x_test", "y_test")]
        else:
            image_key = next((k for k in ("images", "x") if k in keys), None)
            if image_key is None:
                raise DatasetError(f"npz file {path!r} has keys {sorted(keys)}; expected images "
                                   f"under 'images' or 'x', or 'x_train' and 'x_test'")
            label_key = next((k for k in ("labels", "y") if k in keys), None)
            arrays = [data[image_key], data[label_key] if label_key else None]
    return _arrays_bundle(arrays, config, f"npz:{path}")


def _npy(path, config):
    return _arrays_bundle([_load_array_file(path, "npy"), None], config, f"npy:{path}")


def _arrays_bundle(arrays, config, name):
    """Validates [x, y] (split here) or [x_train, y_train, x_val, y_val]."""
    checked = []
    for i in range(0, len(arrays), 2):
        images = image_io.as_image_array(arrays[i], f"{name} images")
        labels = arrays[i + 1]
        if labels is not None:
            labels = image_io.as_label_array(labels, len(images), f"{name} labels")
        checked += [images, labels]
    if len(checked) == 2:
        checked = list(_split_arrays(*checked, config))
    if checked[0].shape[1:] != checked[2].shape[1:]:
        raise DatasetError(f"{name}: train images {checked[0].shape[1:]} and validation "
                           f"images {checked[2].shape[1:]} differ in shape")
    num_classes = (int(max(checked[1].max(), checked[3].max())) + 1
                   if checked[1] is not None and checked[3] is not None else None)
    if num_classes is None:
        checked[1] = checked[3] = None
    return _array_bundle(*checked, config, name, num_classes=num_classes)


# ----------------------------------------------------------------------------
# Streamed sources: decoded inside the pipeline.

def _random_crop(image, size, seed, flip):
    seeds = tf.random.experimental.stateless_split(seed, 2)
    crop = tf.image.stateless_random_crop(image, [size, size, tf.shape(image)[-1]], seeds[0])
    return tf.image.stateless_random_flip_left_right(crop, seeds[1]) if flip else crop


def _centre_crop(image, size):
    shape = tf.shape(image)
    return tf.image.crop_to_bounding_box(image, (shape[0] - size) // 2,
                                         (shape[1] - size) // 2, size, size)


def _stream_bundle(train_items, val_items, decode, config, *, name, channels, cache,
                   skip_errors, num_train=None, num_validation=None, num_classes=None,
                   class_names=None):
    """Bundle for sources decoded in the pipeline (folder, tfrecord, tfds).

    `decode(item) -> (uint8 image HWC, int32 label)`. Items are shuffled
    before decoding, so the shuffle buffer holds cheap items, not pixels.
    """
    size = config.image_size
    flip = True if config.flip is None else config.flip

    def decoded(items):
        items = items.map(decode, num_parallel_calls=AUTOTUNE)
        return items.ignore_errors(log_warning=True) if skip_errors else items

    def crop(step, item):
        image, label = item
        seed = tf.stack([tf.constant(config.seed, tf.int64), step])
        return _random_crop(image, size, seed, flip), label

    if cache:
        train = decoded(train_items).cache().shuffle(
            min(config.shuffle_buffer, num_train or config.shuffle_buffer),
            seed=config.seed, reshuffle_each_iteration=True).repeat()
    else:
        train = decoded(train_items.shuffle(config.shuffle_buffer, seed=config.seed,
                                            reshuffle_each_iteration=True).repeat())
    train = train.enumerate().map(crop, num_parallel_calls=AUTOTUNE)
    train = train.batch(config.batch_size, drop_remainder=True)
    if config.augment:
        def augment(step, batch):
            seed = tf.stack([tf.constant(config.seed, tf.int64), step])
            return _augment(batch[0], seed), batch[1]

        train = train.enumerate().map(augment, num_parallel_calls=AUTOTUNE)
    train = _finish(train, config, train=True)
    validation = decoded(val_items).map(lambda x, y: (_centre_crop(x, size), y),
                                        num_parallel_calls=AUTOTUNE)
    if cache:
        validation = validation.cache()
    validation = _finish(validation.batch(config.batch_size,
                                          drop_remainder=config.validation_drop_remainder),
                         config, train=False)
    return DatasetBundle(train=train, validation=validation, channels=channels,
                         image_size=size, description=name,
                         data_variance=_estimate_variance(train, config),
                         num_train=num_train, num_validation=num_validation,
                         num_classes=num_classes, class_names=class_names)


def _folder(directory, config):
    files, class_names = image_io.scan_image_folder(directory)
    size = config.image_size
    small = [f for f in files if min(f.height, f.width) < size]
    if small:
        raise DatasetError(f"{len(small)} image(s) in {directory!r} are smaller than "
                           f"image_size {size}, e.g. {small[0].path} is "
                           f"{small[0].width}x{small[0].height}")
    if config.with_labels and class_names is None:
        raise DatasetError(f"folder {directory!r} has no class subfolders, but "
                           f"with_labels=True was requested")
    channels = config.channels or max(f.channels for f in files)
    train_idx, val_idx = image_io.split_indices(len(files), config.validation_fraction)
    if len(train_idx) == 0:
        raise DatasetError(f"folder {directory!r} has only {len(files)} usable image(s): "
                           f"none left for training")

    def items(indices):
        return tf.data.Dataset.from_tensor_slices(
            ([files[i].path for i in indices],
             np.array([files[i].label for i in indices], np.int32)))

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels,
                                   expand_animations=False, dtype=tf.uint8)
        return tf.ensure_shape(image, [None, None, channels]), label

    decoded_bytes = sum(f.height * f.width * channels for f in files)
    cache = decoded_bytes < _CACHE_BYTES if config.cache is None else config.cache
    return _stream_bundle(
        items(train_idx), items(val_idx), decode, config, channels=channels, cache=cache,
        skip_errors=True, num_train=len(train_idx), num_validation=len(val_idx),
        num_classes=len(class_names) if class_names else None, class_names=class_names,
        name=(f"folder:{directory}: {len(train_idx)} train / {len(val_idx)} validation "
              f"images, random {size}x{size} crops"))


def _tfrecord(pattern, config):
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise DatasetError(f"no TFRecord files match {pattern!r}")
    records = tf.data.TFRecordDataset(paths)
    try:
        first = next(iter(records.take(1)), None)
        if first is None:
            raise DatasetError(f"TFRecord files {pattern!r} hold no records")
        example = tf.io.parse_single_example(first, TFRECORD_FEATURES)
    except tf.errors.OpError as e:
        raise DatasetError(f"cannot read TFRecord files {pattern!r} with the features "
                           f"{sorted(TFRECORD_FEATURES)}: {e.message.splitlines()[0]}") from e
    size = config.image_size
    height, width = int(example["height"]), int(example["width"])
    if min(height, width) < size:
        raise DatasetError(f"{paths[0]}: first image is {width}x{height}, smaller than "
                           f"image_size {size}")
    if config.with_labels and int(example["label"]) < 0:
        raise DatasetError(f"TFRecords {pattern!r} have no 'label' feature, but "
                           f"with_labels=True was requested")
    channels = config.channels or int(example["channels"])
    # Hash of the serialized record: a split that ignores file order and sharding.
    buckets = 10_000
    threshold = int(round(config.validation_fraction * buckets))

    def is_validation(record):
        return tf.strings.to_hash_bucket_fast(record, buckets) < threshold

    def decode(record):
        features = tf.io.parse_single_example(record, TFRECORD_FEATURES)
        image = tf.io.decode_image(features["image"], channels=channels,
                                   expand_animations=False, dtype=tf.uint8)
        image = tf.ensure_shape(image, [None, None, channels])
        shape = tf.shape(image)
        tf.debugging.assert_greater_equal(
            tf.minimum(shape[0], shape[1]), size,
            message=f"a TFRecord image is smaller than image_size {size}")
        return image, tf.cast(features["label"], tf.int32)

    records = tf.data.TFRecordDataset(paths, num_parallel_reads=min(len(paths), 8))
    return _stream_bundle(
        records.filter(lambda r: tf.logical_not(is_validation(r))), records.filter(is_validation),
        decode, config, channels=channels, cache=bool(config.cache), skip_errors=False,
        name=f"tfrecord:{pattern}: {len(paths)} file(s), random {size}x{size} crops")


def _tfds(argument, config):
    name, _, split = argument.partition(":")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DatasetError(
            f"tfds:{argument} needs the tensorflow-datasets package, which is not "
            f"installed: pip install tensorflow-datasets, then prepare {name!r} in "
            f"$TFDS_DATA_DIR on a machine with network (nothing is downloaded here)") from e
    data_dir = os.environ.get("TFDS_DATA_DIR") or str(Path.home() / "tensorflow_datasets")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises its own DatasetNotFoundError and others
        raise DatasetError(f"tfds dataset {name!r} is unknown: {e}") from e
    if not builder.is_prepared():
        raise DatasetError(f"tfds dataset {name!r} is not prepared in {data_dir}; run "
                           f"`tfds build {name} --data_dir {data_dir}` where there is "
                           f"network (or set TFDS_DATA_DIR), downloads are disabled here")
    available = set(builder.info.splits)
    if split:
        cut = 100 - int(round(100 * config.validation_fraction))
        train_split, val_split = f"{split}[:{cut}%]", f"{split}[{cut}%:]"
    else:
        val_name = next((s for s in ("validation", "test") if s in available), None)
        if "train" not in available or val_name is None:
            raise DatasetError(f"tfds dataset {name!r} has splits {sorted(available)}; name "
                               f"one as tfds:{name}:SPLIT")
        train_split, val_split = "train", val_name
    features = builder.info.features
    has_labels = "label" in features
    if config.with_labels and not has_labels:
        raise DatasetError(f"tfds dataset {name!r} has no 'label', but with_labels=True")
    channels = config.channels or int(features["image"].shape[-1] or 3)

    def decode(example):
        image = example["image"]
        if image.shape[-1] != channels:
            image = (tf.image.grayscale_to_rgb(image) if channels == 3
                     else tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))), tf.uint8))
        label = tf.cast(example["label"], tf.int32) if has_labels else tf.constant(-1)
        return image, label

    def load(s):  # as_dataset only reads prepared files, it never downloads
        return builder.as_dataset(split=s, shuffle_files=False)

    return _stream_bundle(
        load(train_split), load(val_split), decode, config, channels=channels,
        cache=bool(config.cache), skip_errors=False,
        num_classes=features["label"].num_classes if has_labels else None,
        name=f"tfds:{argument}: {train_split} / {val_split}")


# ----------------------------------------------------------------------------
# Writing TFRecords.

def write_tfrecords(images_or_folder, path: str | os.PathLike, *, shards: int = 1,
                    labels=None) -> list[str]:
    """Writes images as TFRecord files in the `TFRECORD_FEATURES` format.

    Each shard is written to a temporary file in the target directory and
    renamed into place, so a failure never leaves a half-written shard.

    Args:
        images_or_folder: an image array ((N, H, W[, C]), uint8, or float in
            [0, 1], rounded to uint8 since PNG stores 8 bits) or an image
            folder (classes become labels, as for `folder:`).
        path: output file; with `shards > 1` the files are
            `{path}-00000-of-0000N` and so on.
        shards: number of files, examples dealt round-robin. Default 1.
        labels: optional integer labels for an array.

    Returns:
        The written paths.
    """
    import io

    from PIL import Image

    _check_int("shards", shards, 1)
    if isinstance(images_or_folder, (str, os.PathLike)):
        files, _ = image_io.scan_image_folder(images_or_folder)

        def examples():
            for f in files:
                with Image.open(f.path) as image:
                    yield np.asarray(image.convert("L" if f.channels == 1 else "RGB")), f.label
        count = len(files)
    else:
        images = image_io.as_image_array(images_or_folder)
        if images.dtype != np.uint8:
            images = np.round(images * 255.0).astype(np.uint8)
        if labels is not None:
            labels = image_io.as_label_array(labels, len(images))

        def examples():
            for i, image in enumerate(images):
                yield image, (-1 if labels is None else int(labels[i]))
        count = len(images)
    if shards > count:
        raise DatasetError(f"shards={shards} is more than the {count} images to write")
    path = Path(path)
    names = ([str(path)] if shards == 1 else
             [f"{path}-{i:05d}-of-{shards:05d}" for i in range(shards)])
    path.parent.mkdir(parents=True, exist_ok=True)
    temps = [tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp", delete=False).name for _ in names]
    try:
        writers = [tf.io.TFRecordWriter(t) for t in temps]
        for i, (image, label) in enumerate(examples()):
            image = image if image.ndim == 3 else image[..., None]
            buffer = io.BytesIO()
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "PNG")
            feature = {"image": _bytes_feature(buffer.getvalue()), "label": _int_feature(label),
                       "height": _int_feature(image.shape[0]),
                       "width": _int_feature(image.shape[1]),
                       "channels": _int_feature(image.shape[2])}
            writers[i % shards].write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())
        for writer in writers:
            writer.close()
        for temp, name in zip(temps, names):
            os.replace(temp, name)
    finally:
        for temp in temps:
            if os.path.exists(temp):
                os.remove(temp)
    return names


def _bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

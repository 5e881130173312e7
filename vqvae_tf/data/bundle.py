"""`DatasetBundle`, what `make_datasets` returns, and the pipeline steps every source shares.

A source (`vqvae_tf.data.photos`, `arrays`, `mnist`, `folders`, `tfrecords`,
`tfds`, `audio`) turns a `DataConfig` into a bundle; the steps here are its last ones:
float conversion, options and prefetch (`finish`), the finite validation
batches of in-memory arrays, and the training pixels' variance.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE

# Streamed sources estimate data_variance from this many training crops.
VARIANCE_EXAMPLES = 1024


@dataclasses.dataclass(frozen=True)
class DatasetBundle:
    """Train and validation pipelines plus what a model needs to know.

    Attributes:
        train: infinite dataset of float32 batches (B, S, S, C) in [0, 1],
            or `(images, int32 labels)` when made `with_labels`; audio:
            (B, crop_length, 1) in [-1, 1].
        validation: finite, deterministic dataset of the same structure;
            audio: each held-out clip whole, (1, length, 1).
        channels: C (1 for audio).
        image_size: S; None for audio.
        description: one line saying what the data is.
        data_variance: variance of the training pixels in [0, 1] (audio:
            of the training samples in [-1, 1], exact) (the VQ-VAE
            reconstruction loss divides by it); estimated from
            `VARIANCE_EXAMPLES` crops for streamed sources.
        num_train: training examples (photos: training photos), or None when
            unknown without reading everything (tfrecord, tfds).
        num_validation: validation examples, or None when unknown.
        num_classes: number of classes when there are labels, else None.
        class_names: folder class names (audio: the label_pattern
            classes, sorted), else None.
        sample_rate: audio: the rate of every clip in Hz; else None.
        crop_length: audio: training crop length in samples; else None.
        validation_names: audio: the held-out clips' paths relative to the
            folder, in validation order; else None.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    channels: int
    image_size: int | None
    description: str
    data_variance: float
    num_train: int | None
    num_validation: int | None
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    sample_rate: int | None = None
    crop_length: int | None = None
    validation_names: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The checked arguments of `make_datasets`, handed to every source."""

    image_size: int | None
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
    # Audio only (`vqvae_tf.data.audio`); None for image sources.
    crop_length: int | None = None
    sample_rate: int | None = None
    validation_list: str | None = None
    label_pattern: str | None = None
    # A separate validation source (`folder:DIR`), or None for the source's own split.
    validation_spec: str | None = None


def step_seed(config, step):
    """The stateless seed of training batch (or crop) `step`: `[config.seed, step]`."""
    return tf.stack([tf.constant(config.seed, tf.int64), step])


def _to_float(images):
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.cast(images, tf.float32)


def finish(dataset, config, train):
    """Float conversion, options and prefetch common to every pipeline."""
    if config.with_labels:
        dataset = dataset.map(lambda x, y: (_to_float(x), y), num_parallel_calls=AUTOTUNE)
    else:
        dataset = dataset.map(lambda x, y: _to_float(x), num_parallel_calls=AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = config.deterministic if train else True
    return dataset.prefetch(AUTOTUNE).with_options(options)


def in_memory_options(dataset):
    """Shards by DATA: the pipeline reads a tensor, not files."""
    # Sharding by file would fail over to DATA with a warning under a
    # multi-worker strategy, so say it up front.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def validation_from_arrays(images, labels, config):
    """Finite, ordered validation batches from in-memory size x size arrays."""
    if labels is None:
        labels = np.full(len(images), -1, np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    dataset = dataset.batch(config.batch_size, drop_remainder=config.validation_drop_remainder)
    return finish(dataset, config, train=False)


def pixel_variance(images: np.ndarray) -> float:
    """Variance of pixel values in [0, 1], exact and in O(1) memory for uint8."""
    if images.dtype == np.uint8:
        counts = np.bincount(images.ravel(), minlength=256).astype(np.float64)
        values = np.arange(256) / 255.0
        mean = counts @ values / counts.sum()
        return float(counts @ (values - mean) ** 2 / counts.sum())
    return float(np.var(images, dtype=np.float64))


def estimate_variance(train: tf.data.Dataset, config) -> float:
    """Pixel variance of the first `VARIANCE_EXAMPLES` training crops (streamed sources)."""
    total = n = square = 0.0
    for batch in train.take(max(1, -(-VARIANCE_EXAMPLES // config.batch_size))):
        x = (batch[0] if config.with_labels else batch).numpy().astype(np.float64)
        total, square, n = total + x.sum(), square + (x * x).sum(), n + x.size
    mean = total / n
    return float(max(square / n - mean * mean, 0.0))

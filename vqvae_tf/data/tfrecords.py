"""`tfrecord:GLOB`: tf.train.Examples in the `TFRECORD_FEATURES` format, and `write_tfrecords`.

Validation is the records whose content hashes into `validation_fraction`
of the buckets: fixed, and independent of file order and sharding.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from vqvae_tf.data import image_arrays
from vqvae_tf.data.errors import DatasetError
from vqvae_tf.data.folders import scan_image_folder
from vqvae_tf.data.streams import stream_bundle
from vqvae_tf.utils.atomic import atomic_output
from vqvae_tf.utils.checks import check_int

#: The tf.train.Example features read by `tfrecord:` and written by
#: `write_tfrecords`. `label` is -1 when absent.
TFRECORD_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),  # PNG bytes
    "label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "channels": tf.io.FixedLenFeature([], tf.int64),
}

# Validation records: hash bucket of the serialized record below
# validation_fraction * _BUCKETS.
_BUCKETS = 10_000


def tfrecord_bundle(pattern, config):
    """The `DatasetBundle` of the TFRecord files matching `pattern`."""
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise DatasetError(f"no TFRecord files match {pattern!r}")
    example = _first_example(paths, pattern)
    size = config.image_size
    height, width = int(example["height"]), int(example["width"])
    if min(height, width) < size:
        raise DatasetError(f"{paths[0]}: first image is {width}x{height}, smaller than image_size {size}")
    if config.with_labels and int(example["label"]) < 0:
        raise DatasetError(f"TFRecords {pattern!r} have no 'label' feature, but with_labels=True was requested")
    channels = config.channels or int(example["channels"])
    # Hash of the serialized record: a split that ignores file order and sharding.
    threshold = int(round(config.validation_fraction * _BUCKETS))

    def is_validation(record):
        return tf.strings.to_hash_bucket_fast(record, _BUCKETS) < threshold

    def decode(record):
        features = tf.io.parse_single_example(record, TFRECORD_FEATURES)
        image = tf.io.decode_image(features["image"], channels=channels, expand_animations=False, dtype=tf.uint8)
        image = tf.ensure_shape(image, [None, None, channels])
        shape = tf.shape(image)
        tf.debugging.assert_greater_equal(
            tf.minimum(shape[0], shape[1]), size, message=f"a TFRecord image is smaller than image_size {size}"
        )
        return image, tf.cast(features["label"], tf.int32)

    records = tf.data.TFRecordDataset(paths, num_parallel_reads=min(len(paths), 8))
    return stream_bundle(
        records.filter(lambda r: tf.logical_not(is_validation(r))),
        records.filter(is_validation),
        decode,
        config,
        channels=channels,
        cache=bool(config.cache),
        skip_errors=False,
        name=f"tfrecord:{pattern}: {len(paths)} file(s), random {size}x{size} crops",
    )


def _first_example(paths, pattern):
    """The features of the first record, read up front so a foreign file fails here."""
    records = tf.data.TFRecordDataset(paths)
    try:
        first = next(iter(records.take(1)), None)
        if first is None:
            raise DatasetError(f"TFRecord files {pattern!r} hold no records")
        return tf.io.parse_single_example(first, TFRECORD_FEATURES)
    except tf.errors.OpError as e:
        raise DatasetError(
            f"cannot read TFRecord files {pattern!r} with the features "
            f"{sorted(TFRECORD_FEATURES)}: {e.message.splitlines()[0]}"
        ) from e


def write_tfrecords(images_or_folder, path: str | os.PathLike, *, shards: int = 1, labels=None) -> list[str]:
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
    shards = check_int("shards", shards, 1, error=DatasetError)
    examples, count = _examples(images_or_folder, labels)
    if shards > count:
        raise DatasetError(f"shards={shards} is more than the {count} images to write")
    path = Path(path)
    names = [str(path)] if shards == 1 else [f"{path}-{i:05d}-of-{shards:05d}" for i in range(shards)]
    with contextlib.ExitStack() as stack:
        # Every shard is renamed into place only when all of them are written.
        temps = [stack.enter_context(atomic_output(name)) for name in names]
        writers = [tf.io.TFRecordWriter(str(t)) for t in temps]
        for i, (image, label) in enumerate(examples()):
            writers[i % shards].write(_serialize(image, label))
        for writer in writers:
            writer.close()
    return names


def _examples(images_or_folder, labels):
    """`(a generator of (uint8 HWC or HW image, label), count)` of an array or a folder."""
    from PIL import Image

    if isinstance(images_or_folder, (str, os.PathLike)):
        files, _ = scan_image_folder(images_or_folder)

        def examples():
            for f in files:
                with Image.open(f.path) as image:
                    yield np.asarray(image.convert("L" if f.channels == 1 else "RGB")), f.label

        return examples, len(files)
    images = image_arrays.as_image_array(images_or_folder)
    if images.dtype != np.uint8:
        images = np.round(images * 255.0).astype(np.uint8)
    if labels is not None:
        labels = image_arrays.as_label_array(labels, len(images))

    def examples():
        for i, image in enumerate(images):
            yield image, (-1 if labels is None else int(labels[i]))

    return examples, len(images)


def _serialize(image, label):
    """One serialized tf.train.Example of `TFRECORD_FEATURES`: the image as PNG bytes."""
    from PIL import Image

    image = image if image.ndim == 3 else image[..., None]
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "PNG")
    feature = {
        "image": _bytes_feature(buffer.getvalue()),
        "label": _int_feature(label),
        "height": _int_feature(image.shape[0]),
        "width": _int_feature(image.shape[1]),
        "channels": _int_feature(image.shape[2]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

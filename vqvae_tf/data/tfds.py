"""`tfds:NAME[:SPLIT]`: a TensorFlow Datasets dataset already prepared on disk; never downloads.

The dataset must be prepared in `$TFDS_DATA_DIR` (or ~/tensorflow_datasets).
Without `SPLIT` it needs `train` and `validation` (or `test`); with one,
`SPLIT` is divided by `validation_fraction`.
"""

import os
from pathlib import Path

import tensorflow as tf

from vqvae_tf.data.errors import DatasetError
from vqvae_tf.data.streams import stream_bundle


def tfds_bundle(argument, config):
    """The `DatasetBundle` of prepared TFDS dataset `NAME[:SPLIT]`."""
    name, _, split = argument.partition(":")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DatasetError(
            f"tfds:{argument} needs the tensorflow-datasets package, which is not "
            f"installed: pip install tensorflow-datasets, then prepare {name!r} in "
            f"$TFDS_DATA_DIR on a machine with network (nothing is downloaded here)"
        ) from e
    data_dir = os.environ.get("TFDS_DATA_DIR") or str(Path.home() / "tensorflow_datasets")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises its own DatasetNotFoundError and others
        raise DatasetError(f"tfds dataset {name!r} is unknown: {e}") from e
    if not builder.is_prepared():
        raise DatasetError(
            f"tfds dataset {name!r} is not prepared in {data_dir}; run "
            f"`tfds build {name} --data_dir {data_dir}` where there is "
            f"network (or set TFDS_DATA_DIR), downloads are disabled here"
        )
    available = set(builder.info.splits)
    if split:
        cut = 100 - int(round(100 * config.validation_fraction))
        train_split, val_split = f"{split}[:{cut}%]", f"{split}[{cut}%:]"
    else:
        val_name = next((s for s in ("validation", "test") if s in available), None)
        if "train" not in available or val_name is None:
            raise DatasetError(f"tfds dataset {name!r} has splits {sorted(available)}; name one as tfds:{name}:SPLIT")
        train_split, val_split = "train", val_name
    features = builder.info.features
    has_labels = "label" in features
    if config.with_labels and not has_labels:
        raise DatasetError(f"tfds dataset {name!r} has no 'label', but with_labels=True")
    channels = config.channels or int(features["image"].shape[-1] or 3)

    def decode(example):
        image = example["image"]
        if image.shape[-1] != channels:
            image = (
                tf.image.grayscale_to_rgb(image)
                if channels == 3
                else tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))), tf.uint8)
            )
        label = tf.cast(example["label"], tf.int32) if has_labels else tf.constant(-1)
        return image, label

    def load(s):  # as_dataset only reads prepared files, it never downloads
        return builder.as_dataset(split=s, shuffle_files=False)

    return stream_bundle(
        load(train_split),
        load(val_split),
        decode,
        config,
        channels=channels,
        cache=bool(config.cache),
        skip_errors=False,
        num_classes=features["label"].num_classes if has_labels else None,
        name=f"tfds:{argument}: {train_split} / {val_split}",
    )

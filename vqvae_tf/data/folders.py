"""`folder:DIR`: image files found below a directory, decoded in the pipeline.

PNG/JPEG/BMP files are found recursively (`scan_image_folder`, which also
says how corrupt files are skipped); immediate subfolders are classes. An
image smaller than `image_size` raises `DatasetError` naming it. Training:
when the decoded training images fit in `folder_cache.CACHE_BYTES` (or
`cache=True`), each is decoded once into memory and batches are gathered
from there (`folder_cache`); otherwise (or `cache=False`) each visit decodes
its file in the pipeline (`streams`). Validation: a centre crop of each
held-out file (`image_arrays.split_indices`), or of every file of a separate
validation folder (`folder_validation`), decoded once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from vqvae_tf.codec.images import IMAGE_EXTENSIONS
from vqvae_tf.data.bundle import DatasetBundle, estimate_variance, finish, in_memory_options, validation_from_arrays
from vqvae_tf.data.errors import DatasetError
from vqvae_tf.data.folder_cache import CACHE_BYTES, centre_crops, decoded_pool, pool_batches
from vqvae_tf.data.image_arrays import split_indices
from vqvae_tf.data.streams import stream_bundle

logger = logging.getLogger(__name__)

# Pillow modes with one channel; every other mode is read as RGB.
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclasses.dataclass(frozen=True)
class ImageFile:
    """One usable image file: its path, class label (-1 without classes), size."""

    path: str
    label: int
    height: int
    width: int
    channels: int


def scan_image_folder(directory: str | os.PathLike) -> tuple[list[ImageFile], tuple[str, ...] | None]:
    """Finds and checks the images below `directory`.

    Files with an extension in `IMAGE_EXTENSIONS` (any case) are found
    recursively, in sorted order. Each is opened once with Pillow and
    `Image.verify()`-ed; files that fail are skipped with one
    `logging.warning` giving their count and the first few names. `verify`
    does not decode every pixel: a file that passes it and still fails to
    decode is dropped by the pipeline (`tf.data` `ignore_errors`, logged),
    and a truncated JPEG decodes with its missing rows filled in by
    TensorFlow's decoder (it logs "Premature end of JPEG data").

    Classes: when every image lies inside an immediate subfolder of
    `directory`, the sorted subfolder names are the classes and a file's
    label is its subfolder's index; otherwise there are no labels (-1).

    Returns:
        `(files, class_names)`; `class_names` is None without classes.

    Raises:
        DatasetError: the folder is missing, holds no image files, or none
            of them can be read.
    """
    from PIL import Image

    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f"image folder {str(root)!r} does not exist or is not a directory")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise DatasetError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found in {str(root)!r}")
    top = {p.relative_to(root).parts[0] for p in paths if len(p.relative_to(root).parts) > 1}
    labelled = all(len(p.relative_to(root).parts) > 1 for p in paths)
    class_names = tuple(sorted(top)) if labelled else None
    files, bad = [], []
    for path in paths:
        try:
            with Image.open(path) as image:
                size, mode = image.size, image.mode
                image.verify()
        except Exception as e:  # Pillow raises many types for broken files
            bad.append(f"{path.name} ({type(e).__name__})")
            continue
        label = class_names.index(path.relative_to(root).parts[0]) if labelled else -1
        files.append(ImageFile(str(path), label, size[1], size[0], 1 if mode in _GRAY_MODES else 3))
    if bad:
        logger.warning(
            "skipped %d unreadable image file(s) in %s: %s%s",
            len(bad),
            root,
            ", ".join(bad[:5]),
            ", ..." if len(bad) > 5 else "",
        )
    if not files:
        raise DatasetError(f"all {len(paths)} image files in {str(root)!r} are corrupt or unreadable (e.g. {bad[0]})")
    return files, class_names


def _usable_files(directory, size):
    """The scanned files of `directory` and its class names; refuses images smaller than `size`."""
    files, class_names = scan_image_folder(directory)
    small = [f for f in files if min(f.height, f.width) < size]
    if small:
        raise DatasetError(
            f"{len(small)} image(s) in {directory!r} are smaller than "
            f"image_size {size}, e.g. {small[0].path} is "
            f"{small[0].width}x{small[0].height}"
        )
    return files, class_names


def folder_validation(directory, config, channels, class_names):
    """`(validation dataset, count)`: the centre crop of every image below `directory`.

    The validation set of `make_datasets(..., validation_spec="folder:DIR")`,
    the same crops as a folder's own split; each file is decoded once.
    """
    files, val_classes = _usable_files(directory, config.image_size)
    if config.with_labels and val_classes != class_names:
        raise DatasetError(
            f"validation folder {directory!r} has classes {val_classes}, the training data {class_names}"
        )
    crops, labels, kept = centre_crops(files, channels, config.image_size, directory)
    if not kept:
        raise DatasetError(f"validation folder {directory!r}: none of its {len(files)} image files decodes")
    return validation_from_arrays(crops, labels, config), len(kept)


def folder_bundle(directory, config):
    """The `DatasetBundle` of the images below `directory` (see the module docstring)."""
    size = config.image_size
    files, class_names = _usable_files(directory, size)
    if config.with_labels and class_names is None:
        raise DatasetError(f"folder {directory!r} has no class subfolders, but with_labels=True was requested")
    channels = config.channels or max(f.channels for f in files)
    if config.validation_spec is None:
        train_idx, val_idx = split_indices(len(files), config.validation_fraction)
    else:  # a separate validation source: every file trains
        train_idx, val_idx = np.arange(len(files)), np.arange(0)
    if len(train_idx) == 0:
        raise DatasetError(f"folder {directory!r} has only {len(files)} usable image(s): none left for training")
    train_files = [files[i] for i in train_idx]
    decoded_bytes = sum(f.height * f.width * channels for f in train_files)
    cache = decoded_bytes < CACHE_BYTES if config.cache is None else config.cache
    val_crops, val_labels, val_kept = centre_crops([files[i] for i in val_idx], channels, size, directory)
    if not cache:
        return _streamed_bundle(directory, config, train_files, (val_crops, val_labels), channels, class_names)
    pool = decoded_pool(train_files, channels, directory)
    if not pool.paths:
        raise DatasetError(f"folder {directory!r}: none of its {len(train_files)} training images decodes")
    train = in_memory_options(finish(pool_batches(pool, config, channels), config, train=True))
    return DatasetBundle(
        train=train,
        validation=validation_from_arrays(val_crops, val_labels, config),
        channels=channels,
        image_size=size,
        description=(
            f"folder:{directory}: {len(pool.paths)} train"
            f"{'' if config.validation_spec else f' / {len(val_kept)} validation'} images, "
            f"random {size}x{size} crops (decoded once, {pool.flat.nbytes / 1e9:.2f} GB in memory)"
        ),
        data_variance=estimate_variance(train, config),
        num_train=len(pool.paths),
        num_validation=len(val_kept),
        num_classes=len(class_names) if class_names else None,
        class_names=class_names,
    )


def _streamed_bundle(directory, config, train_files, validation, channels, class_names):
    """Training files decoded in the pipeline at every visit (`cache=False`, or too large to cache)."""

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False, dtype=tf.uint8)
        return tf.ensure_shape(image, [None, None, channels]), label

    items = tf.data.Dataset.from_tensor_slices(
        ([f.path for f in train_files], np.array([f.label for f in train_files], np.int32))
    )
    bundle = stream_bundle(
        items,
        items.take(0),
        decode,
        config,
        channels=channels,
        cache=False,
        skip_errors=True,
        num_train=len(train_files),
        num_validation=len(validation[0]),
        num_classes=len(class_names) if class_names else None,
        class_names=class_names,
        name=(
            f"folder:{directory}: {len(train_files)} train"
            f"{'' if config.validation_spec else f' / {len(validation[0])} validation'} images, "
            f"random {config.image_size}x{config.image_size} crops (decoded at every visit)"
        ),
    )
    return dataclasses.replace(bundle, validation=validation_from_arrays(*validation, config))

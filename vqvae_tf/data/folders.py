"""`folder:DIR`: image files found below a directory, decoded in the pipeline.

PNG/JPEG/BMP files are found recursively (`scan_image_folder`, which also
says how corrupt files are skipped); immediate subfolders are classes. An
image smaller than `image_size` raises `DatasetError` naming it. Validation:
a centre crop of each held-out file (`image_arrays.split_indices`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from vqvae_tf.codec.images import IMAGE_EXTENSIONS
from vqvae_tf.data.errors import DatasetError
from vqvae_tf.data.image_arrays import split_indices
from vqvae_tf.data.streams import stream_bundle

logger = logging.getLogger(__name__)

# Pillow modes with one channel; every other mode is read as RGB.
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
# Decoded folder images are cached in memory below this many bytes.
_CACHE_BYTES = 1 << 30


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


def folder_bundle(directory, config):
    """The `DatasetBundle` of the images below `directory` (see the module docstring)."""
    files, class_names = scan_image_folder(directory)
    size = config.image_size
    small = [f for f in files if min(f.height, f.width) < size]
    if small:
        raise DatasetError(
            f"{len(small)} image(s) in {directory!r} are smaller than "
            f"image_size {size}, e.g. {small[0].path} is "
            f"{small[0].width}x{small[0].height}"
        )
    if config.with_labels and class_names is None:
        raise DatasetError(f"folder {directory!r} has no class subfolders, but with_labels=True was requested")
    channels = config.channels or max(f.channels for f in files)
    train_idx, val_idx = split_indices(len(files), config.validation_fraction)
    if len(train_idx) == 0:
        raise DatasetError(f"folder {directory!r} has only {len(files)} usable image(s): none left for training")

    def items(indices):
        return tf.data.Dataset.from_tensor_slices(
            ([files[i].path for i in indices], np.array([files[i].label for i in indices], np.int32))
        )

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False, dtype=tf.uint8)
        return tf.ensure_shape(image, [None, None, channels]), label

    decoded_bytes = sum(f.height * f.width * channels for f in files)
    cache = decoded_bytes < _CACHE_BYTES if config.cache is None else config.cache
    return stream_bundle(
        items(train_idx),
        items(val_idx),
        decode,
        config,
        channels=channels,
        cache=cache,
        skip_errors=True,
        num_train=len(train_idx),
        num_validation=len(val_idx),
        num_classes=len(class_names) if class_names else None,
        class_names=class_names,
        name=(
            f"folder:{directory}: {len(train_idx)} train / {len(val_idx)} validation images, random {size}x{size} crops"
        ),
    )

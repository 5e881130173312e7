"""The numpy side of the data, under its old module path (`vqvae_tf.image_io`, `vqvae_tf.data.image_io`).

Each name now lives with its concept: `embedded_photos` (the bundled photos),
`mnist` (IDX files), `folders` (scanning an image folder), `image_arrays`
(checks and conversions of in-memory image arrays), `errors`
(`DatasetError`). This module re-exports them so old imports keep working.
"""

from vqvae_tf.codec.images import IMAGE_EXTENSIONS
from vqvae_tf.data.embedded_photos import PHOTOS_VALIDATION, load_photo, photo_names, photo_path
from vqvae_tf.data.errors import DatasetError
from vqvae_tf.data.folders import ImageFile, scan_image_folder
from vqvae_tf.data.image_arrays import (
    as_image_array,
    as_label_array,
    centre_crop,
    convert_channels,
    fit_to_size,
    split_indices,
    tiles,
)
from vqvae_tf.data.mnist import read_idx

__all__ = [
    "IMAGE_EXTENSIONS",
    "PHOTOS_VALIDATION",
    "DatasetError",
    "ImageFile",
    "as_image_array",
    "as_label_array",
    "centre_crop",
    "convert_channels",
    "fit_to_size",
    "load_photo",
    "photo_names",
    "photo_path",
    "read_idx",
    "scan_image_folder",
    "split_indices",
    "tiles",
]

"""Training data: `make_datasets(spec)` turns a dataset spec into `tf.data` pipelines.

Specs: `photos` (the photos bundled with scikit-image and scikit-learn),
`mnist:DIR`, `digits`, `folder:DIR`, `npz:FILE`, `npy:FILE`, `tfrecord:GLOB`,
`tfds:NAME`.
"""

from vqvae_tf.data.datasets import (
    AUTOTUNE,
    SCHEMES,
    TFRECORD_FEATURES,
    DatasetBundle,
    make_datasets,
    write_tfrecords,
)
from vqvae_tf.data.image_io import PHOTOS_VALIDATION, DatasetError, load_photo, photo_names, read_idx

__all__ = [
    "AUTOTUNE", "PHOTOS_VALIDATION", "SCHEMES", "TFRECORD_FEATURES", "DatasetBundle", "DatasetError",
    "load_photo", "make_datasets", "photo_names", "read_idx", "write_tfrecords",
]

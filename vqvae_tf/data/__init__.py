"""Training data: `make_datasets(spec)` turns a dataset spec into `tf.data` pipelines.

Specs: `photos` (the photos bundled with scikit-image and scikit-learn),
`mnist:DIR`, `digits`, `folder:DIR`, `npz:FILE`, `npy:FILE`, `tfrecord:GLOB`,
`tfds:NAME`, `audio:DIR`. One module per concept: `datasets` (the spec dispatch,
`make_datasets`), `bundle` (`DatasetBundle` and the shared pipeline steps),
`crops` (random crops and augmentation), `streams` (sources decoded in the
pipeline), one module per source (`photos`, `arrays`, `mnist`, `folders`,
`tfrecords`, `tfds`, `audio`), `wav` (re-exports `vqvae_tf.utils.wav`:
reading WAV files and resampling, no TensorFlow), `embedded_photos` (the bundled photos), `image_arrays`
(numpy checks and conversions), `errors` (`DatasetError`); `image_io` keeps
the old module's names.
"""

from vqvae_tf.data.audio import LJSPEECH16K_VALIDATION, VALIDATION_LISTS
from vqvae_tf.data.bundle import AUTOTUNE, DatasetBundle
from vqvae_tf.data.datasets import SCHEMES, make_datasets
from vqvae_tf.data.embedded_photos import PHOTOS_VALIDATION, load_photo, photo_names
from vqvae_tf.data.errors import DatasetError
from vqvae_tf.data.mnist import read_idx
from vqvae_tf.data.tfrecords import TFRECORD_FEATURES, write_tfrecords
from vqvae_tf.data.wav import WavError, read_wav, resample, write_wav

__all__ = [
    "AUTOTUNE",
    "LJSPEECH16K_VALIDATION",
    "PHOTOS_VALIDATION",
    "SCHEMES",
    "TFRECORD_FEATURES",
    "VALIDATION_LISTS",
    "DatasetBundle",
    "DatasetError",
    "WavError",
    "load_photo",
    "make_datasets",
    "photo_names",
    "read_idx",
    "read_wav",
    "resample",
    "write_tfrecords",
    "write_wav",
]

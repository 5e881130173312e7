"""tf.data input pipelines: `make_datasets(spec, ...)` -> `DatasetBundle`.

Dataset specs (the strings a `--dataset` flag passes), each made by its own
module of `vqvae_tf.data`:

- `photos` (default, `photos`): random crops of the real photos bundled in
  scikit-image and scikit-learn (`embedded_photos`), nothing downloaded;
  validation: tiles of the whole photos named in `PHOTOS_VALIDATION`.
- `mnist:DIR` (`mnist`): IDX files, split by name (train / t10k) or by
  `validation_fraction`.
- `digits`, `npz:FILE`, `npy:FILE` (`arrays`): fixed-size images in memory.
- `folder:DIR` (`folders`): PNG/JPEG/BMP files, subfolders are classes.
- `tfrecord:GLOB` (`tfrecords`): tf.train.Examples with the features in
  `TFRECORD_FEATURES` (write them with `write_tfrecords`).
- `tfds:NAME[:SPLIT]` (`tfds`): a TensorFlow Datasets dataset already
  prepared on disk; never downloads.
- `audio:DIR` (`audio`, reading through `wav`): 8/16-bit PCM WAV files,
  mono at `sample_rate`; training crops of `crop_length` samples, whole
  clips for validation (see `vqvae_tf.data.audio`).

Fixed-size images (mnist, digits, arrays) smaller than `image_size` are
upscaled by an integer factor then zero-padded (`image_arrays.fit_to_size`:
MNIST 28 -> 32 is 2 pixels of padding); larger ones are randomly cropped for
training and centre-cropped for validation.

Image batches are float32 in [0, 1], NHWC `(batch, image_size, image_size,
channels)`. The train set repeats forever with `drop_remainder=True` (equal
static shards for distribution strategies); validation is finite and
deterministic. The train/validation split never depends on `seed`; `seed`
sets the shuffling, crops and flips. Audio batches are float32 in [-1, 1],
`(batch, crop_length, 1)` for training and `(1, length, 1)` for validation.
"""

from __future__ import annotations

import dataclasses
import os

from vqvae_tf.data.arrays import digits_bundle, npy_bundle, npz_bundle
from vqvae_tf.data.audio import audio_bundle
from vqvae_tf.data.bundle import AUTOTUNE, DataConfig, DatasetBundle
from vqvae_tf.data.embedded_photos import PHOTOS_VALIDATION, load_photo, photo_names
from vqvae_tf.data.errors import DatasetError
from vqvae_tf.data.folders import folder_bundle, folder_validation
from vqvae_tf.data.mnist import mnist_bundle, read_idx
from vqvae_tf.data.photos import photos_bundle
from vqvae_tf.data.tfds import tfds_bundle
from vqvae_tf.data.tfrecords import TFRECORD_FEATURES, tfrecord_bundle, write_tfrecords
from vqvae_tf.data.wav import MAX_RATE, MIN_RATE
from vqvae_tf.utils.checks import check_choice, check_int, check_number

# The names this module exported before the sources had their own modules.
__all__ = [
    "AUTOTUNE",
    "DatasetBundle",
    "DatasetError",
    "PHOTOS_VALIDATION",
    "SCHEMES",
    "TFRECORD_FEATURES",
    "load_photo",
    "make_datasets",
    "photo_names",
    "read_idx",
    "write_tfrecords",
]

#: Scheme -> the function making its bundle from `(argument, DataConfig)`.
_BUILDERS = {
    "photos": photos_bundle,
    "mnist": mnist_bundle,
    "digits": digits_bundle,
    "folder": folder_bundle,
    "npz": npz_bundle,
    "npy": npy_bundle,
    "tfrecord": tfrecord_bundle,
    "tfds": tfds_bundle,
    "audio": audio_bundle,
}
SCHEMES = tuple(_BUILDERS)
# Sources of photographs: random crops, flips and (optionally) augmentation.
_PHOTO_SCHEMES = ("photos", "folder", "tfrecord", "tfds")
# Schemes without an argument after the colon.
_BARE_SCHEMES = ("photos", "digits")
# Schemes of sound rather than images.
_AUDIO_SCHEMES = ("audio",)
# The model's sample rate for audio when none is given.
DEFAULT_SAMPLE_RATE = 16000


def make_datasets(
    spec: str = "photos",
    *,
    image_size: int | None = None,
    batch_size: int,
    channels: int | None = None,
    seed: int = 0,
    validation_fraction: float = 0.2,
    shuffle_buffer: int = 10_000,
    with_labels: bool = False,
    deterministic: bool = False,
    validation_drop_remainder: bool = False,
    flip: bool | None = None,
    cache: bool | None = None,
    augment: bool | None = None,
    crop_length: int | None = None,
    sample_rate: int | None = None,
    validation_list: str | os.PathLike | None = None,
    label_pattern: str | None = None,
    validation_spec: str | None = None,
) -> DatasetBundle:
    """Builds the train and validation pipelines for a dataset spec.

    Args:
        spec: `SCHEME[:ARG]`, see the module docstring; default `"photos"`.
        image_size: side S of the square images, e.g. 32; required for
            image datasets, refused for audio (use `crop_length`).
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
        crop_length: audio only, required: length of the training crops in
            samples at `sample_rate` (e.g. 8192); shorter clips are skipped.
        sample_rate: audio only: the model's rate in Hz, 8000 to 48000;
            every clip is resampled to it. None means 16000.
        validation_list: audio only: a text file naming the validation
            clips, one per line (e.g. `vqvae_tf.data.LJSPEECH16K_VALIDATION`);
            None holds out `validation_fraction` of the clips by a hash of
            their names.
        label_pattern: audio only: a regular expression searched in each
            file name, giving its class (the group named `label`, else the
            groups joined by `_`); files that do not match are skipped.
        validation_spec: a separate validation source, `folder:DIR`: the
            centre crop of every image below DIR (as a folder's own split),
            converted to the training data's channels. A `folder:` training
            source then trains on all of its files; other image sources
            keep their training split. None (default) uses the source's
            own validation split.

    Returns:
        A `DatasetBundle`.

    Raises:
        DatasetError: bad spec, argument, file or array; the message says
            what was received and what was expected.

    Example:

    >>> bundle = make_datasets("digits", image_size=32, batch_size=16)
    >>> images = next(iter(bundle.train))   # (16, 32, 32, 1) float32
    """
    # The keyword arguments by name (only the parameters are local yet): one dict for the checks below.
    given = {name: value for name, value in locals().items() if name != "spec"}
    scheme, argument = _parse(spec, augment)
    _check_scheme_arguments(spec, scheme in _AUDIO_SCHEMES, given)
    config = _config(scheme, given)
    config = dataclasses.replace(config, validation_spec=_validation_directory(validation_spec, scheme, spec))
    bundle = _BUILDERS[scheme](argument, config)
    if config.validation_spec is not None:
        validation, count = folder_validation(config.validation_spec, config, bundle.channels, bundle.class_names)
        bundle = dataclasses.replace(
            bundle,
            validation=validation,
            num_validation=count,
            description=f"{bundle.description}; validation: centre crops of {count} images of {validation_spec}",
        )
    return _checked(bundle, config)


def _validation_directory(validation_spec, scheme, spec):
    """The folder of a `folder:DIR` validation spec (None for None), checked."""
    if validation_spec is None:
        return None
    if scheme in _AUDIO_SCHEMES:
        raise DatasetError(f"validation_spec applies to image datasets; {spec!r} is audio (use validation_list)")
    kind, _, directory = str(validation_spec).partition(":")
    if kind != "folder" or not directory:
        raise DatasetError(f"validation_spec must be folder:DIR; received {validation_spec!r}")
    return directory


def _check_scheme_arguments(spec, audio, given):
    """Refuses the arguments of image datasets on audio and the reverse."""
    if audio and given["image_size"] is not None:
        raise DatasetError(
            f"dataset {spec!r} is audio: its training crops are crop_length samples long; "
            f"image_size (received {given['image_size']!r}) applies to image datasets"
        )
    if not audio:
        if given["image_size"] is None:
            raise DatasetError(f"dataset {spec!r} needs image_size, the side of the square images (e.g. 32)")
        extra = [
            name
            for name in ("crop_length", "sample_rate", "validation_list", "label_pattern")
            if given[name] is not None
        ]
        if extra:
            raise DatasetError(f"{', '.join(extra)} apply to audio datasets (audio:DIR), not to {spec!r}")


def _config(scheme, given):
    """The checked arguments of `make_datasets` (`given`, by name) as a `DataConfig`."""
    audio = scheme in _AUDIO_SCHEMES
    crop_length, sample_rate, label_pattern = given["crop_length"], given["sample_rate"], given["label_pattern"]
    if audio:
        sample_rate = DEFAULT_SAMPLE_RATE if sample_rate is None else sample_rate
        sample_rate = check_int("sample_rate", sample_rate, MIN_RATE, MAX_RATE, error=DatasetError)
        if crop_length is not None:
            crop_length = check_int("crop_length", crop_length, 1, error=DatasetError)
        if label_pattern is not None and not isinstance(label_pattern, str):
            raise DatasetError(f"label_pattern must be a str; received {label_pattern!r}")
    validation_list = given["validation_list"]
    return DataConfig(
        image_size=None if audio else check_int("image_size", given["image_size"], 1, error=DatasetError),
        batch_size=check_int("batch_size", given["batch_size"], 1, error=DatasetError),
        channels=check_choice("channels", given["channels"], (None, 1, 3), error=DatasetError),
        seed=check_int("seed", given["seed"], 0, error=DatasetError),
        validation_fraction=check_number(
            "validation_fraction",
            given["validation_fraction"],
            0.0,
            1.0,
            inclusive_min=False,
            inclusive_max=False,
            error=DatasetError,
        ),
        shuffle_buffer=check_int("shuffle_buffer", given["shuffle_buffer"], 1, error=DatasetError),
        with_labels=bool(given["with_labels"]),
        deterministic=bool(given["deterministic"]),
        validation_drop_remainder=bool(given["validation_drop_remainder"]),
        flip=given["flip"],
        cache=given["cache"],
        augment=given["augment"],
        crop_length=crop_length,
        sample_rate=sample_rate,
        validation_list=None if validation_list is None else os.fspath(validation_list),
        label_pattern=label_pattern,
    )


def _parse(spec, augment):
    """`(scheme, argument)` of a spec, checked against the known schemes."""
    scheme, _, argument = str(spec).partition(":")
    if scheme not in _BUILDERS:
        raise DatasetError(f"unknown dataset scheme {scheme!r} in spec {spec!r}; known schemes: {', '.join(SCHEMES)}")
    if augment and scheme not in _PHOTO_SCHEMES:
        raise DatasetError(
            f"augment=True applies to photo sources ({', '.join(_PHOTO_SCHEMES)}); received dataset {spec!r}"
        )
    if scheme in _BARE_SCHEMES:
        if argument:
            raise DatasetError(f"dataset {scheme!r} takes no argument, got {spec!r}")
    elif not argument:
        raise DatasetError(f"dataset spec {spec!r} needs an argument: {scheme}:PATH")
    return scheme, argument


def _checked(bundle, config):
    """`bundle`, if its validation set gives at least one batch."""
    if bundle.num_validation == 0:
        raise DatasetError(f"{bundle.description}: the validation set is empty")
    if (
        bundle.crop_length is None  # audio validation batches hold one clip each
        and config.validation_drop_remainder
        and bundle.num_validation is not None
        and bundle.num_validation < config.batch_size
    ):
        raise DatasetError(
            f"{bundle.description}: batch_size {config.batch_size} is larger than the "
            f"{bundle.num_validation} validation examples, so dropping the remainder "
            f"leaves no validation batch"
        )
    return bundle

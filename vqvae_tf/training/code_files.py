"""A VQ-VAE's code maps as the prior's data: extraction, the NPZ caches, the input pipeline.

`extract_codes` runs the VQ-VAE once over the images and caches the maps in
an NPZ file; `load_codes` reads a cache back. The caches are keyed by a
fingerprint of `model.keras` and the data settings (`code_fingerprint`), so
a retrained VQ-VAE is never paired with stale codes. `prior_code_maps` gives
`train_prior` its train and test maps; a residual VQ-VAE's `(h, w, S)` code
maps are modelled as `(h, w * S)` maps of `S * K` tokens
(`vqvae_tf.priors.stage_tokens`), coarse stage first at each position, and
a speech VQ-VAE's `(T, S)` codes as 1-row maps `(1, T * S)`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import numpy as np

from vqvae_tf.priors.stage_tokens import stages_to_tokens
from vqvae_tf.utils.atomic import atomic_output

logger = logging.getLogger(__name__)

# Image batches used for code extraction when the source does not say how
# many training images it has (random photo crops, streamed sources).
DEFAULT_TRAIN_BATCHES = 64


def extract_codes(vqvae, dataset, path, *, fingerprint=""):
    """Runs `vqvae` once over `dataset` and caches the code maps in an NPZ file.

    Args:
        vqvae: a built `VQVAE` (anything with `codes(images)`).
        dataset: a FINITE iterable (e.g. `tf.data.Dataset.take(n)`) of image
            batches `(B, H, W, C)` or `(images, labels)` pairs.
        path: the `.npz` to write (atomically: temp file + `os.replace`).
        fingerprint: str stored with the codes (see `load_codes`).
            Defaults to "".

    Returns:
        `(codes, labels)`: int32 `(N, h, w)` and int32 `(N,)` (or None when
        the batches carry no labels, or labels are all -1).

    Raises:
        ValueError: the dataset yielded no images.
    """
    codes, labels = [], []
    for batch in dataset:
        images, batch_labels = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        codes.append(np.asarray(vqvae.codes(images), np.int32))
        if batch_labels is not None:
            labels.append(np.asarray(batch_labels, np.int32))
    if not codes:
        raise ValueError("extract_codes received an empty dataset; expected at least one batch of images.")
    codes = np.concatenate(codes)
    labels = np.concatenate(labels) if labels else None
    if labels is not None and (labels < 0).all():
        labels = None  # sources without labels yield -1
    arrays = {"codes": codes, "fingerprint": np.array(fingerprint)}
    if labels is not None:
        arrays["labels"] = labels
    path = Path(path)
    with atomic_output(path) as temp, open(temp, "wb") as handle:
        np.savez(handle, **arrays)
    logger.info("Cached %d code maps of shape %s in %s.", len(codes), codes.shape[1:], path)
    return codes, labels


def load_codes(path, fingerprint=None):
    """Reads an `extract_codes` cache; None if missing or made for another fingerprint."""
    path = Path(path)
    if not path.exists():
        return None
    with np.load(path) as data:
        if fingerprint is not None and str(data["fingerprint"]) != fingerprint:
            return None
        return data["codes"], data.get("labels")


def _file_digest(path):
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_fingerprint(model_path, spec, image_size, batch_size, seed, train_batches):
    """The key of a run's code caches: the model file's digest and every data setting that changes the codes."""
    return f"{_file_digest(model_path)}|{spec}|{image_size}|{batch_size}|{seed}|{train_batches}"


def extraction_batches(train_batches, bundle, batch_size):
    """Image batches to extract training codes from: `train_batches`, else one pass when the source knows its size."""
    if train_batches is not None:
        return train_batches
    if bundle.num_train is not None and bundle.num_train >= 4 * batch_size:
        return bundle.num_train // batch_size
    return DEFAULT_TRAIN_BATCHES


@dataclasses.dataclass
class CodeMaps:
    """The prior's train and test maps (tokens, for a residual VQ-VAE) and their labels.

    Attributes:
        train, test: int32 maps `(N, h, w * num_stages)` (speech: h = 1,
            w = T frames).
        train_labels, test_labels: int32 `(N,)`, or None for an
            unconditional prior.
        num_stages: codes per position of the VQ-VAE (1 but for a residual
            quantizer).
        vocabulary: tokens the prior models, `num_codes * num_stages`.
        num_classes: classes of a conditional prior, else 0.
    """

    train: np.ndarray
    train_labels: np.ndarray | None
    test: np.ndarray
    test_labels: np.ndarray | None
    num_stages: int
    vocabulary: int
    num_classes: int

    @property
    def map_shape(self):
        return tuple(int(s) for s in self.train.shape[1:])


def prior_code_maps(vqvae, train_images, test_images, workdir, fingerprint, num_classes, stages=None):
    """The cached (or newly extracted) codes of both splits, as the prior's `CodeMaps`.

    Args:
        vqvae: the VQ-VAE.
        train_images, test_images: finite image datasets of both splits.
        workdir: directory of the caches `codes_train.npz` and
            `codes_validation.npz`.
        fingerprint: the caches' key (`code_fingerprint`).
        num_classes: classes of a conditional prior, 0 for an unconditional
            one (whose maps then carry no labels).
        stages: keep only the first `stages` codes of each position of a
            residual VQ-VAE (`PriorConfig.stages`); None = all.

    Raises:
        ValueError: `stages` exceeds the VQ-VAE's codes per position.
    """
    splits = {}
    for name, data in (("train", train_images), ("validation", test_images)):
        path = Path(workdir) / f"codes_{name}.npz"
        splits[name] = load_codes(path, fingerprint) or extract_codes(vqvae, data, path, fingerprint=fingerprint)
    (train, train_labels), (test, test_labels) = splits["train"], splits["validation"]
    if getattr(vqvae, "rank", 2) == 1:
        # A speech VQ-VAE's (T,) or (T, S) codes are 1-row maps (1, T) or
        # (1, T, S): a sequence, time-major (vqvae_tf.training.speech_prior).
        train, test = train[:, None], test[:, None]
    available = train.shape[3] if train.ndim == 4 else 1
    if stages is not None and stages > available:
        raise ValueError(
            f"the prior's stages={stages} exceeds the VQ-VAE's {available} code(s) per position; "
            f"expected 1 to {available}."
        )
    if stages is not None and train.ndim == 4:
        # The first stages only (the codec's stage-0 prior: its finer stages are coded under static tables).
        train, test = train[..., :stages], test[..., :stages]
    # A residual VQ-VAE's (h, w, S) maps are modelled as (h, w * S) token maps.
    num_stages = train.shape[3] if train.ndim == 4 else 1
    if train.ndim == 4:
        train, test = (stages_to_tokens(c, vqvae.num_codes) for c in (train, test))
    return CodeMaps(
        train=train,
        train_labels=train_labels if num_classes else None,
        test=test,
        test_labels=test_labels if num_classes else None,
        num_stages=num_stages,
        vocabulary=vqvae.num_codes * num_stages,
        num_classes=num_classes,
    )


def code_dataset(codes, labels, batch_size, seed, train):
    """A `tf.data` pipeline of code maps (and labels): shuffled and repeated for training, one pass otherwise."""
    import tensorflow as tf

    elements = codes if labels is None else (codes, labels)
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if train:
        dataset = dataset.shuffle(len(codes), seed=seed, reshuffle_each_iteration=True).repeat()
    return dataset.batch(batch_size, drop_remainder=train).prefetch(tf.data.AUTOTUNE)

"""`audio:DIR`: WAV clips below a directory, decoded once into memory, cropped in tf.data.

Every `*.wav` file below DIR (recursive, any case, sorted) is read once by
`vqvae_tf.data.wav` (8/16-bit PCM, 8-48 kHz, channels averaged to mono),
resampled to `sample_rate` and held in memory as float32 in [-1, 1]. Files
that are unreadable, not 8/16-bit PCM, at a rate outside 8-48 kHz, shorter
than `crop_length` samples after resampling, or (with a `label_pattern`)
whose name does not match are skipped, with one log warning per reason
giving the count and the first few names; when none are left,
`DatasetError` says how many were skipped for each reason.

Split: with `validation_list`, the clips named in that file (one name per
line: a path relative to DIR or a file name, `.wav` optional; `#` starts a
comment) are the validation set and every name must exist below DIR;
`LJSPEECH16K_VALIDATION` names 21 of the 106 clips of
`../shared/data/speech/ljspeech16k`. Without one, the
`round(validation_fraction * n)` usable clips (at least 1, at most n - 1)
with the smallest SHA-1 of their relative path are held out, a split that
depends on the file names only, never on `seed`.

Labels: `label_pattern` is a regular expression searched in each file name
(`re.search`, the name without its folder); a clip's class is the text of
the group named `label` if the pattern has one, else its groups joined by
`_` (FSDD `3_jackson_12.wav`: `(?P<label>\\d)_` gives digit classes,
`(?P<digit>\\d)_(?P<speaker>[a-z]+)_` gives 50 digit-speaker classes). Class
indices follow the sorted class names (numerically when all are integers).

Training batches are `(batch_size, crop_length, 1)` float32: each epoch
visits every training clip once in a fresh order (seeded), one crop per clip
at a uniformly random offset drawn statelessly from `(seed, step)`, so the
stream is reproducible with `deterministic=True`. Validation yields each
held-out clip whole, one per batch: `(1, length, 1)`, in sorted order.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from vqvae_tf.data.bundle import AUTOTUNE, DatasetBundle, finish, in_memory_options, step_seed
from vqvae_tf.data.errors import DatasetError
from vqvae_tf.data.wav import BAD_RATE, UNREADABLE, UNSUPPORTED, WavError, load_clip

logger = logging.getLogger(__name__)

#: The held-out clips of `../shared/data/speech/ljspeech16k` (21 of 106).
LJSPEECH16K_VALIDATION = Path(__file__).resolve().parent / "splits" / "ljspeech16k_validation.txt"
#: The shipped validation lists by name (`train.py --validation_list=ljspeech16k`).
VALIDATION_LISTS = {"ljspeech16k": LJSPEECH16K_VALIDATION}

_SHORT, _UNLABELLED = "short", "unlabelled"
_REASONS = (UNREADABLE, UNSUPPORTED, BAD_RATE, _SHORT, _UNLABELLED)


def _reason_text(reason, config):
    return {
        UNREADABLE: "unreadable",
        UNSUPPORTED: "not 8/16-bit PCM",
        BAD_RATE: "at a sample rate outside 8-48 kHz",
        _SHORT: f"shorter than {config.crop_length} samples",
        _UNLABELLED: f"not matching label_pattern {config.label_pattern!r}",
    }[reason]


def _compile(pattern):
    try:
        return re.compile(pattern)
    except re.error as e:
        raise DatasetError(f"label_pattern {pattern!r} is not a valid regular expression: {e}") from e


def _label_of(match):
    """The class text of a `label_pattern` match (see the module docstring)."""
    if "label" in match.re.groupindex:
        return match.group("label")
    groups = match.groups()
    return "_".join(g or "" for g in groups) if groups else match.group(0)


def _sorted_classes(labels):
    if all(text.isdigit() for text in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def scan_audio_folder(directory, config):
    """`(names, clips, label texts, every relative name found)` of the usable WAV files below `directory`.

    Raises:
        DatasetError: the folder is missing, holds no WAV file, or none is
            usable (the message counts the skipped files by reason).
    """
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f"audio folder {str(root)!r} does not exist or is not a directory")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".wav")
    if not paths:
        raise DatasetError(f"no WAV files (.wav) found in {str(root)!r}")
    pattern = _compile(config.label_pattern) if config.label_pattern is not None else None
    names, clips, labels = [], [], []
    skipped = collections.defaultdict(list)
    for path in paths:
        name = path.relative_to(root).as_posix()
        match = pattern.search(path.name) if pattern is not None else None
        if pattern is not None and match is None:
            skipped[_UNLABELLED].append(name)
            continue
        try:
            clip = load_clip(path, config.sample_rate)
        except WavError as e:
            skipped[e.kind].append(f"{name} ({str(e).removeprefix(str(path) + ': ')})")
            continue
        if len(clip) < config.crop_length:
            skipped[_SHORT].append(f"{name} ({len(clip)} samples)")
            continue
        names.append(name)
        clips.append(clip)
        labels.append(_label_of(match) if match is not None else None)
    for reason in _REASONS:
        if skipped[reason]:
            some = skipped[reason]
            logger.warning(
                "skipped %d WAV file(s) %s in %s: %s%s",
                len(some),
                _reason_text(reason, config),
                root,
                ", ".join(some[:5]),
                ", ..." if len(some) > 5 else "",
            )
    if not clips:
        counts = ", ".join(f"{len(skipped[r])} {_reason_text(r, config)}" for r in _REASONS if skipped[r])
        raise DatasetError(f"no usable WAV files in {str(root)!r}: {counts}")
    found = [p.relative_to(root).as_posix() for p in paths]
    return names, clips, labels, found


def validation_list_file(name_or_path):
    """A shipped validation list's file for its name (`VALIDATION_LISTS`), else the path given, as a `Path`."""
    return VALIDATION_LISTS.get(str(name_or_path), Path(name_or_path))


def read_name_list(path):
    """The names listed in a validation list file (blank lines and `#` comments ignored)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise DatasetError(f"cannot read validation_list {str(path)!r}: {e.strerror or e}") from e
    names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DatasetError(f"validation_list {str(path)!r} names no clips")
    return names


def _keys(name):
    """The ways a list line may name the clip at relative path `name`."""
    base = name.rsplit("/", 1)[-1]
    stem = lambda text: text[: -len(".wav")] if text.lower().endswith(".wav") else text
    return {name, base, stem(name), stem(base)}


def split_clips(names, found, directory, config):
    """`(train indices, validation indices)` into `names` (see the module docstring)."""
    n = len(names)
    if config.validation_list is not None:
        listed = read_name_list(config.validation_list)
        known = set().union(*(_keys(f) for f in found))
        missing = [line for line in listed if line not in known]
        if missing:
            raise DatasetError(
                f"validation_list {str(config.validation_list)!r} names {len(missing)} clip(s) not found in "
                f"{str(directory)!r}: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}"
            )
        wanted = set(listed)
        validation = [i for i, name in enumerate(names) if _keys(name) & wanted]
    else:
        if n < 2:
            raise DatasetError(f"audio folder {str(directory)!r} has 1 usable clip: none left for validation")
        n_val = min(max(int(round(n * config.validation_fraction)), 1), n - 1)
        digest = lambda name: hashlib.sha1(name.encode()).hexdigest()
        validation = sorted(sorted(range(n), key=lambda i: digest(names[i]))[:n_val])
    held = set(validation)
    train = [i for i in range(n) if i not in held]
    if not train:
        raise DatasetError(
            f"every one of the {n} usable clips in {str(directory)!r} is in the validation list: none left for training"
        )
    return np.array(train, np.int64), np.array(validation, np.int64)


def _packed(clips, labels):
    """One flat tensor of samples, the start and length of each clip, and the labels."""
    lengths = np.array([len(c) for c in clips], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat = np.concatenate(clips) if clips else np.zeros(0, np.float32)
    return tf.constant(flat), tf.constant(starts), tf.constant(lengths), tf.constant(labels, tf.int32)


def _train_dataset(clips, labels, config):
    flat, starts, lengths, labels = _packed(clips, labels)
    n, crop = len(clips), config.crop_length

    def make_batch(step, index):
        draw = tf.random.stateless_uniform(tf.shape(index), step_seed(config, step), dtype=tf.float64)
        room = tf.gather(lengths, index) - crop + 1
        offset = tf.minimum(tf.cast(draw * tf.cast(room, tf.float64), tf.int64), room - 1)
        positions = (tf.gather(starts, index) + offset)[:, None] + tf.range(crop, dtype=tf.int64)[None, :]
        return tf.gather(flat, positions)[..., None], tf.gather(labels, index)

    # A full permutation of clip indices each epoch, as for in-memory images.
    train = (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=config.seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(config.batch_size, drop_remainder=True)
        .enumerate()
        .map(make_batch, num_parallel_calls=AUTOTUNE)
    )
    return in_memory_options(finish(train, config, train=True))


def _validation_dataset(clips, labels, config):
    flat, starts, lengths, labels = _packed(clips, labels)

    def whole(index):
        clip = flat[starts[index] : starts[index] + lengths[index]]
        return clip[None, :, None], labels[index][None]

    validation = tf.data.Dataset.range(len(clips)).map(whole, num_parallel_calls=AUTOTUNE)
    return in_memory_options(finish(validation, config, train=False))


def _check_config(directory, config):
    if config.crop_length is None:
        raise DatasetError(f"audio:{directory} needs crop_length, the training crop in samples (e.g. 8192)")
    if config.channels not in (None, 1):
        raise DatasetError(f"audio:{directory} is mono (channels=1); received channels={config.channels}")
    if config.flip:
        raise DatasetError(f"flip applies to image datasets, not audio:{directory}")
    if config.cache is False:
        raise DatasetError(f"audio:{directory} always decodes its clips once into memory; cache=False is not supported")
    if config.with_labels and config.label_pattern is None:
        raise DatasetError(
            f"audio:{directory} takes labels from file names: with_labels=True needs a label_pattern, "
            r"e.g. '(?P<label>\d)_' for FSDD"
        )


def audio_bundle(directory, config):
    """The `DatasetBundle` of the WAV files below `directory` (see the module docstring)."""
    _check_config(directory, config)
    names, clips, texts, found = scan_audio_folder(directory, config)
    train_idx, val_idx = split_clips(names, found, directory, config)
    class_names = _sorted_classes(set(texts)) if config.label_pattern is not None else None
    labels = np.array([class_names.index(t) if class_names else -1 for t in texts], np.int32)
    train_clips, val_clips = [clips[i] for i in train_idx], [clips[i] for i in val_idx]
    seconds = sum(len(c) for c in clips) / config.sample_rate
    logger.info(
        "audio:%s: %d clips, %.1f s at %d Hz, %.1f MB in memory",
        directory,
        len(clips),
        seconds,
        config.sample_rate,
        seconds * config.sample_rate * 4 / 1e6,
    )
    train_samples = np.concatenate(train_clips)
    return DatasetBundle(
        train=_train_dataset(train_clips, labels[train_idx], config),
        validation=_validation_dataset(val_clips, labels[val_idx], config),
        channels=1,
        image_size=None,
        description=(
            f"audio:{directory}: {len(train_idx)} train / {len(val_idx)} validation clips "
            f"({seconds:.1f} s in all) at {config.sample_rate} Hz, random {config.crop_length}-sample crops"
            + (f", {len(class_names)} classes" if class_names else "")
        ),
        data_variance=float(np.var(train_samples, dtype=np.float64)),
        num_train=len(train_idx),
        num_validation=len(val_idx),
        num_classes=len(class_names) if class_names else None,
        class_names=class_names,
        sample_rate=config.sample_rate,
        crop_length=config.crop_length,
        validation_names=tuple(names[i] for i in val_idx),
    )

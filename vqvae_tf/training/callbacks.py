"""Keras callbacks of a training run: atomic checkpoints, samples, NaN guard, time limit.

Keras's own `ModelCheckpoint` and `BackupAndRestore` write their files in
place, so a kill during a save leaves a truncated `.keras` zip or `.h5` file
behind and the next run cannot load it. The subclasses here write through
`vqvae_tf.utils.atomic` (a temp file next to the target, renamed onto it),
so every file on disk is either the previous complete version or the new
complete version.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from vqvae_tf.utils.atomic import atomic_output, save_model, write_json
from vqvae_tf.utils.image_grid import comparison_grid, save_comparison_grid

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; nothing was saved after it."""


def read_backup_epoch(backup_dir):
    """Epochs completed according to a `BackupAndRestore` directory (0 if none)."""
    metadata = Path(backup_dir) / "training_metadata.json"
    weights = Path(backup_dir) / "latest.weights.h5"
    if not (metadata.exists() and weights.exists()):
        return 0
    return int(json.loads(metadata.read_text())["epoch"])


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose files are replaced atomically.

    The weights (model, optimizer and every non-trainable variable such as
    the EMA codebook statistics) are replaced first and the epoch counter
    second: a kill between the two repeats one epoch from newer weights
    instead of skipping one. The backup is kept when training ends
    (`delete_checkpoint=False`), so a finished workdir knows it is finished.

    Args:
        backup_dir: directory of the backup (used by nothing else).
        save_freq: `"epoch"` or a number of batches. Defaults to `"epoch"`.
    """

    def __init__(self, backup_dir, save_freq="epoch"):
        super().__init__(backup_dir, save_freq=save_freq, double_checkpoint=False, delete_checkpoint=False)

    def _save_model(self):
        with atomic_output(self._weights_path) as temp:
            self.model.save_weights(str(temp), overwrite=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        write_json(self._training_metadata_path, metadata, indent=None)


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` for `.keras` files, written atomically.

    With `save_best_only=True` a NaN `val_loss` never counts as an
    improvement, so the best checkpoint is never replaced by a diverged
    model. Pass `initial_value_threshold` (the best value so far) when
    resuming, or the first resumed epoch would replace the file whatever
    its score.
    """

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):
            save_model(self.model, filepath)


class TimeLimit(keras.callbacks.Callback):
    """Stops training at the first batch that ends `seconds` after training began.

    The epoch it stops in still runs its validation and epoch-end callbacks
    (Keras's `stop_training`), so the history ends with a validated epoch;
    `steps` counts the training batches run.

    Args:
        seconds: float > 0, the wall-clock budget of `fit`.

    Example:

    ```python
    limit = TimeLimit(25 * 60)
    model.fit(data, epochs=10, steps_per_epoch=100, callbacks=[limit])
    limit.steps   # batches run, 1000 if the budget sufficed
    ```
    """

    def __init__(self, seconds):
        super().__init__()
        self.seconds = float(seconds)
        self.steps = 0
        self.stopped = False

    def on_train_begin(self, logs=None):
        import time

        self._start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        import time

        self.steps += 1
        if time.monotonic() - self._start > self.seconds:
            self.model.stop_training = True
            self.stopped = True


class NaNGuard(keras.callbacks.Callback):
    """Raises `NonFiniteLossError` as soon as a loss is NaN or infinite.

    Unlike `keras.callbacks.TerminateOnNaN` (which lets the epoch end, so
    epoch-end callbacks would back up and save the diverged weights), it
    raises from the batch, so no later callback of the run saves anything:
    the last backup and `best.keras` stay those of the last good epoch.
    Put it first in the callback list so it also runs before the savers at
    the end of an epoch (a NaN `val_loss`).
    """

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, f"training batch {batch + 1} of epoch {getattr(self, '_epoch', 0) + 1}", ("loss",))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, f"the end of epoch {epoch + 1}", ("loss", "val_loss"))

    @staticmethod
    def _check(logs, where, keys):
        for key in keys:
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                raise NonFiniteLossError(
                    f"{key} became {float(value)} at {where}; training stopped, and the last backup and "
                    "best checkpoint are those of the last finite epoch. Lower the learning rate or check "
                    "the data."
                )


class ReconstructionSamples(keras.callbacks.Callback):
    """After each epoch: a PNG grid and a TensorBoard image of reconstructions.

    Writes `directory/epoch_XXX.png` (1-based epoch) and `directory/latest.png`
    (inputs on top, reconstructions below), and the same grid as the image
    summary `reconstructions` in `log_dir`.

    Args:
        images: float array `(N, H, W, C)` in [0, 1], fixed validation
            images.
        directory: where the PNG files go.
        log_dir: TensorBoard directory, or None for no summary.
    """

    def __init__(self, images, directory, log_dir=None):
        super().__init__()
        self.images = np.asarray(images, np.float32)
        self.directory = Path(directory)
        self.log_dir = log_dir
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        reconstructions = np.asarray(self.model.predict_on_batch(self.images), np.float32)
        save_comparison_grid(self.directory / f"epoch_{epoch + 1:03d}.png", self.images, reconstructions)
        save_comparison_grid(self.directory / "latest.png", self.images, reconstructions)
        if self.log_dir is not None:
            self._writer = self._writer or tf.summary.create_file_writer(str(self.log_dir))
            grid = comparison_grid(self.images, reconstructions)
            with self._writer.as_default():
                tf.summary.image("reconstructions", grid[None], step=epoch + 1)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class CodeUsageHistogram(keras.callbacks.Callback):
    """TensorBoard histograms of how often each code was used, per epoch.

    `code_usage/train` holds the training epoch's counts (read just before
    validation resets the model's metrics), `code_usage/validation` the
    validation pass's. Each histogram is over code indices, weighted by
    counts, so its shape shows which part of the codebook is alive.

    Args:
        log_dir: TensorBoard directory.
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = str(log_dir)
        self._writer = None
        self._train_counts = None
        self._in_fit = False

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_test_begin(self, logs=None):
        if self._in_fit:
            self._train_counts = self._counts()

    def on_epoch_end(self, epoch, logs=None):
        if self._train_counts is None:
            self._train_counts, validation = self._counts(), None
        else:
            validation = self._counts()
        self._writer = self._writer or tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for name, counts in (("train", self._train_counts), ("validation", validation)):
                if counts is not None:
                    self._histogram(f"code_usage/{name}", counts, epoch + 1)
        self._writer.flush()
        self._train_counts = None

    def on_train_end(self, logs=None):
        self._in_fit = False
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _counts(self):
        return np.asarray(self.model.dead_codes_tracker.usage_histogram(), np.float64)

    @staticmethod
    def _histogram(name, counts, step):
        # tf.summary.histogram takes samples and re-buckets them over their
        # range; writing one exact (left, right, count) bucket per code keeps
        # the code index on the x axis even when whole ranges of codes are dead.
        from tensorboard.plugins.histogram import metadata

        edges = np.arange(len(counts) + 1, dtype=np.float64)
        buckets = np.stack([edges[:-1], edges[1:], counts], axis=1)
        tf.summary.write(
            name,
            tensor=tf.constant(buckets, tf.float64),
            step=step,
            metadata=metadata.create_summary_metadata(display_name=name, description="uses per code"),
        )

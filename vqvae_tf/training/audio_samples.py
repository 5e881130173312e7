"""Audio runs' samples: WAV files and TensorBoard audio of validation clips, per epoch.

Where an image run writes PNG grids (`callbacks.ReconstructionSamples`), a
run on an `audio:` dataset writes, after each epoch, for each of a few
validation clips `k` (`samples/` below the workdir, epoch 1-based):

    samples/epoch_XXX_clipK_input.wav
    samples/epoch_XXX_clipK_reconstruction.wav

16-bit PCM mono at the run's sample rate (`vqvae_tf.data.wav.write_wav`,
atomic), and the TensorBoard audio summary `audio/clipK` holding the input
then the reconstruction. Each clip is its validation clip's first
`MAX_SAMPLE_SECONDS` seconds, trimmed to a multiple of the model's
downsampling (the validation pipeline's own trimming, `fit_lengths`).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from vqvae_tf.data.wav import write_wav

#: Longest sample clip, in seconds (LJ Speech clips run to 10 s).
MAX_SAMPLE_SECONDS = 4.0

__all__ = ["MAX_SAMPLE_SECONDS", "AudioSamples", "fit_lengths", "sample_clips"]


def fit_lengths(dataset, multiple):
    """`dataset` of `(batch, T, C)` clips (or `(clips, labels)`) with T trimmed to a multiple of `multiple`.

    The rank-1 model needs lengths divisible by its downsampling; whole
    validation clips have any length, so their last `T % multiple` samples
    (fewer than `multiple`, at most 1 ms at 16 kHz for 16) are dropped.
    Trimming, not padding, keeps padded zeros out of the validation loss.
    """

    def trim(x):
        length = tf.shape(x)[1] // multiple * multiple
        return x[:, :length]

    def trim_element(*element):
        if len(element) == 1:
            return trim(element[0])
        return (trim(element[0]), *element[1:])

    return dataset.map(trim_element)


def sample_clips(validation, count, multiple, sample_rate):
    """The first `count` clips of the (one clip per batch) validation set, as float32 `(T, 1)` arrays.

    Each is at most `MAX_SAMPLE_SECONDS` long and a multiple of `multiple`
    samples; clips shorter than `multiple` are left out.
    """
    limit = int(MAX_SAMPLE_SECONDS * sample_rate) // multiple * multiple
    clips = []
    for batch in validation:
        batch = batch[0] if isinstance(batch, (tuple, list)) else batch
        for clip in np.asarray(batch, np.float32):
            length = min(len(clip) // multiple * multiple, limit)
            if length:
                clips.append(clip[:length])
            if len(clips) == count:
                return clips
    return clips


class AudioSamples(keras.callbacks.Callback):
    """After each epoch: input and reconstruction WAV files, and TensorBoard audio, of fixed clips.

    Args:
        clips: list of float32 `(T, 1)` arrays in [-1, 1] (lengths may
            differ; each a multiple of the model's downsampling).
        directory: where the WAV files go.
        sample_rate: the clips' rate in Hz.
        log_dir: TensorBoard directory, or None for no summary.
    """

    def __init__(self, clips, directory, sample_rate, log_dir=None):
        super().__init__()
        self.clips = [np.asarray(c, np.float32) for c in clips]
        self.directory = Path(directory)
        self.sample_rate = int(sample_rate)
        self.log_dir = log_dir
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self.log_dir is not None:
            self._writer = self._writer or tf.summary.create_file_writer(str(self.log_dir))
        for k, clip in enumerate(self.clips):
            # One clip per call: the clips differ in length.
            reconstruction = np.asarray(self.model.predict_on_batch(clip[None]), np.float32)[0]
            stem = self.directory / f"epoch_{epoch + 1:03d}_clip{k}"
            write_wav(f"{stem}_input.wav", clip, self.sample_rate)
            write_wav(f"{stem}_reconstruction.wav", reconstruction, self.sample_rate)
            if self._writer is not None:
                pair = np.clip(np.stack([clip, reconstruction]), -1.0, 1.0)
                with self._writer.as_default():
                    tf.summary.audio(
                        f"audio/clip{k}",
                        pair,
                        self.sample_rate,
                        step=epoch + 1,
                        max_outputs=2,
                        description="input, then reconstruction",
                    )
        if self._writer is not None:
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

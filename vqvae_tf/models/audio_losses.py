"""Reconstruction losses for waveforms: L1 on the samples plus a multi-resolution STFT loss.

`multi_resolution_stft_loss(x, y)` compares the magnitude spectrograms of a
target `x` and a reconstruction `y` at several frame lengths (256, 512 and
1024 samples, hop a quarter of the frame, Hann window, `tf.signal.stft`).
At each resolution it adds two terms (Yamamoto et al. 2020, section 2.3):

- spectral convergence, `|| |X| - |Y| ||_F / || |X| ||_F` per clip;
- log-magnitude distance, `mean |log(|X| + eps) - log(|Y| + eps)|`;

and the result is the mean over clips and resolutions. Both terms are 0 for
identical signals. `waveform_stft_loss` adds the mean squared sample error
divided by the data variance (the image models' term), which keeps the
phase (the spectrogram terms ignore it): this is the loss
`VQVAE(reconstruction_loss="stft")` trains with. With a mean absolute
error instead (about 0.02 on speech, against about 2 for the spectrogram
terms) a short LJ Speech run ended with a negative waveform SNR; with the
variance-scaled squared error the two terms start on the same scale.

Everything is computed in float32 whatever the model's policy (float16
spectrogram magnitudes of 1024-sample frames overflow). The losses are means
over the batch a replica sees; `VQVAE.train_step` divides its total loss by
the replica count (docs/design.md, fact 5), so these need no scaling of
their own.

Inputs are `(batch, T, 1)` (the rank-1 model layout) or `(batch, T)`.
Clips shorter than a frame are zero-padded to one frame (`pad_end=True`).

References:
    Yamamoto, Song, Kim. Parallel WaveGAN. ICASSP 2020. arXiv:1910.11480.
    Zeghidour et al. SoundStream. 2021. arXiv:2107.03312.
"""

import tensorflow as tf

#: Frame lengths (samples) of the default resolutions; hop = frame // 4.
STFT_FRAME_LENGTHS = (256, 512, 1024)
#: Added to magnitudes before the log, and to norms before dividing.
EPSILON = 1e-5

#: Mel bands per default resolution (frame length / 8, as in Kumar et al. 2023's ratio of about 6).
MEL_BANDS = (32, 64, 128)

#: `VQVAE(reconstruction_loss=...)` names of the losses for audio (rank 1) only.
AUDIO_LOSSES = ("stft", "stft_mel")

__all__ = [
    "AUDIO_LOSSES",
    "EPSILON",
    "MEL_BANDS",
    "STFT_FRAME_LENGTHS",
    "audio_loss",
    "multi_resolution_mel_loss",
    "multi_resolution_stft_loss",
    "stft_magnitude",
    "waveform_stft_loss",
]


def _as_batch_of_signals(x):
    x = tf.cast(x, tf.float32)
    if x.shape.rank == 3:
        x = x[..., 0]
    if x.shape.rank != 2:
        raise ValueError(f"audio losses expect (batch, T, 1) or (batch, T) signals; received shape {tuple(x.shape)}.")
    return x


def stft_magnitude(x, frame_length):
    """`|STFT(x)|`, `(batch, frames, frame_length // 2 + 1)` float32, hop `frame_length // 4`, Hann window."""
    signal = _as_batch_of_signals(x)
    spectrum = tf.signal.stft(
        signal,
        frame_length=frame_length,
        frame_step=frame_length // 4,
        fft_length=frame_length,
        window_fn=tf.signal.hann_window,
        pad_end=True,
    )
    return tf.abs(spectrum)


def multi_resolution_stft_loss(x, y, frame_lengths=STFT_FRAME_LENGTHS, eps=EPSILON):
    """Spectral convergence plus log-magnitude L1, averaged over `frame_lengths` (see the module docstring).

    Args:
        x: target signals, `(batch, T, 1)` or `(batch, T)`.
        y: reconstructions, the same shape.
        frame_lengths: STFT frame lengths in samples. Defaults to
            `STFT_FRAME_LENGTHS`.
        eps: added to magnitudes before the log and to the norm of `|X|`.

    Returns:
        A float32 scalar, >= 0, 0 when `x == y`.
    """
    if not frame_lengths:
        raise ValueError("multi_resolution_stft_loss needs at least one frame length.")
    total = 0.0
    for frame_length in frame_lengths:
        target, estimate = stft_magnitude(x, frame_length), stft_magnitude(y, frame_length)
        difference = tf.sqrt(tf.reduce_sum(tf.square(target - estimate), axis=[1, 2]) + eps**2)
        norm = tf.sqrt(tf.reduce_sum(tf.square(target), axis=[1, 2])) + eps
        # The eps**2 under the root keeps the gradient finite at x == y;
        # subtracting eps makes identical signals score exactly 0.
        convergence = tf.reduce_mean((difference - eps) / norm)
        log_distance = tf.reduce_mean(tf.abs(tf.math.log(target + eps) - tf.math.log(estimate + eps)))
        total += convergence + log_distance
    return total / len(frame_lengths)


def multi_resolution_mel_loss(
    x, y, sample_rate=16000, frame_lengths=STFT_FRAME_LENGTHS, mel_bands=MEL_BANDS, eps=EPSILON
):
    """Log-mel L1, `mean |log(mel(|X|) + eps) - log(mel(|Y|) + eps)|`, averaged over resolutions.

    The mel filters (HTK scale, 0 Hz to `sample_rate / 2`,
    `tf.signal.linear_to_mel_weight_matrix`) pool the magnitudes of
    `stft_magnitude` into `mel_bands[i]` bands at `frame_lengths[i]`: each
    octave above 1 kHz weighs about as much as the one below it, where the
    linear bins of `multi_resolution_stft_loss` give 4-8 kHz half the weight.

    Args:
        x: target signals, `(batch, T, 1)` or `(batch, T)`.
        y: reconstructions, the same shape.
        sample_rate: Hz, which places the mel filters. Defaults to 16000.
        frame_lengths: STFT frame lengths in samples.
        mel_bands: mel bands per frame length, the same length.
        eps: added to the mel magnitudes before the log.

    Returns:
        A float32 scalar, >= 0, 0 when `x == y`.
    """
    if not frame_lengths or len(frame_lengths) != len(mel_bands):
        raise ValueError(
            f"multi_resolution_mel_loss needs one mel band count per frame length; received "
            f"frame_lengths={tuple(frame_lengths)!r}, mel_bands={tuple(mel_bands)!r}."
        )
    total = 0.0
    for frame_length, bands in zip(frame_lengths, mel_bands):
        filters = tf.signal.linear_to_mel_weight_matrix(bands, frame_length // 2 + 1, sample_rate, 0.0, sample_rate / 2)
        target = tf.tensordot(stft_magnitude(x, frame_length), filters, 1)
        estimate = tf.tensordot(stft_magnitude(y, frame_length), filters, 1)
        total += tf.reduce_mean(tf.abs(tf.math.log(target + eps) - tf.math.log(estimate + eps)))
    return total / len(frame_lengths)


def waveform_stft_loss(x, y, data_variance=1.0, frame_lengths=STFT_FRAME_LENGTHS, mel=False, sample_rate=16000):
    """`mean (x - y)^2 / data_variance` plus `multi_resolution_stft_loss(x, y)`: `reconstruction_loss="stft"`.

    With `mel=True`, plus `multi_resolution_mel_loss(x, y, sample_rate)` as
    well: `reconstruction_loss="stft_mel"`.
    """
    x, y = tf.cast(x, tf.float32), tf.cast(y, tf.float32)
    waveform = tf.reduce_mean(tf.square(x - y)) / data_variance
    total = waveform + multi_resolution_stft_loss(x, y, frame_lengths)
    if mel:
        total += multi_resolution_mel_loss(x, y, sample_rate, frame_lengths)
    return total


def audio_loss(name, x, y, data_variance=1.0, sample_rate=None):
    """The loss of `VQVAE(reconstruction_loss=name)`, `name` in `AUDIO_LOSSES` (16 kHz if `sample_rate` is None)."""
    if name not in AUDIO_LOSSES:
        raise ValueError(f"audio_loss expects one of {AUDIO_LOSSES}; received {name!r}.")
    return waveform_stft_loss(x, y, data_variance, mel=name == "stft_mel", sample_rate=sample_rate or 16000)

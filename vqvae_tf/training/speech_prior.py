"""The prior stage on a speech run: segments, 1-row token maps, bit rates and WAV samples.

A rank-1 (waveform) VQ-VAE gives code maps `(N, T)`, or `(N, T, S)` with a
residual quantizer, for clips of `T * hop` samples. `train_prior` models
fixed-length segments of them as 1-row token maps `(N, 1, T * S)`: a
sequence, time-major with the stages inner (`(N, T, S)` viewed as
`(N, 1, T, S)` by `vqvae_tf.training.code_files`, then
`vqvae_tf.priors.stage_tokens`), so the prior predicts a frame's coarse code
first, then each finer one given the coarser and every earlier frame.

Segments are `crop_length` samples (the run's training crop): the training
codes come from the run's own random crops, the test codes from every
held-out clip cut into whole segments of that length, the remainder dropped
(`validation_segments`). `speech_rates` turns bits per token into the
prior-coded bit rate of held-out speech against the packed rate
`frames/s * S * log2 K`; `write_sample_wavs` writes the decoded samples.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vqvae_tf.data.wav import write_wav

__all__ = [
    "AUDIO_CROPS_PER_CLIP",
    "audio_extraction_batches",
    "frame_unigram_nats",
    "speech_rates",
    "stage_nats",
    "validation_segments",
    "write_sample_wavs",
]

#: Training crops extracted per training clip when `train_batches` is unset:
#: one pass of the audio pipeline gives one crop per clip, too few for a
#: prior (85 crops of 0.5 s for LJ Speech's 85 training clips of ~7 s).
AUDIO_CROPS_PER_CLIP = 64


def audio_extraction_batches(train_batches, num_train, batch_size):
    """Batches of training crops to extract: `train_batches`, else `AUDIO_CROPS_PER_CLIP` crops per clip."""
    if train_batches is not None:
        return train_batches
    return max(1, math.ceil(AUDIO_CROPS_PER_CLIP * num_train / batch_size))


def validation_segments(validation, length):
    """Whole `length`-sample segments of each held-out clip, a batch per clip.

    Args:
        validation: the audio pipeline's validation set: `(1, L, 1)` clips,
            or `((1, L, 1), (1,))` pairs with labels.
        length: segment length in samples (a multiple of the model's hop).

    Returns:
        A dataset of `(n, length, 1)` batches (with labels `(n,)`, each
        the clip's), `n = L // length`; the last `L % length` samples of a
        clip are dropped, and clips shorter than `length` give nothing.
    """
    import tensorflow as tf

    def cut(clip):
        count = tf.shape(clip)[1] // length
        return tf.reshape(clip[0, : count * length], (count, length, 1)), count

    def element(*parts):
        segments, count = cut(parts[0])
        if len(parts) == 1:
            return segments
        return segments, tf.repeat(parts[1][:1], count)

    def non_empty(*parts):
        return tf.shape(parts[0])[0] > 0

    return validation.map(element).filter(non_empty)


def stage_nats(model, tokens, labels, num_stages, batch_size):
    """Mean NLL in nats of each stage's tokens in token maps `(N, 1, T * S)` (or `(N, 1, S)` frames).

    The mean over stages is the NLL per token (every stage has one token a
    frame), as `vqvae_tf.priors.likelihood.nll_per_code` gives it.

    Args:
        model: a prior (or `UnigramPrior`) with `logits(tokens, labels)`.
        tokens: int token maps.
        labels: class ids `(N,)` of a conditional prior, else None.
        num_stages: S.
        batch_size: maps per forward pass.

    Returns:
        float64 `(S,)`.
    """
    from vqvae_tf.priors.likelihood import code_log_prob

    tokens = np.asarray(tokens)
    if not len(tokens):
        raise ValueError("stage_nats received no token maps; expected at least one.")
    totals = np.zeros(num_stages)
    for start in range(0, len(tokens), batch_size):
        batch = tokens[start : start + batch_size]
        batch_labels = None if labels is None else labels[start : start + batch_size]
        log_prob = np.asarray(code_log_prob(model.logits(batch, batch_labels), batch), np.float64)
        totals -= log_prob.reshape(len(batch), -1, num_stages).sum(axis=(0, 1))
    return totals / (tokens.size // num_stages)


def frame_unigram_nats(train_tokens, test_tokens, vocabulary, num_stages):
    """NLL in nats of each stage's tokens in `test_tokens` under its code frequencies in `train_tokens`.

    The unigram baseline of speech: a segment starts anywhere in a clip, so
    the frequencies are pooled over time (one distribution per stage, the
    codec's static model), not counted per position as for image maps.

    Args:
        train_tokens, test_tokens: int token maps `(N, 1, T * S)`.
        vocabulary: tokens, `S * K`.
        num_stages: S.

    Returns:
        float64 `(S,)`, as `stage_nats`.
    """
    from vqvae_tf.priors.unigram import UnigramPrior

    frames = lambda tokens: np.asarray(tokens).reshape(-1, 1, num_stages)
    unigram = UnigramPrior(vocabulary, (1, num_stages)).fit(frames(train_tokens))
    return stage_nats(unigram, frames(test_tokens), None, num_stages, batch_size=4096)


def speech_rates(bits_per_token, unigram_bits_per_token, sample_rate, hop, num_codes, num_stages):
    """Bit rates of held-out speech in kbps: under the prior, the unigram baseline, and packed codes.

    Returns:
        A dict: `frames_per_second` (`sample_rate / hop`),
        `tokens_per_second` (times S), `prior_kbps` (bits per token *
        tokens per second), `unigram_kbps`, `packed_kbps` (`frames/s * S *
        log2 K`) and `prior_kbps_reduction_vs_packed` (fraction).
    """
    frames = sample_rate / hop
    tokens = frames * num_stages
    packed = tokens * math.log2(num_codes) / 1000.0
    prior = bits_per_token * tokens / 1000.0
    return {
        "frames_per_second": frames,
        "tokens_per_second": tokens,
        "prior_kbps": prior,
        "unigram_kbps": unigram_bits_per_token * tokens / 1000.0,
        "packed_kbps": packed,
        "prior_kbps_reduction_vs_packed": 1.0 - prior / packed,
    }


def write_sample_wavs(directory, clips, sample_rate):
    """Writes clips `(n, T, 1)` as `directory/prior_sample_k.wav` (16-bit PCM, atomic); returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, clip in enumerate(np.asarray(clips, np.float32)):
        path = directory / f"prior_sample_{k}.wav"
        write_wav(path, clip, sample_rate)
        paths.append(path)
    return paths

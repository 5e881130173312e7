"""Chunked runs of a speech network: bounded activations, exactly the codes of a whole-signal run.

A strided 1-D convolutional encoder (or decoder) computes each output from a
bounded window of its input: the model's receptive field (the sidecar's
`receptive_field`, samples). Running the networks on chunks of
`chunk_frames` code frames, each with `context_frames(model)` frames of the
signal before it (and after it, for a non-causal model) and keeping only
the chunk's own frames, therefore gives the same numbers as one run over the
whole signal: every kept output sees the same inputs, and the zero padding
at a chunk's edge lies outside its window. Chunks start on frame
boundaries, so the strided layers see the same grid. The activations held
at a time are those of one chunk plus its context.
"""

from __future__ import annotations

import numpy as np

from vqvae_tf.codec.model import CodecError, CodecModel
from vqvae_tf.utils.checks import check_int

__all__ = ["DEFAULT_CHUNK_FRAMES", "context_frames", "decode_audio_codes", "encode_audio_codes"]

#: Code frames per network run: 512 frames are 10.24 s at 50 frames/s (16 kHz, hop 320).
DEFAULT_CHUNK_FRAMES = 512


def context_frames(model: CodecModel) -> tuple[int, int]:
    """`(left, right)` code frames of overlap that make chunked runs equal a whole-signal run.

    Any output of the encoder or of the decoder depends on fewer than
    `receptive_field` input samples (the sidecar's reach of encoder and
    decoder together bounds each), so `ceil(receptive_field / hop) + 1`
    frames on each side suffice; a causal network needs none on the right.
    Without a receptive field in the sidecar (not a speech network), `(None,
    None)`: the networks then run on the whole signal at once.
    """
    if model.receptive_field is None:
        return None, None
    reach = -(-int(model.receptive_field) // model.downsample) + 1
    return reach, 0 if model.causal else reach


def _chunks(frames: int, model: CodecModel, chunk_frames: int):
    """`(start, stop, first, last)` frames: each chunk's core `[first, last)` and its run `[start, stop)`."""
    chunk_frames = check_int("chunk_frames", chunk_frames, minimum=1, error=CodecError)
    left, right = context_frames(model)
    if left is None:
        yield 0, frames, 0, frames
        return
    for first in range(0, frames, chunk_frames):
        last = min(frames, first + chunk_frames)
        yield max(0, first - left), min(frames, last + right), first, last


def encode_audio_codes(samples: np.ndarray, model: CodecModel, *, chunk_frames: int = DEFAULT_CHUNK_FRAMES):
    """The codes `(frames,)` or `(frames, S)` of float32 mono samples at the model's rate, chunk by chunk.

    The samples are zero-padded to whole frames; the result equals one
    encoder run on the whole padded signal (see `context_frames`).
    """
    hop = model.downsample
    frames = -(-len(samples) // hop)
    padded = np.zeros(frames * hop, np.float32)
    padded[: len(samples)] = samples
    pieces = []
    for start, stop, first, last in _chunks(frames, model, chunk_frames):
        codes = model.encoder.encode(padded[start * hop : stop * hop, None])
        pieces.append(codes[first - start : last - start])
    return np.ascontiguousarray(np.concatenate(pieces))


def decode_audio_codes(codes: np.ndarray, model: CodecModel, *, chunk_frames: int = DEFAULT_CHUNK_FRAMES):
    """float32 samples `(frames * hop,)` at the model's rate of a full code map, chunk by chunk."""
    hop = model.downsample
    pieces = []
    for start, stop, first, last in _chunks(len(codes), model, chunk_frames):
        decoded = model.decoder.decode(codes[start:stop])[:, 0]
        pieces.append(decoded[(first - start) * hop : (last - start) * hop])
    return np.concatenate(pieces)

"""WAV reading, writing and resampling for the training data: `vqvae_tf.utils.wav`, re-exported.

The code lives in `vqvae_tf.utils.wav` so that the device side
(`vqvae_tf.codec`, which may not import `vqvae_tf.data`) uses the same
reader; this module keeps the data package's names (`vqvae_tf.data.wav.*`)
working.
"""

from vqvae_tf.utils.wav import (
    BAD_RATE,
    MAX_RATE,
    MIN_RATE,
    TOO_SHORT,
    UNREADABLE,
    UNSUPPORTED,
    WavError,
    WavFormat,
    load_clip,
    read_wav,
    resample,
    wav_format,
    write_wav,
)

__all__ = [
    "BAD_RATE",
    "MAX_RATE",
    "MIN_RATE",
    "TOO_SHORT",
    "UNREADABLE",
    "UNSUPPORTED",
    "WavError",
    "WavFormat",
    "load_clip",
    "read_wav",
    "resample",
    "wav_format",
    "write_wav",
]

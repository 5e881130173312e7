"""WAV files as float32 mono at a chosen rate: `read_wav`, `resample`, `load_clip`, `write_wav`.

NumPy, SciPy and the standard library only (no TensorFlow), in `utils` so
that the device side (`vqvae_tf.codec`) reads and writes WAV files with the
same code as the training data (`vqvae_tf.data.wav` re-exports this module).

Read: 8-bit unsigned and 16-bit signed PCM (format tag 1, or
WAVE_FORMAT_EXTENSIBLE with the PCM sub-format), any channel count, sample
rates from `MIN_RATE` to `MAX_RATE` Hz, through the standard library `wave`
module and NumPy. Samples become float32 in [-1, 1): 8-bit as
`(x - 128) / 128`, 16-bit as `x / 32768`; channels are averaged to mono.

Refused, with a `WavError` whose message says what the file is and how to
convert it: float WAVs, 24- and 32-bit PCM, other codecs (A-law, mu-law,
ADPCM, ...), sample rates outside 8-48 kHz, empty files (0 bytes), and files
that are not RIFF/WAVE or are truncated (fewer sample bytes than the header
declares). A valid WAV with no samples reads as an empty array, unless the
caller asks for `min_frames` (a codec needs at least one code frame): then
fewer frames raise a `TOO_SHORT` error. The error's `kind` (`UNREADABLE`,
`UNSUPPORTED`, `BAD_RATE`, `TOO_SHORT`) is what a folder scan counts skipped
files by.

Resampling (`resample`) is polyphase: `scipy.signal.resample_poly(x, up,
down)` with `up / down` the target/source rate ratio reduced by their gcd
(16 kHz from 44.1 kHz is up 160, down 441), whose default anti-aliasing
filter is a Kaiser-windowed (beta 5) FIR low-pass at the lower Nyquist
frequency. The filter's ripple can overshoot full scale slightly, so the
result is clipped to [-1, 1].

Write: `write_wav` writes mono 16-bit PCM atomically (training's audio
samples).
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import wave

import numpy as np

from vqvae_tf.utils.atomic import atomic_output
from vqvae_tf.utils.checks import check_int

MIN_RATE, MAX_RATE = 8000, 48000
UNREADABLE, UNSUPPORTED, BAD_RATE, TOO_SHORT = "unreadable", "unsupported", "bad_rate", "too_short"

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_CODECS = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}
_CONVERT = "convert it to 16-bit PCM, e.g. `sox IN.wav -b 16 -e signed-integer OUT.wav`"


class WavError(ValueError):
    """A WAV file that cannot be used; `kind` is `UNREADABLE`, `UNSUPPORTED`, `BAD_RATE` or `TOO_SHORT`.

    A `ValueError` (what the entry points turn into one-line messages); not
    a `vqvae_tf.data.DatasetError`, since the device side may not import
    `vqvae_tf.data`.
    """

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class WavFormat:
    """What a WAV file's `fmt ` chunk says, and where its `data` chunk is."""

    format_tag: int  # the sub-format's tag for WAVE_FORMAT_EXTENSIBLE
    channels: int
    sample_rate: int
    bits: int
    extensible: bool
    data_offset: int
    data_size: int


def wav_format(path: str | os.PathLike) -> WavFormat:
    """Parses the RIFF header of `path` (no samples read).

    Raises:
        WavError: `UNREADABLE` when the file is missing or is not RIFF/WAVE
            with a `fmt ` and a `data` chunk.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            riff = f.read(12)
            if not riff:
                raise WavError(f"{name}: empty file (0 bytes); expected a RIFF/WAVE file", UNREADABLE)
            if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:] != b"WAVE":
                raise WavError(f"{name}: not a RIFF/WAVE file", UNREADABLE)
            fmt = data = None
            while fmt is None or data is None:
                header = f.read(8)
                if len(header) < 8:
                    break
                chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
                if chunk == b"fmt ":
                    fmt = f.read(size)
                    f.seek(size % 2, os.SEEK_CUR)
                elif chunk == b"data":
                    data = (f.tell(), size)
                    f.seek(size + size % 2, os.SEEK_CUR)
                else:
                    f.seek(size + size % 2, os.SEEK_CUR)
    except OSError as e:
        raise WavError(f"{name}: cannot read ({e.strerror or e})", UNREADABLE) from e
    if fmt is None or len(fmt) < 16 or data is None:
        raise WavError(f"{name}: no {'fmt ' if fmt is None or len(fmt) < 16 else 'data'} chunk", UNREADABLE)
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    extensible = tag == _EXTENSIBLE
    if extensible:
        if len(fmt) < 40:
            raise WavError(f"{name}: WAVE_FORMAT_EXTENSIBLE header too short ({len(fmt)} bytes)", UNREADABLE)
        tag = struct.unpack("<H", fmt[24:26])[0]
    return WavFormat(tag, channels, rate, bits, extensible, data[0], data[1])


def _check_format(name: str, info: WavFormat) -> None:
    if info.format_tag == _FLOAT:
        raise WavError(f"{name}: {info.bits}-bit float WAV is not read; {_CONVERT}", UNSUPPORTED)
    if info.format_tag != _PCM:
        codec = _CODECS.get(info.format_tag, "a compressed format")
        raise WavError(f"{name}: not PCM (format tag 0x{info.format_tag:04x}, {codec}); {_CONVERT}", UNSUPPORTED)
    if info.bits not in (8, 16):
        raise WavError(
            f"{name}: {info.bits}-bit PCM is not read (only 8-bit unsigned and 16-bit signed); {_CONVERT}", UNSUPPORTED
        )
    if info.channels < 1:
        raise WavError(f"{name}: the header declares {info.channels} channels", UNREADABLE)
    if not MIN_RATE <= info.sample_rate <= MAX_RATE:
        raise WavError(
            f"{name}: sample rate {info.sample_rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz; "
            f"resample it first, e.g. `sox IN.wav -r 16000 OUT.wav`",
            BAD_RATE,
        )


def _read_frames(name: str, info: WavFormat) -> bytes:
    """The sample bytes, through `wave` (the raw data chunk for EXTENSIBLE on Python < 3.12)."""
    frame = info.channels * info.bits // 8
    try:
        with wave.open(name, "rb") as w:
            expected = w.getnframes() * frame
            raw = w.readframes(w.getnframes())
    except wave.Error as e:
        if not info.extensible:
            raise WavError(f"{name}: unreadable WAV ({e})", UNREADABLE) from e
        # Python's wave reads WAVE_FORMAT_EXTENSIBLE only from 3.12 on; the
        # header was parsed above, so read the data chunk directly.
        expected = info.data_size - info.data_size % frame
        with open(name, "rb") as f:
            f.seek(info.data_offset)
            raw = f.read(info.data_size)
    except (EOFError, OSError) as e:
        raise WavError(f"{name}: unreadable WAV ({e})", UNREADABLE) from e
    if len(raw) < expected:
        raise WavError(
            f"{name}: truncated: the header declares {expected // frame} frames, the file holds {len(raw) // frame}",
            UNREADABLE,
        )
    return raw[:expected]


def read_wav(path: str | os.PathLike, min_frames: int = 0) -> tuple[np.ndarray, int]:
    """`(samples, sample_rate)`: float32 mono samples in [-1, 1) of an 8/16-bit PCM WAV file.

    Args:
        path: the WAV file.
        min_frames: the fewest sample frames (at the file's own rate) the
            caller can use; 0 (the default) accepts an empty WAV.

    Raises:
        WavError: the file is unreadable, not 8/16-bit PCM, its rate is
            outside 8-48 kHz (see the module docstring), or it holds fewer
            than `min_frames` frames (`TOO_SHORT`).
    """
    name = os.fspath(path)
    min_frames = check_int("min_frames", min_frames, 0)
    info = wav_format(name)
    _check_format(name, info)
    raw = _read_frames(name, info)
    frames = len(raw) // (info.channels * info.bits // 8)
    if frames < min_frames:
        what = "no samples" if frames == 0 else f"{frames} sample frames ({frames / info.sample_rate:.4f} s)"
        raise WavError(f"{name}: holds {what}; at least {min_frames} frames are needed", TOO_SHORT)
    if info.bits == 8:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    samples = samples.reshape(-1, info.channels)
    mono = samples[:, 0] if info.channels == 1 else samples.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(mono, np.float32), info.sample_rate


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """`samples` at `rate_in` Hz as float32 at `rate_out` Hz, polyphase (see the module docstring).

    The output has `ceil(len(samples) * rate_out / rate_in)` samples,
    clipped to [-1, 1]; equal rates return the samples unchanged (float32).
    """
    samples = np.asarray(samples, np.float32)
    if rate_in == rate_out:
        return samples
    from scipy.signal import resample_poly

    g = math.gcd(int(rate_in), int(rate_out))
    out = resample_poly(samples, int(rate_out) // g, int(rate_in) // g)
    return np.clip(out, -1.0, 1.0).astype(np.float32, copy=False)


def load_clip(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """The float32 mono samples of a WAV file resampled to `sample_rate` Hz.

    Raises:
        WavError: as `read_wav`.
    """
    samples, rate = read_wav(path)
    return resample(samples, rate, sample_rate)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Writes float samples in [-1, 1] as a mono 16-bit PCM WAV file, atomically.

    Samples are clipped to [-1, 1] and scaled by 32767 (rounded), so
    `read_wav` (which divides by 32768) gives them back within 1.5/32768. `samples` is `(T,)` or
    `(T, 1)`; the file goes through a temp file renamed onto `path`
    (`vqvae_tf.utils.atomic`), so a kill leaves no half-written WAV.

    Raises:
        ValueError: `samples` is not one channel, or `sample_rate` is not a
            positive int.
    """
    samples = np.asarray(samples, np.float32)
    if samples.ndim == 2 and samples.shape[1] == 1:
        samples = samples[:, 0]
    if samples.ndim != 1:
        raise ValueError(f"write_wav writes one channel, (T,) or (T, 1); received shape {samples.shape}.")
    rate = check_int("sample_rate", sample_rate, 1)
    pcm = np.round(np.clip(np.nan_to_num(samples), -1.0, 1.0) * 32767.0).astype("<i2")
    with atomic_output(path) as temp:
        with wave.open(str(temp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm.tobytes())

"""On-device speech compression: audio arrays and WAV files to `.vqz` streams and back.

An audio codec model (`CodecModel.kind == "audio"`: a rank-1 speech network
exported to TFLite, see `vqvae_tf.models.speech_networks`) codes mono audio
at its own sample rate (`CodecModel.sample_rate`) into one code frame per
`downsample` samples (per residual stage kept). What the codec does to a
signal:

* channels are averaged to mono (the header keeps the source's count);
* the signal is resampled to the model's rate with the polyphase resampler
  of `vqvae_tf.utils.wav.resample` (`scipy.signal.resample_poly`), padded
  with zeros to a whole code frame, encoded, and on decoding resampled back
  to the original rate and cut to the original length (both in the header);
* the networks run on chunks of `chunk_frames` code frames (default
  `DEFAULT_CHUNK_FRAMES`) with `context_frames(model)` frames of overlap
  taken from the model's receptive field (left only for a causal model), so
  the activations of the networks stay bounded whatever the length, while
  the codes are exactly those of one whole-signal run and the decoded
  samples those of one whole decode (up to float rounding)
  (`vqvae_tf.codec.chunking`);
* rate: `quality=Q` stages kept, or `kbps=K`: the highest quality whose
  whole stream is at most K kilobits per second of the original audio
  (`vqvae_tf.codec.rate`);
* method `prior`: every stage entropy coded under the model's speech prior
  (`prior.tflite` with LiteRT, or a `prior.keras` with TensorFlow), in
  segments of the prior's length coded independently
  (`vqvae_tf.codec.prior_coding.sequences`). The prior models all S stages,
  so such a stream keeps all of them: `quality < S` is refused, and `kbps`
  only checks that the full stream fits.

The samples themselves (4 bytes each) and the codes are held whole; only the
networks' activations are chunked.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from vqvae_tf.codec.bitstream.header import DEFAULT_MAX_SAMPLES, AudioFormat, BitstreamError, Kind, Method, read_header
from vqvae_tf.codec.bitstream.stream import decode_stream
from vqvae_tf.codec.chunking import DEFAULT_CHUNK_FRAMES, context_frames, decode_audio_codes, encode_audio_codes
from vqvae_tf.codec.images import write_output
from vqvae_tf.codec.model import CodecError, CodecModel, load_model, shipped_models
from vqvae_tf.codec.rate import check_rate, pad_stages, pick_quality
from vqvae_tf.codec.streams import encode_stages, read_stream_file, static_probabilities, stream_header_and_model
from vqvae_tf.utils import wav
from vqvae_tf.utils.checks import check_choice

__all__ = [
    "AUDIO_METHODS",
    "DEFAULT_CHUNK_FRAMES",
    "MAX_RESAMPLE_FACTOR",
    "compress_audio",
    "compress_wav",
    "context_frames",
    "decode_audio_codes",
    "decompress_audio",
    "decompress_wav",
    "encode_audio_codes",
    "is_wav_file",
]

#: Payload methods for audio.
AUDIO_METHODS = ("packed", "static", "prior")
#: The largest polyphase factor (`up` or `down` once the rates' ratio is
#: reduced): 441 covers 44.1 kHz <-> 16 kHz; a rate like 8001 Hz (16000/8001)
#: would need a low-pass filter of 320,000 taps.
MAX_RESAMPLE_FACTOR = 1000
#: Channels accepted in an `(n, channels)` array.
MAX_CHANNELS = 64


# --------------------------------------------------------------------------- checks


def _audio_model(model) -> CodecModel:
    """An audio codec model: `model` as `load_model` takes it, or the first shipped audio model for None."""
    if model is None:
        for name in shipped_models():
            candidate = load_model(name)
            if candidate.kind == "audio":
                return candidate
        raise CodecError("no audio codec model is shipped in vqvae_tf/pretrained/; pass one (--model DIR)")
    model = load_model(model)
    if model.kind == "audio" and model.sample_rate is None:
        raise CodecError(
            f"audio model {model.name!r} has no sample_rate in its sidecars; export it from a model built with "
            "sample_rate (VQVAE(..., sample_rate=16000)) and package it again"
        )
    return model


def _as_mono(samples) -> tuple[np.ndarray, int]:
    """`(float32 mono samples in [-1, 1], source channels)` of float or int16 `(n,)` / `(n, channels)`."""
    samples = np.asarray(samples)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or not 1 <= samples.shape[1] <= MAX_CHANNELS:
        raise CodecError(
            f"audio must have shape (n,) or (n, channels) with 1 <= channels <= {MAX_CHANNELS}; received shape "
            f"{samples.shape}" + (" (transpose a (channels, n) array)" if samples.ndim == 2 else "")
        )
    if samples.shape[0] == 0:
        raise CodecError("audio must not be empty; received 0 samples")
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / 32768.0
    elif np.issubdtype(samples.dtype, np.floating):
        samples = samples.astype(np.float32)
        if not np.all(np.isfinite(samples)):
            raise CodecError("float audio must be finite; received NaN or Inf")
        low, high = float(samples.min()), float(samples.max())
        if low < -1.0 or high > 1.0:
            raise CodecError(f"float audio must lie in [-1, 1]; received values in [{low:g}, {high:g}]")
    else:
        raise CodecError(f"audio must be float in [-1, 1] or int16; received dtype {samples.dtype}")
    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(mono), samples.shape[1]


def _check_rate_pair(sample_rate, model: CodecModel, what: str) -> int:
    """`sample_rate`, if it lies in 8-48 kHz and resamples to and from the model's rate."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise CodecError(f"{what}: sample_rate must be an int in Hz; received {sample_rate!r}")
    rate = int(sample_rate)
    if not wav.MIN_RATE <= rate <= wav.MAX_RATE:
        raise CodecError(
            f"{what}: sample rate {rate} Hz is outside {wav.MIN_RATE}-{wav.MAX_RATE} Hz; "
            f"resample it first, e.g. `sox IN.wav -r {model.sample_rate} OUT.wav`"
        )
    g = math.gcd(rate, model.sample_rate)
    up, down = model.sample_rate // g, rate // g
    if max(up, down) > MAX_RESAMPLE_FACTOR:
        raise CodecError(
            f"{what}: sample rate {rate} Hz cannot be resampled to the model's {model.sample_rate} Hz "
            f"(polyphase ratio {up}/{down}, above {MAX_RESAMPLE_FACTOR}); resample it first, "
            f"e.g. `sox IN.wav -r {model.sample_rate} OUT.wav`"
        )
    return rate


def _model_length(num_samples: int, rate: int, model: CodecModel) -> int:
    """Samples at the model's rate of `num_samples` at `rate` (`resample_poly`'s output length)."""
    g = math.gcd(rate, model.sample_rate)
    return -(-num_samples * (model.sample_rate // g) // (rate // g))


def _frames(num_samples: int, rate: int, model: CodecModel) -> int:
    return -(-_model_length(num_samples, rate, model) // model.downsample)


# --------------------------------------------------------------------------- arrays


def compress_audio(
    samples,
    sample_rate: int,
    model=None,
    method: str = "packed",
    *,
    quality: int | None = None,
    kbps: float | None = None,
    bpp: float | None = None,
    prior=None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
) -> bytes:
    """Compresses audio to a `.vqz` stream.

    Args:
        samples: float in [-1, 1] or int16, `(n,)` mono or `(n, channels)`
            (averaged to mono), at least one code frame long once resampled.
        sample_rate: Hz, 8000-48000, resampled to the model's rate (see
            `MAX_RESAMPLE_FACTOR` for the ratios refused).
        model: anything `load_model` takes (an audio model); None: the first
            shipped audio model.
        method: "packed", "static" or "prior" (every stage under the
            speech prior; all S stages kept). Defaults to "packed".
        quality: stages kept, `1..S`. Defaults to S.
        kbps: instead of `quality`: the highest quality whose whole stream
            is at most `kbps` kilobits per second of the original audio.
        bpp: for image models only; an audio model refuses it (use `kbps`).
        prior: the "prior" method's prior: a `prior.tflite` or
            `prior.keras` path, or None for the model's own. Ignored by the
            other methods.
        chunk_frames: code frames per encoder run. Defaults to 512.

    Returns:
        The stream as bytes.

    Raises:
        CodecError: bad samples, rate or arguments; an image model; no
            quality fitting `kbps` (the message gives the lowest rate);
            `prior` with `quality < S`, or a `kbps` the full prior stream
            exceeds (the message gives its rate), or a prior that does not
            fit the model.

    Example:

    >>> data = compress_audio(np.zeros(16000, "float32"), 16000, "MODEL_DIR", kbps=3)  # doctest: +SKIP
    >>> samples, rate = decompress_audio(data, "MODEL_DIR")  # doctest: +SKIP
    """
    model, method, request, prior = _check_arguments(model, method, "the input", quality, kbps, bpp, prior)
    rate = _check_rate_pair(sample_rate, model, "the input")
    mono, channels = _as_mono(samples)
    return _compress_mono(mono, rate, channels, model, method, request, chunk_frames, prior)


def _check_arguments(model, method, what, quality, kbps, bpp, prior):
    """`(model, method, rate request, loaded prior or None)`, checked before any samples are read."""
    model = _audio_model(model)
    model.check_kind("audio", what)
    method = check_choice("method", method, AUDIO_METHODS, error=CodecError)
    request = check_rate(model, quality=quality, bpp=bpp, kbps=kbps)
    if method != "prior":
        return model, method, request, None
    total = model.total_stages
    if request.quality is not None and request.quality < total:
        raise CodecError(
            f"method 'prior' codes all {total} stages (the speech prior models them together); received "
            f"quality={request.quality}: use --method static for fewer stages"
        )
    return model, method, request, model.prior(prior)


def _compress_mono(mono, rate, channels, model, method, request, chunk_frames, prior=None) -> bytes:
    """The stream of float32 mono samples at `rate` Hz (checked), from `channels` source channels."""
    resampled = wav.resample(mono, rate, model.sample_rate)
    if len(resampled) < model.downsample:
        raise CodecError(
            f"audio of {len(mono)} samples at {rate} Hz is shorter than one code frame "
            f"({model.downsample} samples at {model.sample_rate} Hz)"
        )
    codes = encode_audio_codes(resampled, model, chunk_frames=chunk_frames)
    audio = AudioFormat(sample_rate=rate, num_samples=len(mono), channels=1, source_channels=channels)
    build = functools.partial(encode_stages, codes, model, method=method, prior=prior, audio=audio)
    seconds = audio.duration
    if method != "prior":
        return pick_quality(model, request, build, seconds * 1000, f"this {seconds:.3f} s clip")[1]
    data = build(model.total_stages)
    kbps = 8 * len(data) / seconds / 1000
    if request.target is not None and kbps > request.target[1]:
        raise CodecError(
            f"method 'prior' keeps all {model.total_stages} stages, {kbps:.4f} kbps for this {seconds:.3f} s clip, "
            f"above kbps={request.target[1]:g}; use --method static for fewer stages"
        )
    return data


def decompress_audio(
    data: bytes,
    model=None,
    *,
    dtype: str = "float32",
    prior=None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> tuple[np.ndarray, int]:
    """Decodes an audio `.vqz` stream to `(samples, sample_rate)` at the original rate and length.

    Args:
        data: the stream.
        model: anything `load_model` takes; None finds the shipped model
            whose id the stream carries.
        dtype: "float32" (in [-1, 1]) or "int16". Defaults to "float32".
        prior: for a "prior" stream, the prior it was coded with (a
            `prior.tflite` or `prior.keras` path), or None for the model's own.
        chunk_frames: code frames per decoder run. Defaults to 512.
        max_samples: refuse longer audio before allocating.

    Returns:
        Mono samples `(n,)` and the original sample rate.

    Raises:
        CodecError: the stream is invalid, holds an image, was made by
            another model, or does not fit the model; a "prior" stream
            decoded with another prior (its fingerprint) or none.
    """
    dtype = check_choice("dtype", dtype, ("float32", "int16"), error=CodecError)
    header, model = stream_header_and_model(data, model, Kind.AUDIO, "decompress_audio")
    model = _audio_model(model)
    rate, num_samples = header.audio.sample_rate, header.audio.num_samples
    _check_rate_pair(rate, model, "the stream")
    expected = (_frames(num_samples, rate, model),) + ((header.kept_stages,) if model.code_shape else ())
    if header.code_shape != expected:
        raise CodecError(
            f"stream has codes of shape {header.code_shape}; {num_samples} samples at {rate} Hz "
            f"need {expected} with model {model.name!r}"
        )
    probabilities = static_probabilities(header, model)
    prior_model = model.prior(prior) if header.method == Method.PRIOR else None
    try:
        stream = decode_stream(
            data,
            expected_model_id=model.stream_id,
            code_probabilities=probabilities,
            prior=prior_model,
            max_samples=max_samples,
        )
    except BitstreamError as error:
        raise CodecError(f"cannot decode the stream: {error}") from None
    decoded = decode_audio_codes(pad_stages(stream.codes, model), model, chunk_frames=chunk_frames)
    decoded = decoded[: _model_length(num_samples, rate, model)]
    restored = wav.resample(np.clip(decoded, -1.0, 1.0), model.sample_rate, rate)[:num_samples]
    if len(restored) < num_samples:  # resample_poly rounds lengths up, so this does not happen; kept for safety
        restored = np.pad(restored, (0, num_samples - len(restored)))
    if dtype == "int16":
        return _to_int16(restored), rate
    return np.ascontiguousarray(restored, np.float32), rate


def _to_int16(samples: np.ndarray) -> np.ndarray:
    # The scaling of `vqvae_tf.utils.wav.write_wav`.
    return np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


# --------------------------------------------------------------------------- files


def is_wav_file(path) -> bool:
    """Whether `path` names a WAV file: a `.wav` name, or a file starting with `RIFF`."""
    path = Path(path)
    if path.suffix.lower() == ".wav":
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"RIFF"
    except OSError:
        return False


def compress_wav(
    input_path, output_path, model=None, method: str = "packed", *, quality=None, kbps=None, bpp=None, prior=None
) -> dict:
    """Compresses a WAV file (8/16-bit PCM, 8-48 kHz) into a `.vqz` file, written atomically.

    Returns:
        A dict: `bytes`, `kilobits_per_second`, `sample_rate`, `num_samples`,
        `duration_seconds`, `code_shape`, `model`, `method`, `quality`, `stages`.

    Raises:
        CodecError: as `compress_audio`, and WAV files that are not 8/16-bit
            PCM, empty, shorter than one code frame, or of a refused rate
            (the message says what to convert to).
    """
    model, method, request, prior = _check_arguments(model, method, str(input_path), quality, kbps, bpp, prior)
    if not Path(input_path).is_file():
        raise FileNotFoundError(f"audio file {input_path} not found")
    try:
        info = wav.wav_format(input_path)
        # One code frame at the model's rate, in samples of the file's rate.
        min_frames = math.ceil(model.downsample * info.sample_rate / model.sample_rate) if info.sample_rate else 1
        samples, rate = wav.read_wav(input_path, min_frames=max(1, min_frames))
    except wav.WavError as error:
        raise CodecError(str(error)) from None
    rate = _check_rate_pair(rate, model, str(input_path))
    data = _compress_mono(samples, rate, info.channels, model, method, request, DEFAULT_CHUNK_FRAMES, prior)
    write_output(output_path, data)
    header = read_header(data)
    return dict(
        bytes=len(data),
        kilobits_per_second=8 * len(data) / header.audio.duration / 1000,
        sample_rate=rate,
        num_samples=header.audio.num_samples,
        duration_seconds=header.audio.duration,
        code_shape=header.code_shape,
        model=model.name,
        method=method,
        quality=header.kept_stages,
        stages=(header.kept_stages, header.total_stages),
    )


def decompress_wav(input_path, output_path, model=None, prior=None) -> dict:
    """Decompresses an audio `.vqz` file into a 16-bit mono WAV at the original rate, written atomically.

    Returns:
        A dict: `sample_rate`, `num_samples`, `duration_seconds`.
    """
    path, output_path = Path(input_path), Path(output_path)
    # A missing input is reported before a wrong output name (by `read_stream_file`).
    if path.is_file() and output_path.suffix.lower() != ".wav":
        raise CodecError(f"{path} holds audio, which decompresses to a .wav file; received {output_path}")
    # A stream within DEFAULT_MAX_SAMPLES is at most ~4 bytes per sample plus headers.
    data = read_stream_file(path, 4 * DEFAULT_MAX_SAMPLES + (1 << 17))
    samples, rate = decompress_audio(data, model, prior=prior)
    if output_path.is_dir():
        raise CodecError(f"{output_path} is a directory")
    if not output_path.parent.is_dir():
        raise FileNotFoundError(f"directory {output_path.parent} of {output_path} does not exist")
    wav.write_wav(output_path, samples, rate)
    return dict(sample_rate=rate, num_samples=len(samples), duration_seconds=len(samples) / rate)

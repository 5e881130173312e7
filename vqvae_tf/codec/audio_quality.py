"""Speech quality measures: `si_snr`, `pesq_wb` (wide-band PESQ) and `stoi`, on NumPy arrays.

Used by `bench/speech_codec.py` and meant for the speech codec's own
evaluation. NumPy at module level; `pesq` (ITU-T P.862.2 wide-band, pip
`pesq`) and `stoi` (pip `pystoi`) import their package when called, so the
device side imports no more than it uses. No TensorFlow.

Every measure takes a reference and a degraded signal: 1-D, finite, the
same length (align them first: a codec's delay must be removed before
scoring, e.g. with `align`), at one sample rate in Hz.

* `si_snr`: scale-invariant signal-to-noise ratio in dB (Le Roux et al.
  2019, "SDR - half-baked or well done?"): both signals made zero-mean, the
  reference scaled by the least-squares gain onto the estimate, then
  10 log10(|target|^2 / |estimate - target|^2). Scaling the estimate by any
  non-zero factor leaves it unchanged (a sign flip too, as in that
  definition). An estimate that is the reference up to a scale has no
  error: the result is `+inf` (not capped, so that a perfect score is never
  confused with a good one).
* `pesq_wb`: MOS-LQO of wide-band PESQ, at 16 kHz only (P.862.2 defines
  wide-band mode at 16 kHz; resample first). Roughly 1.0 (bad) to 4.64.
* `stoi`: short-time objective intelligibility (Taal et al. 2011), 0 to 1,
  through pystoi, which resamples to 10 kHz itself; the rate must be at
  least 10 kHz, since STOI's third-octave bands reach about 5 kHz and a
  lower rate would score missing bands.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PESQ_RATE", "STOI_MIN_RATE", "align", "pesq_wb", "remove_delay", "si_snr", "stoi"]

#: The one rate of wide-band PESQ, in Hz.
PESQ_RATE = 16000
#: The lowest rate `stoi` accepts, in Hz (STOI works at 10 kHz).
STOI_MIN_RATE = 10000
_STOI_MAX_RATE = 48000
# pystoi needs 30 frames of 256 samples (hop 128) at 10 kHz: (30 - 1) * 128 + 256 samples.
_STOI_MIN_SECONDS = (29 * 128 + 256) / 10000


def _pair(reference, degraded, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float64 1-D arrays of one length, finite, or a ValueError saying which is wrong."""
    reference, degraded = np.asarray(reference), np.asarray(degraded)
    for name, x in (("reference", reference), ("degraded", degraded)):
        if x.ndim != 1:
            raise ValueError(f"{what} takes 1-D (mono) signals; received {name} of shape {x.shape}.")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise ValueError(f"{what} takes real samples; received {name} of dtype {x.dtype}.")
    if len(reference) != len(degraded):
        raise ValueError(
            f"{what} needs signals of one length (remove the codec's delay and trim first); "
            f"received {len(reference)} reference and {len(degraded)} degraded samples."
        )
    if len(reference) == 0:
        raise ValueError(f"{what} needs at least one sample; received empty signals.")
    reference, degraded = reference.astype(np.float64), degraded.astype(np.float64)
    for name, x in (("reference", reference), ("degraded", degraded)):
        if not np.isfinite(x).all():
            raise ValueError(f"{what} needs finite samples; {name} holds NaN or infinity.")
    return reference, degraded


def _rate(sample_rate, what: str, low: int, high: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise ValueError(f"{what}: sample_rate must be an int in Hz; received {sample_rate!r}.")
    if not low <= sample_rate <= high:
        wanted = f"{low} Hz" if low == high else f"{low}-{high} Hz"
        raise ValueError(f"{what} works at {wanted}; received sample_rate={sample_rate} (resample first).")
    return int(sample_rate)


def si_snr(reference, estimate) -> float:
    """Scale-invariant SNR of `estimate` against `reference`, in dB (see the module docstring).

    Args:
        reference: `(T,)` clean signal, not constant.
        estimate: `(T,)` signal to score.

    Returns:
        A float; `+inf` when `estimate` is `reference` up to a non-zero
        scale (and an offset), `-inf` when it is orthogonal or constant.

    Example:

    >>> t = np.arange(16000) / 16000
    >>> clean = np.sin(2 * np.pi * 440 * t)
    >>> noise = np.random.default_rng(0).standard_normal(16000)
    >>> noise -= noise.mean() + np.dot(noise, clean) / np.dot(clean, clean) * clean  # orthogonal to clean
    >>> noise *= np.linalg.norm(clean) / np.linalg.norm(noise) / 10  # 20 dB below
    >>> round(si_snr(clean, 3 * (clean + noise)), 6)
    20.0
    """
    reference, estimate = _pair(reference, estimate, "si_snr")
    reference, estimate = reference - reference.mean(), estimate - estimate.mean()
    energy = np.dot(reference, reference)
    if energy == 0.0:
        raise ValueError("si_snr needs a reference that is not constant; received a constant (silent) reference.")
    target = np.dot(estimate, reference) / energy * reference
    error = estimate - target
    target_energy, error_energy = np.dot(target, target), np.dot(error, error)
    if target_energy == 0.0:
        return float("-inf")
    # Rounding leaves ~1e-30 of "error" for a scaled copy; below 1e-20 of the target's energy it is none.
    if error_energy <= 1e-20 * target_energy:
        return float("inf")
    return float(10.0 * np.log10(target_energy / error_energy))


def pesq_wb(reference, degraded, sample_rate: int = PESQ_RATE) -> float:
    """Wide-band PESQ (MOS-LQO) of `degraded` against `reference`, both at 16 kHz.

    Raises:
        ValueError: the rate is not 16000, the signals differ in shape or
            length, or PESQ finds no speech in them (silence, or too short).
        ImportError: the `pesq` package is missing (requirements.txt).
    """
    _rate(sample_rate, "wide-band PESQ", PESQ_RATE, PESQ_RATE)
    reference, degraded = _pair(reference, degraded, "pesq_wb")
    for name, x in (("reference", reference), ("degraded", degraded)):
        if not np.any(x):
            # pesq would divide by the peak (a NaN warning) before finding no speech.
            raise ValueError(f"wide-band PESQ needs speech; the {name} signal is all zeros.")
    try:
        import pesq
    except ImportError as e:
        raise ImportError("pesq_wb needs the `pesq` package: pip install -r requirements.txt") from e
    try:
        return float(pesq.pesq(PESQ_RATE, reference, degraded, "wb"))
    except pesq.PesqError as e:
        reason = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(f"wide-band PESQ failed on {len(reference) / PESQ_RATE:.3f} s of audio: {reason}") from e


def stoi(reference, degraded, sample_rate: int) -> float:
    """STOI (0 to 1) of `degraded` against `reference` at `sample_rate` Hz (10-48 kHz).

    Raises:
        ValueError: the rate is outside 10000-48000 Hz, the signals differ
            in shape or length, or they are shorter than the 0.3968 s that
            STOI's 30-frame segments need.
        ImportError: the `pystoi` package is missing (requirements.txt).
    """
    rate = _rate(sample_rate, "STOI", STOI_MIN_RATE, _STOI_MAX_RATE)
    reference, degraded = _pair(reference, degraded, "stoi")
    if len(reference) < _STOI_MIN_SECONDS * rate:
        raise ValueError(
            f"STOI needs at least {_STOI_MIN_SECONDS} s of audio; received {len(reference) / rate:.4f} s "
            f"({len(reference)} samples at {rate} Hz)."
        )
    try:
        from pystoi import stoi as _stoi
    except ImportError as e:
        raise ImportError("stoi needs the `pystoi` package: pip install -r requirements.txt") from e
    return float(_stoi(reference, degraded, rate, extended=False))


def align(reference, degraded, max_shift: int) -> tuple[np.ndarray, np.ndarray, int]:
    """`(reference, degraded, delay)`: both trimmed to their overlap once `degraded`'s delay is removed.

    The delay is the lag in `[-max_shift, max_shift]` samples maximising the
    cross-correlation (computed by FFT); a positive delay means `degraded`
    lags `reference`. The returned signals have one length.

    Example:

    >>> x = np.random.default_rng(0).standard_normal(1000)
    >>> y = np.concatenate([np.zeros(37), x])[:1000]
    >>> a, b, delay = align(x, y, 100)
    >>> delay, len(a) == len(b) == 963, bool(np.allclose(a, b))
    (37, True, True)
    """
    reference, degraded = np.asarray(reference, np.float64), np.asarray(degraded, np.float64)
    if reference.ndim != 1 or degraded.ndim != 1:
        raise ValueError(f"align takes 1-D signals; received shapes {reference.shape} and {degraded.shape}.")
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
        raise ValueError(f"align: max_shift must be an int >= 0; received {max_shift!r}.")
    n = len(reference) + len(degraded) - 1
    size = 1 << max(n - 1, 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(degraded, size) * np.conj(np.fft.rfft(reference, size)), size)
    lags = np.arange(-min(max_shift, len(reference) - 1), min(max_shift, len(degraded) - 1) + 1)
    delay = int(lags[np.argmax(corr[lags % size])])
    return (*remove_delay(reference, degraded, delay), delay)


def remove_delay(reference, degraded, delay: int) -> tuple[np.ndarray, np.ndarray]:
    """`(reference, degraded)` trimmed to their overlap once `degraded` is advanced by `delay` samples.

    A positive `delay` drops the first `delay` samples of `degraded` (it
    lags), a negative one the first `-delay` of `reference`; then both are
    cut to one length.
    """
    reference, degraded = np.asarray(reference), np.asarray(degraded)
    if isinstance(delay, bool) or not isinstance(delay, (int, np.integer)):
        raise ValueError(f"remove_delay: delay must be an int number of samples; received {delay!r}.")
    if delay >= 0:
        degraded = degraded[delay:]
    else:
        reference = reference[-delay:]
    length = min(len(reference), len(degraded))
    return reference[:length], degraded[:length]

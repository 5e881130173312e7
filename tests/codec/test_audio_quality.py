"""Tests for `vqvae_tf.codec.audio_quality`, on synthetic signals made here."""

import doctest

import numpy as np
import pytest

from vqvae_tf.codec import audio_quality
from vqvae_tf.codec.audio_quality import align, pesq_wb, remove_delay, si_snr, stoi

RATE = 16000


def speechlike(seconds=2.0, rate=RATE, seed=0):
    """Harmonic bursts with pauses: enough for PESQ's voice activity detector to find 'utterances'."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 3 * t)
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / rate) / k for k in range(1, 15))
    envelope = (np.sin(2 * np.pi * 2 * t) > -0.3).astype(float)
    return 0.3 * voice * envelope + 0.001 * rng.standard_normal(len(t))


def noise_at(clean, snr_db, seed=1):
    """Zero-mean noise orthogonal to (zero-mean) `clean`, `snr_db` below it."""
    clean = clean - clean.mean()
    noise = np.random.default_rng(seed).standard_normal(len(clean))
    noise -= noise.mean()
    noise -= np.dot(noise, clean) / np.dot(clean, clean) * clean
    return noise * np.linalg.norm(clean) / np.linalg.norm(noise) / 10 ** (snr_db / 20)


def test_si_snr_of_a_signal_with_itself_is_inf_and_not_capped():
    x = speechlike()
    assert si_snr(x, x) == float("inf")
    assert si_snr(x, 0.25 * x + 3.0) == float("inf")  # scale and offset change nothing
    assert si_snr(x, -x) == float("inf")  # the definition's least-squares gain may be negative
    assert si_snr(x, np.zeros_like(x)) == float("-inf")


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 12.5, 30.0])
def test_si_snr_equals_a_known_snr(snr_db):
    clean = speechlike()
    clean -= clean.mean()
    assert abs(si_snr(clean, clean + noise_at(clean, snr_db)) - snr_db) < 0.01


def test_si_snr_is_scale_invariant_and_mean_free():
    clean = speechlike()
    noisy = clean + noise_at(clean, 7.0) + 0.05 * np.random.default_rng(5).standard_normal(len(clean))
    base = si_snr(clean, noisy)
    for scale in (1e-3, 0.5, 2.0, 1e3):
        assert si_snr(clean, scale * noisy) == pytest.approx(base, abs=1e-9)
    assert si_snr(clean, noisy + 0.3) == pytest.approx(base, abs=1e-9)
    # Correlated noise is partly "target": still finite and below the uncorrelated figure of 7 dB.
    assert base < 7.0


def test_si_snr_refuses_bad_signals():
    x = speechlike(0.1)
    with pytest.raises(ValueError, match="received 1600 reference and 1599 degraded samples"):
        si_snr(x, x[:-1])
    with pytest.raises(ValueError, match=r"1-D \(mono\) signals; received reference of shape \(1600, 1\)"):
        si_snr(x[:, None], x[:, None])
    with pytest.raises(ValueError, match="constant"):
        si_snr(np.ones(100), np.arange(100.0))
    with pytest.raises(ValueError, match="degraded holds NaN"):
        si_snr(x, np.full_like(x, np.nan))
    with pytest.raises(ValueError, match="empty"):
        si_snr(np.zeros(0), np.zeros(0))


def test_pesq_and_stoi_order_clean_and_degraded_speech():
    clean = speechlike(3.0)
    slight, heavy = clean + noise_at(clean, 30.0), clean + noise_at(clean, 0.0)
    assert pesq_wb(clean, clean) > 4.5  # the top of the wide-band scale (4.64)
    assert pesq_wb(clean, clean) > pesq_wb(clean, slight) > pesq_wb(clean, heavy)
    assert stoi(clean, clean, RATE) == pytest.approx(1.0, abs=1e-6)
    assert 1.0 > stoi(clean, slight, RATE) > stoi(clean, heavy, RATE) > 0.0
    at_10k = speechlike(3.0, rate=10000)  # STOI's own rate, the lowest accepted
    assert stoi(at_10k, at_10k + noise_at(at_10k, 30.0), 10000) > 0.9


def test_pesq_and_stoi_refuse_wrong_rates_clearly():
    x = speechlike(1.0)
    for rate in (8000, 22050, 48000):
        with pytest.raises(ValueError, match=rf"wide-band PESQ works at 16000 Hz; received sample_rate={rate} "):
            pesq_wb(x, x, rate)
    with pytest.raises(ValueError, match="sample_rate must be an int in Hz; received 16000.0"):
        pesq_wb(x, x, 16000.0)
    for rate in (8000, 9999, 96000):
        with pytest.raises(ValueError, match=rf"STOI works at 10000-48000 Hz; received sample_rate={rate} "):
            stoi(x, x, rate)
    with pytest.raises(ValueError, match="sample_rate must be an int in Hz; received True"):
        stoi(x, x, True)


def test_pesq_and_stoi_refuse_wrong_lengths_and_silence():
    x = speechlike(1.0)
    with pytest.raises(ValueError, match="pesq_wb needs signals of one length .* 16000 reference and 15990 degraded"):
        pesq_wb(x, x[:-10])
    with pytest.raises(ValueError, match="stoi needs signals of one length"):
        stoi(x, x[:-10], RATE)
    with pytest.raises(ValueError, match=r"STOI needs at least 0.3968 s of audio; received 0.3000 s \(4800 samples"):
        stoi(x[:4800], x[:4800], RATE)
    with pytest.raises(ValueError, match="wide-band PESQ needs speech; the degraded signal is all zeros"):
        pesq_wb(x, np.zeros(RATE))
    with pytest.raises(ValueError, match="wide-band PESQ failed on 0.200 s of audio: Buffer needs to be at least 1/4"):
        pesq_wb(x[:3200], x[:3200])


@pytest.mark.parametrize("delay", [0, 37, -12, 400])
def test_align_finds_and_removes_a_delay(delay):
    x = speechlike(1.0)
    shifted = np.concatenate([np.zeros(delay), x])[: len(x)] if delay >= 0 else x[-delay:]
    shifted = shifted + noise_at(shifted, 20.0)
    a, b, found = align(x, shifted, 480)
    assert found == delay and len(a) == len(b) == len(x) - abs(delay)
    assert si_snr(a, b) > 19.0
    with pytest.raises(ValueError, match="max_shift must be an int >= 0; received -1"):
        align(x, shifted, -1)
    fixed_a, fixed_b = remove_delay(x, shifted, delay)
    np.testing.assert_array_equal(fixed_a, a)
    np.testing.assert_array_equal(fixed_b, b)
    with pytest.raises(ValueError, match="delay must be an int number of samples; received 1.5"):
        remove_delay(x, shifted, 1.5)


def test_docstring_examples():
    assert doctest.testmod(audio_quality).failed == 0

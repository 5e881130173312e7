"""The waveform losses (`vqvae_tf.models.audio_losses`) and `VQVAE(reconstruction_loss="stft")`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from vqvae_tf.models.audio_losses import (
    audio_loss,
    multi_resolution_mel_loss,
    multi_resolution_stft_loss,
    stft_magnitude,
    waveform_stft_loss,
)
from vqvae_tf.models.vqvae import VQVAE

RATE = 16000


def signals(length=4096, seed=0):
    """(4, length, 1): a tone, a chirp, a noise burst and a tone pair, in [-1, 1]."""
    t = np.arange(length) / RATE
    rng = np.random.default_rng(seed)
    burst = np.zeros(length)
    burst[length // 4 : length // 2] = rng.normal(0, 0.3, length // 4)
    clips = [
        0.5 * np.sin(2 * np.pi * 440 * t),
        0.5 * np.sin(2 * np.pi * (200 + 1800 * t / t[-1]) * t),
        burst,
        0.3 * np.sin(2 * np.pi * 300 * t) + 0.2 * np.sin(2 * np.pi * 2500 * t),
    ]
    return np.stack(clips)[..., None].astype(np.float32)


def test_identical_signals_score_zero():
    x = signals()
    assert float(multi_resolution_stft_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(waveform_stft_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    # (batch, T) works the same as (batch, T, 1).
    assert float(multi_resolution_stft_loss(x[..., 0], x[..., 0])) == pytest.approx(0.0, abs=1e-6)


def test_shifted_and_noisy_signals_score_higher_the_further_they_are():
    x = signals()
    rng = np.random.default_rng(1)
    small = x + rng.normal(0, 0.003, x.shape).astype(np.float32)
    large = x + rng.normal(0, 0.1, x.shape).astype(np.float32)
    shifted = np.roll(x, 37, axis=1)
    losses = {name: float(multi_resolution_stft_loss(x, y)) for name, y in (("small", small), ("large", large))}
    assert 0 < losses["small"] < losses["large"]
    # A shift keeps the magnitudes nearly equal but not the samples: the
    # waveform term sees it.
    assert float(waveform_stft_loss(x, shifted)) > float(multi_resolution_stft_loss(x, shifted)) > 0


def test_mel_loss_is_zero_at_the_target_grows_with_noise_and_adds_to_stft():
    x = signals()
    rng = np.random.default_rng(2)
    small = x + rng.normal(0, 0.003, x.shape).astype(np.float32)
    large = x + rng.normal(0, 0.1, x.shape).astype(np.float32)
    assert float(multi_resolution_mel_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert 0 < float(multi_resolution_mel_loss(x, small)) < float(multi_resolution_mel_loss(x, large))
    expected = float(waveform_stft_loss(x, large)) + float(multi_resolution_mel_loss(x, large))
    assert float(audio_loss("stft_mel", x, large)) == pytest.approx(expected, rel=1e-5)
    assert float(audio_loss("stft", x, large)) == pytest.approx(float(waveform_stft_loss(x, large)), rel=1e-6)


def test_mel_loss_weighs_the_low_band_where_the_linear_bins_weigh_the_high_one():
    # A 700 Hz plus 5.6 kHz tone pair; the same error (half the amplitude) in
    # one tone or the other. The linear bins of the STFT loss count the high
    # tone's error more (the log distance spreads over more bins up there); the
    # mel bands, narrow at 700 Hz and wide at 5.6 kHz, count the low tone's more.
    t = np.arange(8192) / RATE

    def pair(low_gain=1.0, high_gain=1.0):
        signal = 0.3 * low_gain * np.sin(2 * np.pi * 700 * t) + 0.3 * high_gain * np.sin(2 * np.pi * 5600 * t)
        return signal[None, :, None].astype(np.float32)

    target, low_error, high_error = pair(), pair(low_gain=0.5), pair(high_gain=0.5)
    mel = [float(multi_resolution_mel_loss(target, y)) for y in (low_error, high_error)]
    linear = [float(multi_resolution_stft_loss(target, y)) for y in (low_error, high_error)]
    assert mel[0] > 1.5 * mel[1]
    assert linear[1] > linear[0]


def test_mel_loss_settings_are_checked():
    x = signals()
    with pytest.raises(ValueError, match="one mel band count per frame length"):
        multi_resolution_mel_loss(x, x, frame_lengths=(256, 512), mel_bands=(32,))
    with pytest.raises(ValueError, match="audio_loss expects one of"):
        audio_loss("mse", x, x)


def test_magnitudes_have_the_expected_frames_and_bins():
    magnitude = stft_magnitude(signals(4096), 1024)
    assert magnitude.shape == (4, 4096 // 256, 513)
    # A clip shorter than a frame is zero-padded to one frame.
    assert stft_magnitude(signals(300), 1024).shape[1] >= 1


def test_gradients_flow_and_are_finite_at_the_target():
    x = tf.constant(signals())
    for start in (x, x + 0.05 * tf.random.stateless_normal(x.shape, (1, 2))):
        y = tf.Variable(start)
        with tf.GradientTape() as tape:
            loss = waveform_stft_loss(x, y)
        gradient = tape.gradient(loss, y)
        assert np.all(np.isfinite(gradient.numpy()))
    assert float(tf.norm(gradient)) > 0


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(batch, T, 1\) or \(batch, T\)"):
        multi_resolution_stft_loss(np.zeros((2, 8, 8, 1), np.float32), np.zeros((2, 8, 8, 1), np.float32))


TINY = dict(downsample=4, hidden_units=8, residual_units=4, num_codes=16, code_dim=4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["stft", "stft_mel"])
def test_vqvae_audio_loss_trains_and_round_trips_its_config(tmp_path, name):
    model = VQVAE(input_channels=1, rank=1, reconstruction_loss=name, sample_rate=RATE, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = signals(2048)
    history = model.fit(x, batch_size=4, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert model.get_config()["reconstruction_loss"] == name
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert again.reconstruction_loss == name
    # The reported reconstruction loss is the named audio loss.
    logs = again.evaluate(x, batch_size=4, verbose=0, return_dict=True)
    expected = float(audio_loss(name, x, again.predict(x, verbose=0), again.data_variance, RATE))
    assert logs["reconstruction_loss"] == pytest.approx(expected, rel=1e-4)


def test_default_stays_mse_and_out_of_the_config():
    model = VQVAE(input_channels=1, rank=1, **TINY)
    assert model.reconstruction_loss == "mse" and "reconstruction_loss" not in model.get_config()
    with pytest.raises(ValueError, match="reconstruction_loss"):
        VQVAE(reconstruction_loss="mel", **TINY)
    for name in ("stft", "stft_mel"):
        with pytest.raises(ValueError, match=f"reconstruction_loss='{name}' is for audio"):
            VQVAE(reconstruction_loss=name, **TINY)

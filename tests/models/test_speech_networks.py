"""The speech network: shapes, serialization, causality, latency and receptive field, SI-SNR."""

import keras
import numpy as np
import pytest

from vqvae_tf.models.metrics import si_snr
from vqvae_tf.models.speech_networks import (
    FramesToSamples,
    PaddedConv1D,
    ResidualUnit1D,
    SpeechDecoder,
    SpeechEncoder,
    Upsample1D,
    check_strides,
)
from vqvae_tf.models.vqvae import VQVAE


def speech_model(causal=True, strides=(2, 4), **kwargs):
    kwargs = dict(dict(hidden_units=4, num_residual_blocks=2, num_codes=8, code_dim=4), **kwargs)
    model = VQVAE(input_channels=1, rank=1, strides=strides, causal=causal, sample_rate=16000, **kwargs)
    model(np.zeros((1, 8 * model.downsample, 1), np.float32))
    # Residual units start as the identity (ReZero gates at 0); open the gates
    # so that the tests see every unit's reach, as after training.
    for layer in model._flatten_layers():
        if isinstance(layer, ResidualUnit1D):
            layer.gate.assign(np.full(layer.gate.shape, 0.5, np.float32))
    return model


def input_reach(model, length, outputs):
    """(first, last) input sample that each output sample depends on: nonzero gradients of
    decoder(encoder(x)), the quantizer left out (its argmin has no gradient)."""
    import tensorflow as tf

    audio = tf.constant(np.random.default_rng(0).normal(0, 0.3, (1, length, 1)).astype(np.float32))
    reach = []
    for n in outputs:
        with tf.GradientTape() as tape:
            tape.watch(audio)
            out = model.decoder(model.encoder(audio))[0, n, 0]
        nonzero = np.flatnonzero(tape.gradient(out, audio).numpy()[0, :, 0])
        reach.append((nonzero.min(), nonzero.max()))
    return reach


def test_shapes_and_frame_rate():
    encoder = SpeechEncoder(strides=(2, 4, 5, 8), hidden_units=2, num_residual_blocks=1, code_dim=3)
    assert encoder(np.zeros((2, 16000, 1), np.float32)).shape == (2, 50, 3)  # 50 frames per second at 16 kHz
    decoder = SpeechDecoder(strides=(2, 4, 5, 8), hidden_units=2, num_residual_blocks=1, output_channels=1)
    assert decoder(np.zeros((2, 50, 3), np.float32)).shape == (2, 16000, 1)
    assert Upsample1D(3)(np.arange(4, dtype=np.float32).reshape(1, 2, 2)).numpy().tolist() == [
        [[0, 1], [0, 1], [0, 1], [2, 3], [2, 3], [2, 3]]
    ]


def test_frame_network_shapes_and_unfolding_order():
    encoder = SpeechEncoder(strides=(2, 2), frame_length=80, hidden_units=4, num_residual_blocks=1, code_dim=3)
    assert encoder.hop == 320 and encoder(np.zeros((2, 16000, 1), np.float32)).shape == (2, 50, 3)
    decoder = SpeechDecoder(strides=(2, 2), frame_length=80, hidden_units=4, num_residual_blocks=1)
    assert decoder(np.zeros((2, 50, 3), np.float32)).shape == (2, 16000, 1)
    # Channel j of frame i is sample i F + j.
    frames = np.arange(12, dtype=np.float32).reshape(1, 2, 6)
    assert FramesToSamples(3)(frames).numpy()[0, :, 0].tolist() == [0, 2, 4, 6, 8, 10]
    assert FramesToSamples(3)(frames).numpy()[0, :, 1].tolist() == [1, 3, 5, 7, 9, 11]
    with pytest.raises(ValueError, match="divisible by 4"):
        FramesToSamples(4)(frames)


@pytest.mark.parametrize("causal, frame_length", [(True, 1), (False, 1), (True, 4), (False, 4)])
def test_latency_and_receptive_field_match_the_network(causal, frame_length):
    strides = (2, 4) if frame_length == 1 else (2,)  # a hop of 8 either way
    model = speech_model(causal=causal, strides=strides, frame_length=frame_length)
    hop, length = model.downsample, 96 * model.downsample
    outputs = range(48 * hop, 49 * hop)  # one hop in the middle: every phase, away from the edges
    reach = input_reach(model, length, outputs)
    assert max(last - n + 1 for n, (_, last) in zip(outputs, reach)) == model.algorithmic_latency
    assert max(last - first + 1 for first, last in reach) == model.receptive_field
    if causal:
        # One hop: the first sample of a frame waits for the frame's last input sample.
        assert model.algorithmic_latency == hop == 8
        assert model.latency_ms == pytest.approx(0.5)
    else:
        assert model.algorithmic_latency > hop


@pytest.mark.parametrize("frame_length", [1, 2])
def test_serialization_round_trip(tmp_path, frame_length):
    model = speech_model(quantizer="residual", quantizer_config={"num_stages": 2}, frame_length=frame_length)
    assert ("frame_length" in model.get_config()) == (frame_length != 1)  # earlier configs (and ids) unchanged
    audio = np.random.default_rng(1).normal(0, 0.3, (2, 64, 1)).astype(np.float32)
    path = tmp_path / "speech.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.codes(audio), model.codes(audio))
    np.testing.assert_allclose(loaded(audio), model(audio), atol=1e-6)
    assert loaded.strides == (2, 4) and loaded.causal and loaded.sample_rate == 16000
    assert loaded.get_config() == model.get_config()
    for layer in (
        PaddedConv1D(3, 4, strides=2, dilation_rate=1, causal=False, activation="elu"),
        ResidualUnit1D(4, dilation_rate=3, causal=False),
        Upsample1D(5),
        FramesToSamples(6),
        SpeechEncoder(strides=[2], frame_length=3, hidden_units=3, num_residual_blocks=1, code_dim=2),
        SpeechDecoder(strides=[2], frame_length=3, hidden_units=3, num_residual_blocks=1, output_channels=2),
        SpeechEncoder(strides=[2, 5], hidden_units=3, num_residual_blocks=1, code_dim=2, causal=False),
        SpeechDecoder(strides=[2, 5], hidden_units=3, num_residual_blocks=1, output_channels=2, causal=False),
    ):
        assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


def test_residual_units_start_as_identity_and_gates_train():
    unit = ResidualUnit1D(4, dilation_rate=3)
    x = np.random.default_rng(3).normal(0, 1, (2, 32, 4)).astype(np.float32)
    np.testing.assert_array_equal(unit(x), x)  # ReZero: gate 0, the branch is off
    import tensorflow as tf

    with tf.GradientTape() as tape:
        y = tf.reduce_sum(unit(x) ** 2)
    gate_gradient = tape.gradient(y, unit.gate)
    assert np.all(np.abs(gate_gradient.numpy()) > 0)  # ... but the gate learns from the first step


def test_signal_rms_scales_inside_and_comes_from_data_variance():
    audio = np.random.default_rng(4).normal(0, 0.05, (1, 64, 1)).astype(np.float32)
    kw = dict(strides=(2, 4), hidden_units=3, num_residual_blocks=1)
    unit_scale = SpeechEncoder(code_dim=2, **kw)
    scaled = SpeechEncoder(code_dim=2, signal_rms=0.05, **kw)
    unit_scale(audio), scaled(audio)
    scaled.set_weights(unit_scale.get_weights())
    np.testing.assert_allclose(scaled(audio), unit_scale(audio / 0.05), rtol=1e-5, atol=1e-6)
    decoder, twin = SpeechDecoder(signal_rms=0.05, **kw), SpeechDecoder(**kw)
    codes = np.random.default_rng(5).normal(0, 1, (1, 8, 2)).astype(np.float32)
    decoder(codes), twin(codes)
    twin.set_weights(decoder.get_weights())
    np.testing.assert_allclose(decoder(codes), 0.05 * twin(codes), rtol=1e-5, atol=1e-9)
    model = speech_model(data_variance=0.0025)
    assert model.encoder.signal_rms == pytest.approx(0.05) and model.decoder.signal_rms == pytest.approx(0.05)
    # A fresh decoder starts near silence, not louder than speech.
    assert float(np.std(model(audio))) < 0.01


def test_image_network_config_unchanged():
    config = VQVAE(input_channels=1, rank=1, downsample=4, hidden_units=4, residual_units=2).get_config()
    assert "strides" not in config and "causal" not in config and "sample_rate" not in config
    assert config["downsample"] == 4
    assert VQVAE(hidden_units=4, residual_units=2).downsample == 4
    assert VQVAE(hidden_units=4, residual_units=2).algorithmic_latency is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(strides=(2, 4), rank=2), "strides are for the rank-1 speech network; received rank=2"),
        (dict(strides=(2, 4), downsample=4), r"downsample must be the product of strides \[2, 4\] \(8\)"),
        (dict(strides=(2, 1)), r"`strides` must be an int >= 2 and <= 16; received 1"),
        (dict(strides="2,4"), "strides must be a sequence of ints"),
        (dict(strides=()), "at least one stride"),
        (dict(causal=True), "causal=True needs the speech network"),
        (dict(frame_length=4), "frame_length needs the speech network"),
        (dict(strides=(2,), frame_length=4, downsample=2), r"strides \[2\] times frame_length 4 \(8\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    kwargs = dict(dict(input_channels=1, rank=1, hidden_units=2, residual_units=2), **kwargs)
    with pytest.raises(ValueError, match=message):
        VQVAE(**kwargs)
    assert check_strides([2, 5]) == (2, 5)


def test_si_snr():
    rng = np.random.default_rng(0)
    clean = rng.normal(0, 1, (2, 4000, 1)).astype(np.float32)
    noise = rng.normal(0, 1, (2, 4000, 1)).astype(np.float32)
    clean -= clean.mean(axis=1, keepdims=True)
    noise -= noise.mean(axis=1, keepdims=True)
    noise -= (np.sum(noise * clean, axis=1, keepdims=True) / np.sum(clean**2, axis=1, keepdims=True)) * clean
    noise *= np.sqrt(np.sum(clean**2, axis=1, keepdims=True) / np.sum(noise**2, axis=1, keepdims=True)) / 10
    values = si_snr(clean, 3.0 * (clean + noise) + 0.5).numpy()  # scale and offset do not count
    np.testing.assert_allclose(values, [20.0, 20.0], atol=1e-3)  # noise energy 1/100 of the signal's
    assert si_snr(clean, clean).shape == (2,)


def test_audio_model_reports_si_snr():
    model = speech_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    audio = np.random.default_rng(2).normal(0, 0.3, (4, 64, 1)).astype(np.float32)
    logs = model.evaluate(audio, batch_size=2, verbose=0, return_dict=True)
    expected = float(np.mean(si_snr(audio, model(audio)).numpy()))
    assert logs["si_snr"] == pytest.approx(expected, abs=1e-3)
    image_model = VQVAE(hidden_units=4, residual_units=2, num_codes=8, code_dim=4)
    assert "si_snr" not in [m.name for m in image_model.metrics]

"""The VQVAE model: training, codes, serialization and bad input."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from skimage import data as skimage_data

from tests.conftest import REPO
from tests.layer_checks import run_model_saving_test
from vqvae_tf.models.vqvae import VQVAE

TINY = dict(downsample=4, hidden_units=16, residual_units=8, num_residual_blocks=1, num_codes=32, code_dim=8)


def photo_crops(n=32, size=32, seed=0):
    """Crops of a real photo shipped with scikit-image."""
    image = skimage_data.astronaut().astype("float32") / 255.0
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, image.shape[0] - size, n)
    xs = rng.integers(0, image.shape[1] - size, n)
    return np.stack([image[y : y + size, x : x + size] for y, x in zip(ys, xs)])


@pytest.fixture(scope="module")
def images():
    return photo_crops()


@pytest.mark.slow
def test_small_vqvae_overfits_real_images_using_most_codes(images):
    keras.utils.set_random_seed(0)
    model = VQVAE(
        input_channels=3,
        downsample=4,
        hidden_units=32,
        residual_units=16,
        num_residual_blocks=1,
        num_codes=64,
        code_dim=16,
        quantizer="ema",
        quantizer_config=dict(kmeans_init=True, dead_code_threshold=0.5, seed=0),
    )
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    model.initialize_codebook(images)
    before = model.evaluate(images, batch_size=32, verbose=0, return_dict=True)
    model.fit(images, batch_size=32, epochs=150, verbose=0)
    after = model.evaluate(images, batch_size=32, verbose=0, return_dict=True)
    assert after["reconstruction_loss"] <= 0.1 * before["reconstruction_loss"], (before, after)
    assert after["codebook_usage"] >= 0.6, after
    assert after["psnr"] > before["psnr"] + 10


def test_fit_evaluate_predict_report_every_metric(images):
    model = VQVAE(input_channels=3, **TINY)
    model.compile(optimizer="adam")
    history = model.fit(images, batch_size=8, epochs=1, verbose=0, validation_data=(images[:8],))
    expected = {"loss", "reconstruction_loss", "vq_loss", "perplexity", "codebook_usage", "dead_codes", "psnr"}
    assert expected <= set(history.history)
    assert {"val_" + name for name in expected} <= set(history.history)
    result = model.evaluate(images, batch_size=8, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], result["reconstruction_loss"] + result["vq_loss"], rtol=1e-5)
    assert 1.0 <= result["perplexity"] <= 32.0
    assert 0.0 <= result["dead_codes"] <= 32.0
    assert model.predict(images[:4], verbose=0).shape == (4, 32, 32, 3)


def test_codes_and_decode_codes_reproduce_call(images):
    model = VQVAE(input_channels=3, **TINY)
    codes = model.codes(images[:4])
    assert codes.dtype == tf.int32 and codes.shape == (4, 8, 8)
    assert int(tf.reduce_min(codes)) >= 0 and int(tf.reduce_max(codes)) < 32
    np.testing.assert_allclose(model.decode_codes(codes).numpy(), model(images[:4]).numpy(), atol=1e-6)
    # Any size divisible by the factor works: the network is convolutional.
    assert model.codes(np.zeros((1, 12, 20, 3), "float32")).shape == (1, 3, 5)


def test_reconstruction_loss_is_divided_by_data_variance(images):
    plain = VQVAE(input_channels=3, **TINY)
    plain.build(images.shape)
    scaled = VQVAE(input_channels=3, data_variance=0.25, **TINY)
    scaled.build(images.shape)
    scaled.set_weights(plain.get_weights())
    for m in (plain, scaled):
        m.compile(optimizer="adam")
    a = plain.evaluate(images, batch_size=32, verbose=0, return_dict=True)
    b = scaled.evaluate(images, batch_size=32, verbose=0, return_dict=True)
    np.testing.assert_allclose(b["reconstruction_loss"], 4 * a["reconstruction_loss"], rtol=1e-5)


def test_keras_round_trip_gives_identical_codes_and_outputs(images, tmp_path):
    model = VQVAE(input_channels=3, quantizer="vq", quantizer_config=dict(l2_normalize=True, seed=3), **TINY)
    model.compile(optimizer="adam")
    model.fit(images, batch_size=16, epochs=1, verbose=0)
    reloaded = run_model_saving_test(model, images[:4], tmp_path)
    np.testing.assert_array_equal(model.codes(images).numpy(), reloaded.codes(images).numpy())
    assert reloaded.get_config() == model.get_config()


@pytest.mark.slow
def test_saved_model_loads_in_a_fresh_process_after_importing_the_package(images, tmp_path):
    model = VQVAE(input_channels=3, **TINY)
    model.build(images.shape)
    path = tmp_path / "m.keras"
    model.save(path)
    expected = model.codes(images[:2]).numpy()
    np.save(tmp_path / "x.npy", images[:2])
    script = textwrap.dedent(
        f"""
        import numpy as np, keras, vqvae_tf
        m = keras.models.load_model({str(path)!r})
        print(m.codes(np.load({str(tmp_path / "x.npy")!r})).numpy().tolist())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    np.testing.assert_array_equal(np.array(eval(out.stdout.strip().splitlines()[-1])), expected)


@pytest.mark.slow
def test_jit_compiled_fit_runs_and_learns(images):
    keras.utils.set_random_seed(1)
    model = VQVAE(input_channels=3, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), jit_compile=True)
    first = model.fit(images, batch_size=16, epochs=1, verbose=0).history["reconstruction_loss"][0]
    last = model.fit(images, batch_size=16, epochs=5, verbose=0).history["reconstruction_loss"][-1]
    assert last < first


def test_mixed_bfloat16_keeps_quantizer_in_float32(images):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = VQVAE(input_channels=3, **TINY)
    model.compile(optimizer="adam")
    model.fit(images, batch_size=16, epochs=1, verbose=0)
    assert model.quantizer.codebook.dtype == "float32"
    assert model.encoder.compute_dtype == "bfloat16"
    assert model(images[:2]).dtype == tf.bfloat16


@pytest.mark.slow
def test_sequence_model_trains_on_one_dimensional_signals():
    t = np.linspace(0, 1, 64, dtype="float32")
    signals = np.stack([np.sin(2 * np.pi * f * t) for f in range(1, 17)])[..., None]
    model = VQVAE(input_channels=1, rank=1, **TINY)
    model.compile(optimizer="adam")
    model.fit(signals, batch_size=8, epochs=1, verbose=0)
    assert model.codes(signals).shape == (16, 16)
    assert model.decode_codes(model.codes(signals)).shape == (16, 64, 1)


@pytest.mark.parametrize(
    "inputs,error,message",
    [
        (np.zeros((2, 32, 32, 3), "uint8"), TypeError, "float images scaled to \\[0, 1\\]; received dtype uint8"),
        (np.zeros((2, 32, 32, 1), "float32"), ValueError, "3 input channels; received shape \\(2, 32, 32, 1\\)"),
        (np.zeros((2, 32, 32), "float32"), ValueError, "\\(batch, height, width, channels\\); received shape"),
        (
            np.zeros((2, 30, 32, 3), "float32"),
            ValueError,
            "multiples of downsample=4; received shape \\(2, 30, 32, 3\\)",
        ),
        (np.full((2, 32, 32, 3), np.nan, "float32"), ValueError, "non-finite values"),
    ],
)
def test_bad_inputs_get_clear_errors(inputs, error, message):
    model = VQVAE(input_channels=3, **TINY)
    with pytest.raises(error, match=message):
        model(inputs)


def test_nan_batch_in_fit_is_reported_by_name(images):
    model = VQVAE(input_channels=3, **TINY)
    model.compile(optimizer="adam")
    bad = images.copy()
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite values"):
        model.fit(bad, batch_size=8, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(quantizer="nope"), "Unknown quantizer 'nope'"),
        (dict(data_variance=0.0), "data_variance"),
        (dict(input_channels=0), "input_channels"),
        (dict(quantizer_config=[1]), "quantizer_config"),
    ],
)
def test_bad_model_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VQVAE(**kwargs)


@pytest.mark.parametrize("strides", [None, (2, 4)])
def test_variables_are_ordered_encoder_quantizer_decoder(strides):
    # Keras orders variables, and a saved optimizer's slots, by attribute
    # assignment: `.keras` files saved with their optimizer by earlier
    # versions load only with this order (and the model id hashes it).
    rank = 2 if strides is None else 1
    model = VQVAE(
        input_channels=1 if strides else 3,
        rank=rank,
        strides=strides,
        hidden_units=8,
        residual_units=4,
        num_residual_blocks=1,
        num_codes=16,
        code_dim=8,
        quantizer="residual",
        quantizer_config=dict(lookup_dim=4, num_stages=2),
    )
    model.build((None, 16, 16, 3) if strides is None else (None, 64, 1))
    owners = [v.path.split("/")[1] for v in model.trainable_variables]
    firsts = [owners.index(name) for name in ("encoder", "quantizer", "decoder")]
    assert firsts == sorted(firsts) and owners == sorted(owners, key=["encoder", "quantizer", "decoder"].index)

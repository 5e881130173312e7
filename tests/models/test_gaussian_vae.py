"""The Gaussian VAE baseline and its discretized likelihood (`vqvae_tf.models.gaussian_vae`)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from vqvae_tf.models.gaussian_vae import GaussianVAE, discretized_gaussian_log_prob


def phi(z):
    """Standard normal CDF."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def images(n=8, size=8, channels=1, seed=0):
    levels = np.random.default_rng(seed).integers(0, 256, (n, size, size, channels))
    return (levels / 255.0).astype(np.float32)


def tiny_vae(**kwargs):
    keras.utils.set_random_seed(0)
    kwargs = (
        dict(
            input_channels=1,
            downsample=2,
            hidden_units=8,
            residual_units=4,
            num_residual_blocks=1,
            latent_dim=3,
            seed=1,
        )
        | kwargs
    )
    return GaussianVAE(**kwargs)


def test_discretized_gaussian_hand_worked():
    # A bin is +-0.5 levels wide; with std = 0.5 level it spans +-1 sigma.
    std = 0.5 / 255.0
    x = np.array([0.0, 100 / 255.0, 1.0], np.float32)
    log_p = discretized_gaussian_log_prob(x, x, std).numpy()
    interior = phi(1.0) - phi(-1.0)  # 0.682689...
    edge = phi(1.0)  # the first/last bins are open
    np.testing.assert_allclose(np.exp(log_p), [edge, interior, edge], rtol=1e-5)
    # bits/dim of those three dimensions, as the model reports it.
    bits = -log_p.sum() / (3 * math.log(2))
    assert bits == pytest.approx(-(2 * math.log2(edge) + math.log2(interior)) / 3, rel=1e-5)


def test_discretized_gaussian_masses_sum_to_one_and_tails_are_finite():
    levels = np.arange(256, dtype=np.float32)[:, None] / 255.0
    loc = np.array([0.3, 1.4, -0.2, 0.5], np.float32)
    scale = np.array([0.05, 0.02, 0.3, 1e-3], np.float32)
    masses = np.exp(discretized_gaussian_log_prob(levels, loc, scale).numpy())
    np.testing.assert_allclose(masses.sum(axis=0), 1.0, atol=1e-5)
    # Far in the tails (hundreds of sigmas) values and gradients stay finite.
    loc_var, scale_var = tf.Variable([0.0, 1.0]), tf.Variable([1e-3, 1e-3])
    with tf.GradientTape() as tape:
        log_p = discretized_gaussian_log_prob(tf.constant([1.0, 0.0]), loc_var, scale_var)
    gradients = tape.gradient(log_p, [loc_var, scale_var])
    assert np.all(np.isfinite(log_p.numpy())) and np.all(log_p.numpy() < -1e4)
    assert all(np.all(np.isfinite(g.numpy())) for g in gradients)


def test_kl_matches_closed_form():
    vae = tiny_vae()
    x = images()
    raw = vae.encoder(x).numpy().astype(np.float64)
    mu, s = np.split(raw, 2, axis=-1)
    sigma = np.log1p(np.exp(s)) + 1e-4
    expected = 0.5 * (sigma**2 + mu**2 - 1.0 - 2.0 * np.log(sigma))
    terms = vae.elbo_terms(x, sample=False)
    np.testing.assert_allclose(terms["kl"].numpy(), expected.sum(axis=(1, 2, 3)), rtol=1e-4)


def test_elbo_and_bits_per_dim_arithmetic():
    vae = tiny_vae()
    x = images()
    terms = vae.elbo_terms(x, sample=False)
    mean = vae.decode(vae.posterior(x).mean())
    reconstruction = -tf.reduce_sum(discretized_gaussian_log_prob(x, mean, vae.likelihood_scale()), [1, 2, 3])
    np.testing.assert_allclose(terms["reconstruction"].numpy(), reconstruction.numpy(), rtol=1e-5)
    np.testing.assert_allclose(terms["elbo"].numpy(), -(terms["reconstruction"] + terms["kl"]).numpy(), rtol=1e-6)
    # A sampled ELBO keeps the KL (exact) and differs only in the reconstruction.
    sampled = vae.elbo_terms(x, sample=True)
    np.testing.assert_allclose(sampled["kl"].numpy(), terms["kl"].numpy(), rtol=1e-6)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    logs = vae.evaluate(x, batch_size=len(x), return_dict=True, verbose=0)
    dims = 8 * 8 * 1
    assert logs["elbo"] == pytest.approx(-(logs["reconstruction"] + logs["kl"]), rel=1e-5)
    assert logs["kl"] == pytest.approx(float(np.mean(terms["kl"])), rel=1e-5)
    assert logs["bits_per_dim"] == pytest.approx(-logs["elbo"] / (dims * math.log(2)), rel=1e-5)
    assert logs["loss"] == pytest.approx(-logs["elbo"] / dims, rel=1e-5)


@pytest.mark.slow
def test_one_fit_step_and_save_round_trip(tmp_path):
    vae = tiny_vae()
    vae.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = images(16)
    history = vae.fit(x, batch_size=8, epochs=2, verbose=0).history
    assert set(history) >= {"loss", "elbo", "kl", "reconstruction", "bits_per_dim"}
    assert all(np.isfinite(v).all() for v in history.values())
    assert history["loss"][-1] < history["loss"][0]
    path = tmp_path / "vae.keras"
    vae.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored(x).numpy(), vae(x).numpy(), atol=1e-6)
    assert restored.get_config() == vae.get_config()


def test_bad_arguments():
    with pytest.raises(ValueError, match="latent_dim"):
        GaussianVAE(latent_dim=0)
    with pytest.raises(ValueError, match="initial_scale"):
        GaussianVAE(initial_scale=0.0)
    vae = tiny_vae()
    with pytest.raises(ValueError, match="channels"):
        vae(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(TypeError, match="float"):
        vae(np.zeros((1, 8, 8, 1), np.uint8))

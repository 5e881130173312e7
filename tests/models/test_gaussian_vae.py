"""The Gaussian VAE baseline and its discretized likelihood (`vqvae_tf.models.gaussian_vae`)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from vqvae_tf.models.gaussian_vae import PCM16_LEVELS, PCM16_RANGE, GaussianVAE, discretized_gaussian_log_prob
from vqvae_tf.models.vqvae import VQVAE


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


def test_beta_weights_the_kl_in_the_loss_only():
    x = images()
    plain, weighted = tiny_vae(), tiny_vae(beta=0.25)  # same seed: same weights
    for vae in (plain, weighted):
        vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    logs = [vae.evaluate(x, batch_size=len(x), return_dict=True, verbose=0) for vae in (plain, weighted)]
    # The reported ELBO, KL and bits/dim are the true ELBO's whatever beta; only the objective changes.
    for name in ("elbo", "kl", "bits_per_dim"):
        assert logs[1][name] == pytest.approx(logs[0][name], rel=1e-5)
    assert logs[1]["loss"] == pytest.approx((logs[1]["reconstruction"] + 0.25 * logs[1]["kl"]) / 64, rel=1e-5)
    assert logs[1]["loss"] < logs[0]["loss"]
    config = weighted.get_config()
    assert config["beta"] == 0.25 and "beta" not in plain.get_config()  # default configs (model ids) unchanged
    assert GaussianVAE.from_config(config).beta == 0.25
    with pytest.raises(ValueError, match="beta"):
        GaussianVAE(beta=-1.0)


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


# ------------------------------------------------------------ speech form
def waves(n=4, length=400, seed=0):
    """16-bit PCM waveforms `v / 32768`, speech-like in level (RMS ~0.1)."""
    pcm = np.round(np.random.default_rng(seed).normal(0.0, 3000.0, (n, length, 1))).clip(-32768, 32767)
    return (pcm / 32768.0).astype(np.float32)


def tiny_speech_vae(**kwargs):
    keras.utils.set_random_seed(0)
    kwargs = (
        dict(
            input_channels=1,
            rank=1,
            strides=(4, 5),
            hidden_units=4,
            num_residual_blocks=1,
            latent_dim=3,
            sample_rate=8000,
            data_variance=0.01,
            seed=1,
        )
        | kwargs
    )
    return GaussianVAE(**kwargs)


def test_pcm16_discretization_hand_worked():
    # 16-bit PCM: bins of width 1/32768 in [-1, 1); std = half a bin spans +-1 sigma.
    std = 0.5 / 32768.0
    x = np.array([-1.0, 1234 / 32768.0, 32767 / 32768.0], np.float32)
    log_p = discretized_gaussian_log_prob(x, x, std, levels=PCM16_LEVELS, value_range=PCM16_RANGE).numpy()
    np.testing.assert_allclose(np.exp(log_p), [phi(1.0), phi(1.0) - phi(-1.0), phi(1.0)], rtol=1e-4)
    # Over all 65,536 levels the masses sum to 1.
    levels = (np.arange(-32768, 32768, dtype=np.float32) / 32768.0)[:, None]
    masses = np.exp(
        discretized_gaussian_log_prob(levels, [0.01, -0.999], [3e-3, 0.02], PCM16_LEVELS, PCM16_RANGE).numpy()
    )
    np.testing.assert_allclose(masses.sum(axis=0), 1.0, atol=1e-4)


def test_speech_vae_shares_the_vqvae_network_and_latent_grid():
    vae = tiny_speech_vae()
    x = waves()
    posterior = vae.posterior(x)
    assert vae.downsample == 20 and vae.causal is True
    assert tuple(posterior.mean().shape) == (4, 20, 3)
    reconstruction = vae(x).numpy()
    assert reconstruction.shape == x.shape
    assert reconstruction.min() >= -1.0 and reconstruction.max() <= PCM16_RANGE[1]
    vqvae = VQVAE(
        input_channels=1, rank=1, strides=(4, 5), hidden_units=4, num_residual_blocks=1, code_dim=6, data_variance=0.01
    )
    assert vqvae.latent_shape(x.shape) == tuple(posterior.mean().shape[:-1])
    for mine, theirs in ((vae.encoder, vqvae.encoder), (vae.decoder, vqvae.decoder)):
        assert type(mine) is type(theirs) and type(mine).__name__.startswith("Speech")
        assert mine.get_config() == theirs.get_config()  # code_dim 6 = 2 * latent_dim on both


def test_speech_vae_bits_per_sample():
    vae = tiny_speech_vae()
    x = waves()
    terms = vae.elbo_terms(x, sample=False)
    mean = vae.decode(vae.posterior(x).mean())
    log_prob = discretized_gaussian_log_prob(x, mean, vae.likelihood_scale(), PCM16_LEVELS, PCM16_RANGE)
    np.testing.assert_allclose(terms["reconstruction"].numpy(), -np.sum(log_prob.numpy(), axis=(1, 2)), rtol=1e-5)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    logs = vae.evaluate(x, batch_size=len(x), return_dict=True, verbose=0)
    # One dimension per sample: bits/dim is bits per sample, of 16 for 16-bit PCM.
    assert logs["bits_per_dim"] == pytest.approx(-logs["elbo"] / (400 * math.log(2)), rel=1e-5)
    assert 0.0 < logs["bits_per_dim"] < 16.0


@pytest.mark.slow
def test_speech_vae_fits_and_round_trips(tmp_path):
    vae = tiny_speech_vae(initial_scale=0.05)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = waves(8)
    history = vae.fit(x, batch_size=4, epochs=3, verbose=0).history
    assert all(np.isfinite(v).all() for v in history.values())
    assert history["loss"][-1] < history["loss"][0]
    config = vae.get_config()
    assert {k: config[k] for k in ("rank", "strides", "causal", "sample_rate", "downsample")} == {
        "rank": 1,
        "strides": [4, 5],
        "causal": True,
        "sample_rate": 8000,
        "downsample": 20,
    }
    assert GaussianVAE.from_config(config).get_config() == config
    path = tmp_path / "speech_vae.keras"
    vae.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored(x).numpy(), vae(x).numpy(), atol=1e-6)
    assert restored.get_config() == config


def test_image_vae_config_has_no_speech_keys():
    # Image models keep the config (and so the model id) they had before the speech form.
    config = tiny_vae().get_config()
    assert not {"rank", "strides", "causal", "sample_rate", "data_variance"} & set(config)
    assert config["downsample"] == 2


def test_bad_speech_arguments():
    with pytest.raises(ValueError, match="rank-1 speech network; received rank=2"):
        GaussianVAE(strides=(4, 5))
    with pytest.raises(ValueError, match="causal=True needs the speech network"):
        GaussianVAE(causal=True)
    with pytest.raises(ValueError, match=r"product of strides \[4, 5\] \(20\)"):
        GaussianVAE(rank=1, strides=(4, 5), downsample=4)
    with pytest.raises(ValueError, match="rank"):
        GaussianVAE(rank=3)
    with pytest.raises(ValueError, match="data_variance"):
        tiny_speech_vae(data_variance=0.0)
    with pytest.raises(ValueError, match="multiples of downsample=20"):
        tiny_speech_vae()(np.zeros((1, 30, 1), np.float32))

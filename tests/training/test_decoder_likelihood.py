"""The VQ-VAE's decoder likelihood on audio: 16-bit PCM levels in [-1, 1), not the 8-bit image grid."""

import numpy as np

from vqvae_tf.models.gaussian_vae import PCM16_LEVELS, PCM16_RANGE, discretized_gaussian_log_prob
from vqvae_tf.training.decoder_likelihood import fit_decoder_scale, reconstruction_nats


class _FixedDecoder:
    """A rank-1 stand-in for a VQ-VAE whose reconstruction of a batch is given."""

    rank = 1

    def __init__(self, means):
        self.means = means

    def predict_on_batch(self, waves):
        return self.means


def test_audio_scale_and_nats_use_the_pcm16_grid():
    rng = np.random.default_rng(0)
    means = rng.uniform(-0.5, 0.5, (4, 2000, 1)).astype(np.float32)
    waves = np.round((means + 0.01 * rng.standard_normal(means.shape)) * 32768) / 32768
    waves = waves.astype(np.float32)
    model = _FixedDecoder(means)
    scale = fit_decoder_scale(model, [waves])
    # The grid's neighbours are 13% apart; negative samples (half of them) would sit in the first bin of [0, 1].
    assert 0.0085 < scale < 0.0115
    nats, dims, mse = reconstruction_nats(model, [waves], scale)
    expected = -discretized_gaussian_log_prob(waves, means, scale, PCM16_LEVELS, PCM16_RANGE).numpy().sum() / 4
    assert dims == 2000
    np.testing.assert_allclose(nats, expected, rtol=1e-5)
    # About log2(0.01 * 32768 * sqrt(2 pi e)) = 10.40 bits per sample (the Gaussian's entropy in bins).
    assert 10.3 < nats / (dims * np.log(2)) < 10.5
    np.testing.assert_allclose(mse, np.mean((waves - means) ** 2), rtol=1e-5)

"""The VQ-VAE's likelihood `p(x | z_q(x))`: the reconstruction term of the paper's bound.

The decoder gives only a mean; a discretized Gaussian around it (the same
model as the `GaussianVAE` baseline, `vqvae_tf.models.gaussian_vae`) with one
scale fitted on training images turns it into a likelihood, so the VQ-VAE
and its prior get a bound in bits per image dimension
(`vqvae_tf.priors.likelihood.vqvae_bits_per_dim`).
"""

from __future__ import annotations

import numpy as np

# Candidate decoder scales (in [0, 1] units) for the VQ-VAE likelihood.
_SCALE_GRID = np.geomspace(1e-3, 2.0, 64)


def _decoder_means(vqvae, dataset):
    for batch in dataset:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        # predict_on_batch runs the compiled predict function (fast), not eager layers.
        yield np.asarray(images, np.float32), np.asarray(vqvae.predict_on_batch(images), np.float32)


def fit_decoder_scale(vqvae, dataset):
    """Maximum-likelihood scale of the discretized Gaussian on the VQ-VAE's output.

    The VQ-VAE decoder gives only a mean; its likelihood
    (`gaussian_vae.discretized_gaussian_log_prob`, the same model as the
    `GaussianVAE` baseline) needs a scale, chosen here by a grid search over
    `_SCALE_GRID` on TRAINING images, one scale for all pixels.

    Args:
        vqvae: the VQ-VAE.
        dataset: finite iterable of image batches (or `(images, labels)`).

    Returns:
        Python float, the scale in [0, 1] units.
    """
    from vqvae_tf.models.gaussian_vae import discretized_gaussian_log_prob

    grid = _SCALE_GRID.astype(np.float32)[:, None, None, None, None]
    totals = np.zeros(len(_SCALE_GRID))
    for images, means in _decoder_means(vqvae, dataset):
        log_prob = discretized_gaussian_log_prob(images[None], means[None], grid)
        totals -= np.asarray(log_prob, np.float64).reshape(len(_SCALE_GRID), -1).sum(axis=1)
    return float(_SCALE_GRID[int(np.argmin(totals))])


def reconstruction_nats(vqvae, dataset, scale):
    """Mean `-log p(x | z_q(x))` in nats per image, with `fit_decoder_scale`'s scale.

    Returns:
        `(nats_per_image, num_dims, mse)`: the mean reconstruction NLL, the
        dimensions of one image (H * W * C) and the mean squared error of
        the reconstructions clipped to the data range [0, 1].
    """
    from vqvae_tf.models.gaussian_vae import discretized_gaussian_log_prob

    total, squared, count, dims = 0.0, 0.0, 0, None
    for images, means in _decoder_means(vqvae, dataset):
        total -= float(np.sum(discretized_gaussian_log_prob(images, means, scale)))
        squared += float(np.sum((images - np.clip(means, 0.0, 1.0)) ** 2))
        count += len(images)
        dims = int(np.prod(images.shape[1:]))
    if not count:
        raise ValueError("reconstruction_nats received an empty dataset.")
    return total / count, dims, squared / (count * dims)

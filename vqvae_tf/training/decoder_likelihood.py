"""The VQ-VAE's likelihood `p(x | z_q(x))`: the reconstruction term of the paper's bound.

The decoder gives only a mean; a discretized Gaussian around it (the same
model as the `GaussianVAE` baseline, `vqvae_tf.models.gaussian_vae`) with one
scale fitted on training images turns it into a likelihood, so the VQ-VAE
and its prior get a bound in bits per image dimension
(`vqvae_tf.priors.likelihood.vqvae_bits_per_dim`). A rank-1 (waveform)
VQ-VAE's likelihood is over the 65,536 levels of 16-bit PCM in [-1, 1), as
the `GaussianVAE`'s audio form (`PCM16_LEVELS`, `PCM16_RANGE`); its scale is
then in the units of the waveform.
"""

from __future__ import annotations

import numpy as np

# Candidate decoder scales (in [0, 1] units) for the VQ-VAE likelihood.
_SCALE_GRID = np.geomspace(1e-3, 2.0, 64)


def _levels(vqvae):
    """`(levels, value_range)` of the model's data (`vqvae_tf.models.gaussian_vae.data_grid`)."""
    from vqvae_tf.models.gaussian_vae import data_grid

    return data_grid(getattr(vqvae, "rank", 2))


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
        Python float, the scale in the units of the data ([0, 1] for
        images, [-1, 1] for audio).
    """
    from vqvae_tf.models.gaussian_vae import discretized_gaussian_log_prob

    levels, value_range = _levels(vqvae)
    totals = np.zeros(len(_SCALE_GRID))
    for images, means in _decoder_means(vqvae, dataset):
        grid = _SCALE_GRID.astype(np.float32).reshape((-1,) + (1,) * images.ndim)
        log_prob = discretized_gaussian_log_prob(images[None], means[None], grid, levels, value_range)
        totals -= np.asarray(log_prob, np.float64).reshape(len(_SCALE_GRID), -1).sum(axis=1)
    return float(_SCALE_GRID[int(np.argmin(totals))])


def reconstruction_nats(vqvae, dataset, scale):
    """Mean `-log p(x | z_q(x))` in nats per image, with `fit_decoder_scale`'s scale.

    Returns:
        `(nats_per_image, num_dims, mse)`: the mean reconstruction NLL, the
        dimensions of one image (H * W * C) and the mean squared error of
        the reconstructions clipped to the data range ([0, 1]; audio
        [-1, 1)). For audio an "image" is a clip and H * W * C is T * C.
    """
    from vqvae_tf.models.gaussian_vae import discretized_gaussian_log_prob

    levels, value_range = _levels(vqvae)
    total, squared, count, dims = 0.0, 0.0, 0, None
    for images, means in _decoder_means(vqvae, dataset):
        total -= float(np.sum(discretized_gaussian_log_prob(images, means, scale, levels, value_range)))
        squared += float(np.sum((images - np.clip(means, *value_range)) ** 2))
        count += len(images)
        dims = int(np.prod(images.shape[1:]))
    if not count:
        raise ValueError("reconstruction_nats received an empty dataset.")
    return total / count, dims, squared / (count * dims)

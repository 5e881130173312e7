"""A continuous Gaussian VAE: the likelihood baseline of the VQ-VAE paper.

Built from the same `Encoder` / `Decoder` as `VQVAE` (the encoder emits
`2 * latent_dim` channels: the posterior means and pre-softplus scales), so
the two models differ only in their bottleneck; with `strides` (rank 1) from
the same `SpeechEncoder` / `SpeechDecoder`, on the same latent grid (one
latent vector per hop of `prod(strides)` samples).

Likelihood (both this model and the VQ-VAE bound in `vqvae_tf.training.prior_training`
use it, so their bits/dim are comparable): a DISCRETIZED Gaussian over the
256 levels of 8-bit data. An image `x` in [0, 1] holds levels `k = 255 x`;
the decoder's output `mu` (in [0, 1] units) and a learned per-channel scale
`sigma` give each level the Normal mass of its bin,

    p(k) = Phi((k + 0.5 - 255 mu) / (255 sigma)) - Phi((k - 0.5 - 255 mu) / (255 sigma)),

with the first and last bins extended to -inf and +inf (as in PixelCNN++),
so the masses sum to 1 and `-log2 p(x) / (H W C)` is a true code length in
bits per dimension (no dequantization offset needed).

Audio (`rank=1`): waveforms in [-1, 1) are 16-bit PCM, `x = v / 32768` for
the integer samples `v` in -32768..32767 (as `vqvae_tf.utils.wav` reads
them), so the likelihood is the same discretized Gaussian over the 65,536
bins of width `2 / 65536 = 1 / 32768` (`PCM16_LEVELS`, `PCM16_RANGE`), edge
bins open; bits/dim is then bits per sample, out of 16. Resampled clips
(between PCM grids) count as their nearest bin.

Units: every log-likelihood here is in nats, summed over one image (or
clip). `bits/dim = -ELBO / (H * W * C * ln 2)` (`T * C` for audio); e.g. a 32x32 RGB image (3072
dims) with an ELBO of -3072 * ln 2 nats costs 1 bit/dim.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from vqvae_tf.models.image_inputs import ImageInputsMixin, networks_for, speech_args
from vqvae_tf.models.speech_networks import check_strides
from vqvae_tf.utils import distributed_ops
from vqvae_tf.utils.checks import check_choice, check_int, check_number

tfd = tfp.distributions

__all__ = ["GaussianVAE", "data_grid", "discretized_gaussian_log_prob", "LEVELS", "PCM16_LEVELS", "PCM16_RANGE"]

#: Levels of 8-bit data.
LEVELS = 256
#: Levels of 16-bit PCM audio, and the range of its samples `v / 32768`, `v` in -32768..32767.
PCM16_LEVELS = 65536
PCM16_RANGE = (-1.0, 32767.0 / 32768.0)
LN2 = math.log(2.0)
# Floor of the posterior and likelihood scales: keeps log-densities finite.
_MIN_SCALE = 1e-4


def data_grid(rank):
    """`(levels, value_range)` of a model's data: 8-bit images in (0, 1), or 16-bit PCM for rank-1 audio."""
    return (PCM16_LEVELS, PCM16_RANGE) if rank == 1 else (LEVELS, (0.0, 1.0))


def discretized_gaussian_log_prob(x, loc, scale, levels=LEVELS, value_range=(0.0, 1.0)):
    """Log-mass in nats of quantized data under a discretized Gaussian, per element.

    Args:
        x: float tensor in `value_range = (low, high)` holding
            `low + k (high - low) / (levels - 1)` values, `k` in
            0..levels - 1 (8-bit images: `k / 255` in [0, 1]).
        loc: float tensor broadcastable to `x`, the Gaussian mean in the
            units of `x` (need not lie in the range).
        scale: positive float tensor broadcastable to `x`, the standard
            deviation in the units of `x`.
        levels: int, number of levels. Defaults to 256.
        value_range: `(low, high)`, the first and last levels. Defaults to
            (0, 1); 16-bit PCM audio is `PCM16_RANGE` with `PCM16_LEVELS`.

    Returns:
        float32 tensor of `x`'s shape, `log p(k)` (<= 0), finite with finite
        gradients even far in the tails.

    Example: with `scale` tiny and `loc == x`, `p(k) ~= 1`, log-mass ~= 0.
    """
    x, loc, scale = (tf.cast(t, tf.float32) for t in (x, loc, scale))
    low, high = (float(v) for v in value_range)
    if (low, high) != (0.0, 1.0):
        # The bins are the same in [0, 1] units: an affine map of x, loc and scale.
        x, loc, scale = (x - low) / (high - low), (loc - low) / (high - low), scale / (high - low)
    return _discretized_gaussian_log_prob(x, loc, scale, float(levels - 1))


# Traced once per shape: eagerly, tfp's log_ndtr runs dozens of small ops.
@tf.function(reduce_retracing=True, autograph=False)
def _discretized_gaussian_log_prob(x, loc, scale, top):
    k = tf.round(tf.clip_by_value(x, 0.0, 1.0) * top)
    # The floor is in levels (0.0255 of a level, `_MIN_SCALE` of 8-bit data's range): a floor in
    # [0, 1] units would be 6.5 bins of 16-bit audio, a cap on its likelihood.
    mean, std = loc * top, tf.maximum(scale * top, _MIN_SCALE * (LEVELS - 1))
    standard = tfd.Normal(0.0, 1.0)
    # A bin's mass is symmetric in the distance to the mean; measuring it on
    # the left side keeps both CDFs in the accurate lower tail and avoids
    # `log(1 - 1)` (and NaN gradients) right of the mean.
    distance = -tf.abs(k - mean)
    middle = tfp.math.log_sub_exp(standard.log_cdf((distance + 0.5) / std), standard.log_cdf((distance - 0.5) / std))
    first = standard.log_cdf((0.5 - mean) / std)
    last = standard.log_cdf((mean - (top - 0.5)) / std)
    return tf.where(k <= 0.0, first, tf.where(k >= top, last, middle))


@keras.saving.register_keras_serializable(package="vqvae_tf")
class GaussianVAE(ImageInputsMixin, keras.Model):
    """Variational autoencoder with a diagonal Gaussian posterior.

    `q(z|x) = Normal(mu(x), softplus(s(x)))` per latent element, prior
    `p(z) = Normal(0, 1)`, likelihood `p(x|z)` the discretized Gaussian of
    `discretized_gaussian_log_prob` with the decoder output as mean and a
    learned per-channel scale. Training maximises the ELBO

        ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))

    with one reparameterised sample; the KL is exact
    (`tfd.kl_divergence`). The loss is `-ELBO` (with `beta`, the KL weighted
    by it) in nats per data dimension
    (the batch mean), divided by the number of replicas before the gradient
    (docs/design.md, fact 5), so a strategy matches one device at the same global
    batch.

    Args:
        input_channels: int, channels of the data. Defaults to 3.
        downsample: int in (2, 4, 8, 16), data to latent map; with
            `strides`, their product (None: 4, or the product of `strides`).
            Defaults to None.
        hidden_units: int, channels of the convolutions (with `strides`,
            the speech network's first stage). Defaults to 128.
        residual_units: int, channels in the residual blocks (unused with
            `strides`). Defaults to 64.
        num_residual_blocks: int. Defaults to 2.
        latent_dim: int, latent channels per map position. Defaults to 8.
        initial_scale: float > 0, initial likelihood scale in the units of
            the data ([0, 1] for images, [-1, 1] for audio), below 1.
            Defaults to 0.1.
        seed: int or None, seeds the reparameterisation noise. Defaults to
            None.
        rank: 2 for images in [0, 1] (NHWC, 8-bit likelihood), 1 for audio
            in [-1, 1] (NWC, 16-bit PCM likelihood). Defaults to 2.
        strides: None (the paper's network) or, for rank 1, the strides of
            the speech network, as `VQVAE`'s: (4, 5, 8) is a 160-sample hop,
            50 latent frames per second at 8 kHz. Defaults to None.
        causal: with `strides`: left-only padding (None means True), as
            `VQVAE`'s. Defaults to None.
        sample_rate: int or None, the audio rate in Hz, stored with the
            model. Defaults to None.
        data_variance: float > 0, with `strides`: the variance of the
            training waveforms; the speech network scales its input and
            output by `sqrt(data_variance)`, as `VQVAE`'s does. Defaults to
            1.0.
        beta: float >= 0, the weight of the KL term in the training loss
            (Higgins et al. 2017): `reconstruction + beta * KL`; below 1 the
            model spends more bits on its latents. The `elbo`, `kl` and
            `bits_per_dim` metrics stay those of the true ELBO (beta = 1), so
            a beta sweep traces a rate-distortion curve in the same units.
            Defaults to 1.0.
        **kwargs: base `keras.Model` arguments.

    Call arguments:
        inputs: float images `(batch, H, W, C)` in [0, 1] (8-bit levels),
            H and W divisible by `downsample`; rank 1: waveforms
            `(batch, T, C)` in [-1, 1], T divisible by `downsample`.
        training: bool.

    Returns the reconstruction (decoder mean at the posterior mean, clipped
    to the data range), shaped like the input: `(8, 32, 32, 3)` -> `(8, 32, 32, 3)`; the latent map is
    `(8, 8, 8, latent_dim)` for `downsample=4`; for `strides=(4, 5, 8)`,
    `(8, 8000, 1)` gives latents `(8, 50, latent_dim)`.

    Metrics: `loss` (nats/dim), `elbo` and `kl` and `reconstruction`
    (`-E_q log p(x|z)`), all in nats per image, `bits_per_dim`
    (`-ELBO / (H W C ln 2)`).

    Example:

    >>> vae = GaussianVAE(input_channels=1, hidden_units=32, residual_units=16, latent_dim=4)
    >>> vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    >>> vae.fit(images, batch_size=32, epochs=1)            # images in [0, 1]
    >>> vae.evaluate(images, return_dict=True)["bits_per_dim"]
    >>> speech = GaussianVAE(input_channels=1, rank=1, strides=(4, 5, 8), hidden_units=8, latent_dim=16,
    ...                      sample_rate=8000, data_variance=0.01)
    >>> speech.posterior(waves).mean().shape                 # waves (B, 8000, 1): (B, 50, 16)

    References:
        Kingma and Welling 2014, "Auto-Encoding Variational Bayes",
        arXiv:1312.6114; van den Oord et al. 2017, arXiv:1711.00937, sec. 4.1
        (VAE 4.51 bits/dim on CIFAR-10); Salimans et al. 2017 (PixelCNN++,
        discretized likelihood with open edge bins).
    """

    def __init__(
        self,
        input_channels=3,
        downsample=None,
        hidden_units=128,
        residual_units=64,
        num_residual_blocks=2,
        latent_dim=8,
        initial_scale=0.1,
        seed=None,
        rank=2,
        strides=None,
        causal=None,
        sample_rate=None,
        data_variance=1.0,
        beta=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_choice("rank", rank, (1, 2))
        beta = check_number("beta", beta, minimum=0)
        downsample, causal = speech_args(rank, downsample, strides, causal, sample_rate)
        data_variance = check_number("data_variance", data_variance, minimum=0, inclusive_min=False)
        check_int("input_channels", input_channels, minimum=1)
        check_int("latent_dim", latent_dim, minimum=1)
        initial_scale = check_number(
            "initial_scale", initial_scale, minimum=0, maximum=1, inclusive_min=False, inclusive_max=False
        )
        self.input_channels = input_channels
        self.downsample = downsample
        self.hidden_units = hidden_units
        self.residual_units = residual_units
        self.num_residual_blocks = num_residual_blocks
        self.latent_dim = latent_dim
        self.initial_scale = initial_scale
        self.seed = seed
        self.rank = rank
        self.strides = None if strides is None else check_strides(strides)
        self.causal = causal
        self.sample_rate = sample_rate
        self.data_variance = data_variance
        self.beta = beta
        encoder, decoder, stack = networks_for(self, data_variance)
        self.encoder = encoder(code_dim=2 * latent_dim, name="encoder", **stack)
        self.decoder = decoder(output_channels=input_channels, name="decoder", **stack)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.elbo_tracker = keras.metrics.Mean(name="elbo")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.bits_tracker = keras.metrics.Mean(name="bits_per_dim")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._check_shape(input_shape)
        if not self.encoder.built:
            self.encoder.build(input_shape)
        latent = self.encoder.compute_output_shape(input_shape)[:-1] + (self.latent_dim,)
        if not self.decoder.built:
            self.decoder.build(latent)
        # Softplus-parameterised so the scale stays positive under any step.
        self.raw_scale = self.add_weight(
            name="raw_scale",
            shape=(self.input_channels,),
            initializer=keras.initializers.Constant(math.log(math.expm1(self.initial_scale))),
        )

    # ------------------------------------------------------------ pieces
    @property
    def value_range(self):
        """`(low, high)` of the data's levels: (0, 1) for 8-bit images, `PCM16_RANGE` for audio."""
        return data_grid(self.rank)[1]

    @property
    def levels(self):
        """Levels of the data: `LEVELS` (256) for images, `PCM16_LEVELS` (65,536) for audio."""
        return data_grid(self.rank)[0]

    def posterior(self, inputs):
        """`q(z|x)` as a `tfd.Normal` with batch shape `(B, h, w, latent_dim)` (rank 1: `(B, t, latent_dim)`)."""
        self._check_inputs(inputs)
        if not self.built:
            self.build(tuple(inputs.shape))
        loc, raw = tf.split(tf.cast(self.encoder(inputs), tf.float32), 2, axis=-1)
        return tfd.Normal(loc, tf.nn.softplus(raw) + _MIN_SCALE)

    def likelihood_scale(self):
        """Per-channel likelihood standard deviation, in the units of the data."""
        return tf.nn.softplus(self.raw_scale) + _MIN_SCALE

    def decode(self, latents):
        """Decoder mean `(B, H, W, C)` for latents `(B, h, w, latent_dim)` (rank 1: `(B, T, C)`)."""
        return tf.cast(self.decoder(tf.cast(latents, self.compute_dtype)), tf.float32)

    def call(self, inputs, training=None):
        # The discretized likelihood's open edge bins let the decoder mean
        # leave [0, 1] (e.g. far below 0 on a black background); the image
        # it describes is the mean clipped to the data range.
        low, high = self.value_range
        return tf.clip_by_value(self.decode(self.posterior(inputs).mean()), low, high)

    def elbo_terms(self, inputs, sample=True):
        """Per-image terms in nats: dict of `elbo`, `kl`, `reconstruction` `(B,)` and `mean`.

        Args:
            inputs: images `(B, H, W, C)` in [0, 1] (rank 1: `(B, T, C)` in [-1, 1]).
            sample: True draws one reparameterised `z ~ q(z|x)`, so `elbo`
                is an unbiased estimate of the ELBO (a lower bound on
                `log p(x)`); False uses the posterior mean (deterministic,
                not a bound). Defaults to True.

        `reconstruction` is `-log p(x|z)`; `mean` the decoder output, shaped
        like `inputs`.
        """
        posterior = self.posterior(inputs)
        axes = list(range(1, self.rank + 2))
        kl = tf.reduce_sum(tfd.kl_divergence(posterior, tfd.Normal(0.0, 1.0)), axis=axes)
        latents = posterior.loc
        if sample:
            latents = latents + posterior.scale * keras.random.normal(tf.shape(latents), seed=self.seed_generator)
        mean = self.decode(latents)
        log_prob = discretized_gaussian_log_prob(
            inputs, mean, self.likelihood_scale(), levels=self.levels, value_range=self.value_range
        )
        reconstruction = -tf.reduce_sum(log_prob, axis=axes)
        return {"elbo": -(reconstruction + kl), "kl": kl, "reconstruction": reconstruction, "mean": mean}

    # ---------------------------------------------------------- training
    def _num_dims(self, inputs):
        return tf.cast(tf.reduce_prod(tf.shape(inputs)[1:]), tf.float32)

    def _loss(self, x, terms):
        # The training objective in nats/dim: -ELBO with the KL weighted by beta (beta = 1: -ELBO).
        return tf.reduce_mean(terms["reconstruction"] + self.beta * terms["kl"]) / self._num_dims(x)

    def train_step(self, data):
        x = self._unpack(data)
        with tf.GradientTape() as tape:
            terms = self.elbo_terms(x, sample=True)
            loss = self._loss(x, terms)
            # Keras sums gradients across replicas (docs/design.md, fact 5).
            scaled = self.optimizer.scale_loss(loss / distributed_ops.num_replicas())
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        return self._update_metrics(x, terms, loss)

    def test_step(self, data):
        x = self._unpack(data)
        # A sampled ELBO: the validation figures are a bound, not a point estimate.
        terms = self.elbo_terms(x, sample=True)
        return self._update_metrics(x, terms, self._loss(x, terms))

    @property
    def metrics(self):
        return [self.loss_tracker, self.elbo_tracker, self.kl_tracker, self.reconstruction_tracker, self.bits_tracker]

    def _update_metrics(self, x, terms, loss):
        batch = tf.cast(tf.shape(x)[0], tf.float32)
        self.loss_tracker.update_state(loss, sample_weight=batch)
        for tracker, name in (
            (self.elbo_tracker, "elbo"),
            (self.kl_tracker, "kl"),
            (self.reconstruction_tracker, "reconstruction"),
        ):
            tracker.update_state(terms[name])
        self.bits_tracker.update_state(-terms["elbo"] / (self._num_dims(x) * LN2))
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        config = super().get_config()
        config.update(
            input_channels=self.input_channels,
            **self._stack_config(),
            latent_dim=self.latent_dim,
            initial_scale=self.initial_scale,
            seed=self.seed,
        )
        # Written only when not the default, so image models keep their configs (and model ids).
        if self.rank != 2:
            config["rank"] = self.rank
        if self.strides is not None:
            config.update(strides=list(self.strides), causal=self.causal, data_variance=self.data_variance)
        if self.sample_rate is not None:
            config["sample_rate"] = self.sample_rate
        if self.beta != 1.0:
            config["beta"] = self.beta
        return config

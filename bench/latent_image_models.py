"""Models and measures of bench/latent_images.py: decoders of varied strength, code usage, quality, plots.

Stronger decoders for the posterior-collapse experiment, on the library's
`VQVAE` and `GaussianVAE` (same encoder, bottleneck and latent grid):

- `replace_decoder`: a decoder of other width (e.g. 64 -> 256 channels),
  encoder untouched;
- `ARVQVAE` / `ARGaussianVAE`: an autoregressive decoder, the library's
  decoder upsampling the latent map to `feature_channels` at full resolution,
  then `PixelHead`, a small PixelCNN over the pixels (masked convolutions,
  van den Oord et al. 2016) conditioned on those features, giving each
  pixel's discretized-Gaussian mean and scale from the pixels above and to
  the left. Likelihoods are exact in one pass (teacher forcing). One channel
  only (MNIST): RGB would need the channel-ordered masks of PixelCNN.

Bench code, not library code: it sits beside its script.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from vqvae_tf.models.gaussian_vae import GaussianVAE, discretized_gaussian_log_prob
from vqvae_tf.models.image_inputs import networks_for
from vqvae_tf.models.vqvae import VQVAE

LN2 = math.log(2.0)


def replace_decoder(model, output_channels, hidden_units=None, residual_units=None):
    """Swaps `model.decoder` (before the model is built) for one of other width or output channels."""
    if model.built:
        raise ValueError(f"replace_decoder needs an unbuilt model; received a built {type(model).__name__}.")
    _, decoder, stack = networks_for(model, model.data_variance)
    stack.update({k: v for k, v in (("hidden_units", hidden_units), ("residual_units", residual_units)) if v})
    del model.decoder  # untracked, so the unused decoder leaves no weights behind
    model.decoder = decoder(output_channels=output_channels, name="decoder", **stack)


class MaskedConv2D(keras.layers.Conv2D):
    """A Conv2D that sees only the pixels above and to the left (type "A": not the centre; "B": with it)."""

    def __init__(self, filters, kernel_size, mask_type, **kwargs):
        super().__init__(filters, kernel_size, padding="same", **kwargs)
        self.mask_type = mask_type

    def build(self, input_shape):
        super().build(input_shape)
        k = self.kernel_size[0]
        mask = np.ones(self.kernel.shape, np.float32)
        mask[k // 2, k // 2 + (self.mask_type == "B") :] = 0.0
        mask[k // 2 + 1 :] = 0.0
        self.mask = mask  # numpy: a tensor made here would belong to the graph of a first traced call

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, kernel * self.mask)

    def get_config(self):
        return super().get_config() | {"mask_type": self.mask_type}


class PixelHead(keras.layers.Layer):
    """Causal pixel stack over one-channel images, conditioned on per-pixel features: `(mean, log scale factor)`.

    Shapes: x `(B, H, W, 1)` in [0, 1], features `(B, H, W, F)`; both outputs `(B, H, W, 1)`.
    """

    def __init__(self, channels=32, num_layers=4, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.num_layers = channels, num_layers
        self.first = MaskedConv2D(channels, 7, "A", name="first")
        self.condition = [keras.layers.Conv2D(channels, 1, name=f"cond{i}") for i in range(num_layers + 1)]
        self.masked = [MaskedConv2D(channels, 3, "B", name=f"masked{i}") for i in range(num_layers)]
        self.out = keras.layers.Conv2D(2, 1, name="out", kernel_initializer="zeros")

    def build(self, input_shape, feature_shape):
        self.first.build(input_shape)
        hidden = tuple(input_shape[:-1]) + (self.first.filters,)
        for layer in self.condition:
            layer.build(feature_shape)
        for layer in self.masked:
            layer.build(hidden)
        self.out.build(hidden)

    def get_config(self):
        return super().get_config() | {"channels": self.channels, "num_layers": self.num_layers}

    def call(self, x, features):
        h = self.first(x - 0.5) + self.condition[0](features)
        for masked, condition in zip(self.masked, self.condition[1:]):
            h = h + keras.ops.relu(masked(keras.ops.relu(h)) + condition(features))
        out = self.out(keras.ops.relu(h))
        # The mean is an offset from the latent decoder's features' own guess (feature 0), so the
        # head starts as the plain decoder; the scale a bounded factor on the model's scale.
        return features[..., :1] + out[..., :1], keras.ops.clip(out[..., 1:], -6.0, 3.0)


def _attach_pixel_head(model, feature_channels, head_channels, head_layers):
    """Gives an unbuilt 1-channel model a decoder of `feature_channels` features and a `PixelHead` over them."""
    if model.input_channels != 1:
        raise ValueError(f"the autoregressive decoder is for 1-channel images; received {model.input_channels}.")
    replace_decoder(model, feature_channels)
    model.head = PixelHead(head_channels, head_layers, name="head")


def _build_pixel_head(model, input_shape):
    model.head.build(tuple(input_shape), tuple(input_shape[:-1]) + (model.decoder.output_channels,))


class ARGaussianVAE(GaussianVAE):
    """`GaussianVAE` whose likelihood is `PixelHead`'s autoregressive one, given the sampled latents."""

    def __init__(self, feature_channels=16, head_channels=32, head_layers=4, **kwargs):
        super().__init__(**kwargs)
        _attach_pixel_head(self, feature_channels, head_channels, head_layers)

    def build(self, input_shape):
        super().build(input_shape)
        _build_pixel_head(self, input_shape)

    def pixel_nats(self, inputs, latents):
        """`-log p(x | z)` in nats per image `(B,)`, and the teacher-forced means."""
        mean, log_factor = self.head(inputs, self.decode(latents))
        scale = self.likelihood_scale() * tf.exp(log_factor)
        log_prob = discretized_gaussian_log_prob(inputs, mean, scale)
        return -tf.reduce_sum(log_prob, axis=[1, 2, 3]), mean

    def elbo_terms(self, inputs, sample=True):
        posterior = self.posterior(inputs)
        kl = tf.reduce_sum(tfp.distributions.kl_divergence(posterior, tfp.distributions.Normal(0.0, 1.0)), [1, 2, 3])
        latents = posterior.loc
        if sample:
            latents = latents + posterior.scale * keras.random.normal(tf.shape(latents), seed=self.seed_generator)
        reconstruction, mean = self.pixel_nats(inputs, latents)
        return {"elbo": -(reconstruction + kl), "kl": kl, "reconstruction": reconstruction, "mean": mean}

    def call(self, inputs, training=None):
        return tf.clip_by_value(self.pixel_nats(inputs, self.posterior(inputs).mean())[1], 0.0, 1.0)


class ARVQVAE(VQVAE):
    """`VQVAE` trained on `PixelHead`'s autoregressive likelihood (nats/dim) plus the VQ losses, not on MSE."""

    def __init__(self, feature_channels=16, head_channels=32, head_layers=4, **kwargs):
        super().__init__(**kwargs)
        _attach_pixel_head(self, feature_channels, head_channels, head_layers)

    def build(self, input_shape):
        super().build(input_shape)
        _build_pixel_head(self, input_shape)
        self.raw_scale = self.add_weight(
            name="raw_scale", shape=(1,), initializer=keras.initializers.Constant(math.log(math.expm1(0.1)))
        )

    def pixel_nats(self, inputs, quantized):
        """`-log p(x | z_q)` in nats per image `(B,)` for quantized vectors, and the teacher-forced means."""
        mean, log_factor = self.head(inputs, self.decoder(quantized))
        scale = (tf.nn.softplus(self.raw_scale) + 1e-4) * tf.exp(log_factor)
        return -tf.reduce_sum(discretized_gaussian_log_prob(inputs, mean, scale), axis=[1, 2, 3]), mean

    def _terms(self, inputs, training):
        x = self._unpack(inputs)
        if not self.built:
            self.build(tuple(x.shape))
        quantized = self.quantizer(self.encoder(x, training=training), training=training)
        nats, mean = self.pixel_nats(x, quantized["quantized"])
        dims = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), tf.float32)
        reconstruction_loss = tf.reduce_mean(nats) / dims
        return x, mean, quantized, reconstruction_loss, reconstruction_loss + quantized["loss"]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            x, mean, quantized, reconstruction_loss, loss = self._terms(data, True)
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        return self._update_metrics(x, mean, quantized, reconstruction_loss, loss)

    def test_step(self, data):
        x, mean, quantized, reconstruction_loss, loss = self._terms(data, False)
        return self._update_metrics(x, mean, quantized, reconstruction_loss, loss)

    def call(self, inputs, training=None):
        quantized = self.quantizer(self.encoder(inputs), training=False)["quantized"]
        return tf.clip_by_value(self.pixel_nats(inputs, quantized)[1], 0.0, 1.0)


# ------------------------------------------------------------------ measures
def batches(images, batch_size):
    """A finite dataset of an image array."""
    return tf.data.Dataset.from_tensor_slices(np.asarray(images, np.float32)).batch(batch_size)


def code_usage(vqvae, dataset):
    """Use of the codebook on `dataset`: perplexity `exp(H)` of the code histogram and the share of codes used."""
    counts = np.zeros(vqvae.num_codes, np.int64)
    for images in dataset:
        counts += np.bincount(np.asarray(vqvae.codes(images)).ravel(), minlength=vqvae.num_codes)
    p = counts[counts > 0] / counts.sum()
    return {"perplexity": float(np.exp(-np.sum(p * np.log(p)))), "fraction_used": float(np.mean(counts > 0))}


def quality(model, images, batch_size, ms_ssim=False):
    """MSE and PSNR (dB) of the clipped reconstructions of a uint8-level array; MS-SSIM too if asked."""
    squared, scores = 0.0, []
    for x in batches(images, batch_size):
        y = np.clip(np.asarray(model.predict_on_batch(x), np.float32), 0.0, 1.0)
        squared += float(np.sum((np.asarray(x) - y) ** 2))
        if ms_ssim:
            scores.append(np.asarray(tf.image.ssim_multiscale(x, y, max_val=1.0)))
    mse = squared / np.prod(np.shape(images))
    result = {"mse": mse, "psnr": 10.0 * math.log10(1.0 / mse)}
    if ms_ssim:
        result["ms_ssim"] = float(np.mean(np.concatenate(scores)))
    return result


def latent_reliance_bits(nats_true, nats_shuffled, dims):
    """Bits/dim the decoder loses when each image gets another image's latents: how much it uses them."""
    return (float(np.mean(nats_shuffled)) - float(np.mean(nats_true))) / (dims * LN2)


def vae_decoder_nats(vae, dataset, shuffle):
    """`-log p(x | z)` per image at the posterior mean (`shuffle`: the next image's latents), nats."""
    out = []
    for x in dataset:
        z = vae.posterior(x).mean()
        z = tf.roll(z, 1, axis=0) if shuffle else z
        if isinstance(vae, ARGaussianVAE):
            out.append(np.asarray(vae.pixel_nats(x, z)[0]))
        else:
            log_prob = discretized_gaussian_log_prob(x, vae.decode(z), vae.likelihood_scale())
            out.append(-np.asarray(tf.reduce_sum(log_prob, axis=[1, 2, 3])))
    return np.concatenate(out)


def vq_decoder_nats(vqvae, dataset, shuffle, scale=None):
    """`-log p(x | z_q)` per image (`shuffle`: the next image's codes), nats; `scale` for the plain decoder."""
    out = []
    for x in dataset:
        quantized = vqvae.quantizer(vqvae.encoder(x), training=False)["quantized"]
        quantized = tf.roll(quantized, 1, axis=0) if shuffle else quantized
        if isinstance(vqvae, ARVQVAE):
            out.append(np.asarray(vqvae.pixel_nats(x, quantized)[0]))
        else:
            log_prob = discretized_gaussian_log_prob(x, vqvae.decoder(quantized), scale)
            out.append(-np.asarray(tf.reduce_sum(log_prob, axis=[1, 2, 3])))
    return np.concatenate(out)


def interpolate_at(rate, rates, values):
    """`values` at `rate`, linear between the two sweep points around it (PSNR is ~linear in rate:
    6.02 dB per bit/dim for a Gaussian source); outside the sweep, the two nearest points extended.

    Returns `(value, extrapolated)`.
    """
    order = np.argsort(rates)
    r, v = np.asarray(rates, float)[order], np.asarray(values, float)[order]
    i = int(np.clip(np.searchsorted(r, rate), 1, len(r) - 1))
    value = v[i - 1] + (v[i] - v[i - 1]) * (rate - r[i - 1]) / (r[i] - r[i - 1])
    return float(value), bool(rate < r[0] or rate > r[-1])


def mean_spread(values):
    """`{"mean", "std", "min", "max", "n"}` of per-seed values (std with ddof=1; 0 for one seed)."""
    values = np.asarray(values, float)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {
        "mean": float(values.mean()),
        "std": std,
        "min": float(values.min()),
        "max": float(values.max()),
        "n": len(values),
    }


def draw_rd_plot(panels, path):
    """RD curves, one panel per domain: `{domain: {"vae": [(rate, psnr, label)], "vq": [...]}}` -> PNG (Pillow)."""
    from PIL import Image, ImageDraw, ImageFont

    from vqvae_tf.utils import atomic

    width, height, pad = 520 * len(panels), 420, 60
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for index, (domain, series) in enumerate(panels.items()):
        points = [p for s in series.values() for p in s]
        rates, psnrs = [p[0] for p in points], [p[1] for p in points]
        r0, r1 = 0.0, max(rates) * 1.1
        p0, p1 = math.floor(min(psnrs)) - 1, math.ceil(max(psnrs)) + 1
        left, top, right, bottom = index * 520 + pad, 40, index * 520 + 500, height - pad

        def xy(rate, value, left=left, right=right, r1=r1, p0=p0, p1=p1):
            return left + (right - left) * (rate - r0) / (r1 - r0), bottom - (bottom - top) * (value - p0) / (p1 - p0)

        draw.rectangle((left, top, right, bottom), outline="black")
        for i in range(6):
            x, _ = xy(r1 * i / 5, p0)
            draw.text((x - 12, bottom + 6), f"{r1 * i / 5:.3f}", fill="black", font=font)
            _, y = xy(0, p0 + (p1 - p0) * i / 5)
            draw.text((left - 34, y - 5), f"{p0 + (p1 - p0) * i / 5:.1f}", fill="black", font=font)
        draw.text((left, 12), f"{domain}: RD curve (rate bits/dim vs PSNR dB, held-out)", fill="black", font=font)
        draw.text((left + 150, bottom + 24), "rate (bits/dim)", fill="black", font=font)
        for name, colour in (("vae", (40, 110, 200)), ("vq", (200, 60, 40))):
            pts = sorted(series.get(name, []))
            coords = [xy(r, p) for r, p, _ in pts]
            if name == "vae" and len(coords) > 1:
                draw.line(coords, fill=colour, width=2)
            for (x, y), (_, _, label) in zip(coords, pts):
                draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=colour) if name == "vae" else draw.rectangle(
                    (x - 4, y - 4, x + 4, y + 4), fill=colour
                )
                draw.text((x + 6, y - 12), label, fill=colour, font=font)
        draw.text((right - 200, bottom - 30), "blue: Gaussian VAE (beta sweep)", fill=(40, 110, 200), font=font)
        draw.text((right - 200, bottom - 16), "red: VQ-VAE + PixelCNN prior", fill=(200, 60, 40), font=font)
    with atomic.atomic_output(path) as temp:
        canvas.save(temp, format="PNG")

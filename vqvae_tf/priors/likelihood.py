"""Likelihoods of code maps: nats per code, bits per dimension, the VQ-VAE bound.

`nll_per_code` evaluates any prior with a `logits` method (the autoregressive
priors and `UnigramPrior`); `bits_per_dim` and `vqvae_bits_per_dim` turn
nats into the units the paper reports; `NLLPerCode` and `BitsPerCode` are
the Keras metrics an `AutoregressivePrior` trains with.
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from vqvae_tf.priors.validation import validate_codes, validate_labels
from vqvae_tf.utils.checks import check_int

LN2 = math.log(2.0)


def code_log_prob(logits, codes):
    """Log-probability in nats of each code: `(B, H, W, K), (B, H, W) -> (B, H, W)`."""
    return tfp.distributions.Categorical(logits=tf.cast(logits, tf.float32)).log_prob(codes)


def nll_per_code(model, codes, labels=None, batch_size=256):
    """Mean negative log-likelihood of `codes` under `model`, in nats per code.

    Args:
        model: any prior with a `logits(codes, labels=None)` method
            (`GatedPixelCNN`, `TransformerPrior`, `UnigramPrior`).
        codes: integer array `(N, H, W)` with values in `[0, K)`.
        labels: class ids `(N,)` for a conditional model, else None.
        batch_size: int, maps evaluated per forward pass. Defaults to 256.

    Returns:
        Python float, `-mean_i log p(z_i | z_<i)` in nats. Divide by ln 2
        (or use `bits_per_dim(nll * H * W, H * W)`) for bits per code.
    """
    codes = validate_codes(codes, model.num_codes, getattr(model, "map_shape", None))
    labels = validate_labels(labels, model.num_classes, codes.shape[0])
    total, count = 0.0, 0
    for start in range(0, int(codes.shape[0]), batch_size):
        batch = codes[start : start + batch_size]
        batch_labels = None if labels is None else labels[start : start + batch_size]
        log_prob = code_log_prob(model.logits(batch, batch_labels), batch)
        total -= float(tf.reduce_sum(tf.cast(log_prob, tf.float64)))
        count += int(tf.size(batch))
    if count == 0:
        raise ValueError("`codes` is empty; expected at least one code map.")
    return total / count


def bits_per_dim(total_nats, num_dims):
    """Converts a negative log-likelihood in nats to bits per dimension.

    `bits/dim = total_nats / (num_dims * ln 2)`. For an image prior, pass the
    NLL summed over one image (or over a batch) and its number of IMAGE
    dimensions `H * W * C` (times the batch size for a batch).

    Example: an 8x8 RGB image (192 dims) with an NLL of 192 * ln 2 nats costs
    exactly 1 bit/dim: `bits_per_dim(192 * math.log(2), 192) == 1.0`.

    Args:
        total_nats: float, summed NLL in nats.
        num_dims: int > 0, number of dimensions the NLL is summed over.

    Returns:
        Python float, bits per dimension.
    """
    check_int("num_dims", num_dims, minimum=1)
    return float(total_nats) / (num_dims * LN2)


def vqvae_bits_per_dim(reconstruction_nats, prior_nats, num_dims):
    """The VQ-VAE negative log-likelihood bound in bits per image dimension.

    With a deterministic one-hot posterior `q(z|x)` the ELBO is
    `log p(x) >= log p(x|z_q(x)) + log p(z_q(x))` (the entropy of `q` is 0),
    so (van den Oord et al. 2017, Sec. 3.2 and 4.1):

        bits/dim = (NLL_rec + NLL_prior) / (H * W * C * ln 2)

    where, for ONE image (or both summed over the same batch):
    - `reconstruction_nats` = `-log p(x | z_q)` in nats, the decoder's
      discretized likelihood of the image summed over its `H * W * C` dims;
    - `prior_nats` = `-log p(z_q)` in nats, summed over the code map (e.g.
      `nll_per_code(prior, codes) * h * w`; a uniform prior gives
      `h * w * ln K`);
    - `num_dims` = `H * W * C`, the IMAGE dimensions (not the code-map size).

    Returns:
        Python float, an upper bound on the image NLL in bits per dimension.
    """
    return bits_per_dim(float(reconstruction_nats) + float(prior_nats), num_dims)


def _nats_per_code(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)


def _bits_per_code(y_true, y_pred):
    return _nats_per_code(y_true, y_pred) / LN2


class _PerCodeMetric(keras.metrics.MeanMetricWrapper):
    """A mean per-code loss of logits; subclasses choose the loss and the name."""

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="vqvae_tf")
class NLLPerCode(_PerCodeMetric):
    """Mean negative log-likelihood in nats per code, from logits.

    Args:
        name: str, defaults to `"nll"`.
        dtype: metric dtype, defaults to None (float32).
    """

    def __init__(self, name="nll", dtype=None):
        super().__init__(fn=_nats_per_code, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="vqvae_tf")
class BitsPerCode(_PerCodeMetric):
    """Mean negative log-likelihood in bits per code, from logits.

    Args:
        name: str, defaults to `"bits_per_code"`.
        dtype: metric dtype, defaults to None (float32).
    """

    def __init__(self, name="bits_per_code", dtype=None):
        super().__init__(fn=_bits_per_code, name=name, dtype=dtype)

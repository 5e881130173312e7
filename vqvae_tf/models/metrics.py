"""Keras metrics over code usage, and the SI-SNR of audio reconstructions."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="vqvae_tf")
class DeadCodes(keras.metrics.Metric):
    """Number of codes not used at all since the last reset (one epoch in `fit`).

    Per-batch perplexity says how evenly a batch spreads over the codebook;
    this says how much of the codebook the whole epoch touched. The counts
    are summed across replicas when read, so the result describes the global
    data under any strategy.

    Args:
        num_codes: int, codebook size K.
        name: metric name. Defaults to `"dead_codes"`.

    Call arguments (`update_state`):
        counts: float `(num_codes,)` histogram of the codes in a batch.

    Example:

    >>> metric = DeadCodes(4)
    >>> metric.update_state([3.0, 0.0, 1.0, 0.0])
    >>> float(metric.result())
    2.0
    """

    def __init__(self, num_codes, name="dead_codes", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_codes = int(num_codes)
        self.counts = self.add_variable(shape=(self.num_codes,), initializer="zeros", name="counts")

    def update_state(self, counts, sample_weight=None):
        counts = tf.cast(tf.reshape(counts, [self.num_codes]), self.counts.dtype)
        self.counts.assign_add(counts)

    def result(self):
        return tf.reduce_sum(tf.cast(tf.equal(tf.convert_to_tensor(self.counts), 0.0), tf.float32))

    def usage_histogram(self):
        """The accumulated per-code counts, for TensorBoard histograms."""
        return tf.convert_to_tensor(self.counts)

    def get_config(self):
        return {"num_codes": self.num_codes, "name": self.name, "dtype": self.dtype}


def si_snr(reference, estimate, epsilon=1e-8):
    """Scale-invariant signal-to-noise ratio in dB, one value per example.

    Both signals are made zero-mean over all non-batch axes; the estimate is
    split into its projection on the reference, `s = (<e, r> / ||r||^2) r`,
    and the rest `n = e - s`; the result is `10 log10(||s||^2 / ||n||^2)`
    (Le Roux et al. 2019, "SDR - half-baked or well done?", arXiv:1811.02508).

    Args:
        reference: float tensor `(batch, ...)`, e.g. `(batch, T, 1)` audio.
        estimate: float tensor of the same shape.
        epsilon: added to both energies, so silence gives a finite value.

    Returns:
        float32 tensor `(batch,)`.

    Example:

    >>> t = np.linspace(0, 1, 800, dtype="float32")[None, :, None]
    >>> clean = np.sin(2 * np.pi * 20 * t)
    >>> float(si_snr(clean, 0.5 * clean)[0]) > 60   # a scaled copy is perfect
    True
    """
    reference = tf.cast(reference, tf.float32)
    estimate = tf.cast(estimate, tf.float32)
    batch = tf.shape(reference)[0]
    reference = tf.reshape(reference, [batch, -1])
    estimate = tf.reshape(estimate, [batch, -1])
    reference -= tf.reduce_mean(reference, axis=1, keepdims=True)
    estimate -= tf.reduce_mean(estimate, axis=1, keepdims=True)
    scale = tf.reduce_sum(estimate * reference, axis=1, keepdims=True) / (
        tf.reduce_sum(tf.square(reference), axis=1, keepdims=True) + epsilon
    )
    target = scale * reference
    noise = estimate - target
    ratio = (tf.reduce_sum(tf.square(target), axis=1) + epsilon) / (tf.reduce_sum(tf.square(noise), axis=1) + epsilon)
    return 10.0 * tf.math.log(ratio) / tf.math.log(10.0)

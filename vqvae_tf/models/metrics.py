"""Keras metrics over code usage."""

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

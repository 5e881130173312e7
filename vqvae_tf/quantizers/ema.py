"""`VectorQuantizerEMA`: a vector quantizer whose codebook is moving-average state.

The search, statistics, restarts and k-means initialisation are those of
`BaseVectorQuantizer`; what differs is how the codebook moves: by
exponential moving averages of the encoder outputs assigned to each code
(paper, appendix A.1), all-reduced across replicas, instead of by a loss.
"""

import keras
import tensorflow as tf

from vqvae_tf.quantizers.vector_quantizer import COMMON_ARGS_DOC, BaseVectorQuantizer
from vqvae_tf.utils import distributed_ops
from vqvae_tf.utils.checks import check_number


@keras.saving.register_keras_serializable(package="vqvae_tf")
class VectorQuantizerEMA(BaseVectorQuantizer):
    __doc__ = (
        """Vector quantizer whose codebook follows moving averages (paper, A.1).

    With decay `g`, Laplace smoothing `eps`, per-code assignment counts `n_k`
    and sums of assigned inputs `s_k` over the global batch, each training
    step does (zero-debiased, as DeepMind Sonnet's `VectorQuantizerEMA`):

        t     <- t + 1
        N_h   <- g N_h + (1 - g) n          N = N_h / (1 - g^t)
        M_h   <- g M_h + (1 - g) s          M = M_h / (1 - g^t)
        N'_k  =  (N_k + eps) / (sum(N) + K eps) * sum(N)
        e_k   =  M_k / N'_k

    Counts and sums are all-reduced across replicas before the update, so all
    replicas hold the same codebook, equal to one device's at the same global
    batch. Statistics never move when `training` is not True. The loss is the
    commitment term only: `beta * ||z - sg(e)||^2`.

    Args (in addition to those below):
        decay: float in [0, 1), EMA decay `g`. Defaults to 0.99.
        epsilon: float > 0, Laplace smoothing `eps`. Defaults to 1e-5.
"""
        + COMMON_ARGS_DOC
        + """
    Example:

    >>> vq = VectorQuantizerEMA(num_codes=512, code_dim=64, decay=0.99)
    >>> out = vq(tf.random.normal((2, 8, 8, 64)), training=True)
    >>> float(out["codebook_loss"])
    0.0

    References:
        van den Oord et al. 2017, arXiv:1711.00937, appendix A.1.
        Razavi et al. 2019 (VQ-VAE-2), arXiv:1906.00446.
    """
    )

    _trainable_codebook = False

    def __init__(self, num_codes, code_dim, decay=0.99, epsilon=1e-5, **kwargs):
        decay = check_number("decay", decay, minimum=0, maximum=1, inclusive_max=False)
        epsilon = check_number("epsilon", epsilon, minimum=0, inclusive_min=False)
        super().__init__(num_codes, code_dim, **kwargs)
        self.decay = decay
        self.epsilon = epsilon

    def _build_state(self, state_kwargs):
        self.ema_cluster_size = self.add_weight(
            name="ema_cluster_size", shape=(self.num_codes,), initializer="zeros", dtype="float32", **state_kwargs
        )
        self.ema_dw = self.add_weight(
            name="ema_dw",
            shape=(self.num_codes, self.codebook_dim),
            initializer="zeros",
            dtype="float32",
            **state_kwargs,
        )

    def _loss_terms(self, latent, quantized):
        # The codebook moves by EMA, not by a loss.
        commitment_loss = tf.reduce_mean(tf.square(latent - tf.stop_gradient(quantized)))
        return tf.constant(0.0, tf.float32), commitment_loss

    def _update_codebook(self, flat, indices, global_counts):
        sums = tf.math.unsorted_segment_sum(flat, indices, self.num_codes)
        sums = distributed_ops.all_reduce_sum(sums)
        g = self.decay
        self.ema_cluster_size.assign(g * self.ema_cluster_size + (1.0 - g) * global_counts)
        self.ema_dw.assign(g * self.ema_dw + (1.0 - g) * sums)
        self.codebook.assign(self._codebook_from_state())

    def _codebook_from_state(self):
        bias = self._bias(self.decay)
        cluster_size = self.ema_cluster_size / bias
        dw = self.ema_dw / bias
        total = tf.reduce_sum(cluster_size)
        smoothed = (cluster_size + self.epsilon) / (total + self.num_codes * self.epsilon) * total
        return dw / smoothed[:, None]

    def _reset_codes(self, mask, vectors, counts, sums):
        # Write the revived codes' statistics as debiased averages, so the
        # next update blends the new vector with data instead of pulling the
        # code straight back to its old (dead) average.
        bias = self._bias(self.decay)
        self.ema_cluster_size.assign(tf.where(mask, counts * bias, self.ema_cluster_size))
        self.ema_dw.assign(tf.where(mask[:, None], sums * bias, self.ema_dw))

    def get_config(self):
        config = super().get_config()
        config.update(decay=self.decay, epsilon=self.epsilon)
        return config

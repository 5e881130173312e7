"""Vector quantizers: the nearest-code search and what moves the codebook.

`BaseVectorQuantizer` holds what every nearest-code quantizer shares: the
codebook and its usage statistics, the search (optionally between learned
projections, `lookup_dim`), the straight-through or rotation-trick gradient,
dead-code restarts and k-means initialisation. `VectorQuantizer` learns its
codebook by the codebook loss `||sg(z) - e||^2`; `VectorQuantizerEMA`
(`vqvae_tf.quantizers.ema`) keeps it as moving-average state.

Distances and the nearest code are computed in float32 whatever the dtype
policy, every piece of state stays identical across replicas under
`tf.distribute` (and equal to one device at the same global batch), and the
output is the documented dict of `vqvae_tf.quantizers.base`.
"""

import math

import keras
import tensorflow as tf

from vqvae_tf.quantizers.base import (
    QuantizerLayer,
    add_projections,
    check_indices,
    check_input_shape,
    dense,
    histogram_statistics,
    vq_loss_terms,
)
from vqvae_tf.quantizers.code_search import nearest_codes
from vqvae_tf.quantizers.codebook_init import kmeans
from vqvae_tf.quantizers.rotation import rotate_to_codes
from vqvae_tf.utils import distributed_ops
from vqvae_tf.utils.checks import check_int, check_number


def _l2_normalize(x):
    return tf.math.l2_normalize(x, axis=-1, epsilon=1e-12)


class BaseVectorQuantizer(QuantizerLayer):
    """Shared machinery of the vector quantizers; use a subclass.

    Subclasses decide how the codebook is stored and moved
    (`_trainable_codebook`, `_build_state`, `_loss_terms`,
    `_update_codebook`, `_reset_codes`).
    """

    # Whether the codebook is a trainable weight (gradient) or state (EMA).
    _trainable_codebook = True

    def __init__(
        self,
        num_codes,
        code_dim,
        commitment_cost=0.25,
        l2_normalize=False,
        kmeans_init=False,
        kmeans_iters=10,
        dead_code_threshold=0.0,
        usage_decay=0.99,
        rotation_trick=False,
        lookup_dim=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_codes = check_int("num_codes", num_codes, minimum=2)
        self.code_dim = check_int("code_dim", code_dim, minimum=1)
        self.commitment_cost = check_number("commitment_cost", commitment_cost, minimum=0)
        self.l2_normalize = bool(l2_normalize)
        self.kmeans_init = bool(kmeans_init)
        self.kmeans_iters = check_int("kmeans_iters", kmeans_iters, minimum=0)
        self.dead_code_threshold = check_number("dead_code_threshold", dead_code_threshold, minimum=0)
        self.usage_decay = check_number("usage_decay", usage_decay, minimum=0, maximum=1, inclusive_max=False)
        self.rotation_trick = bool(rotation_trick)
        if seed is not None:
            check_int("seed", seed, minimum=0)
        self.seed = seed
        self.lookup_dim = None if lookup_dim is None else check_int("lookup_dim", lookup_dim, minimum=1)

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        check_input_shape(self, tuple(input_shape), self.code_dim)
        limit = math.sqrt(3.0 / self.codebook_dim)
        self.codebook = self.add_weight(
            name="codebook",
            shape=(self.num_codes, self.codebook_dim),
            initializer=keras.initializers.RandomUniform(-limit, limit, seed=self.seed),
            trainable=self._trainable_codebook,
            autocast=False,
            aggregation="only_first_replica" if not self._trainable_codebook else "none",
            dtype="float32",
        )
        state = dict(trainable=False, autocast=False, aggregation="only_first_replica")
        self.usage_average = self.add_weight(
            name="usage_average", shape=(self.num_codes,), initializer="zeros", dtype="float32", **state
        )
        self.steps = self.add_weight(name="steps", shape=(), initializer="zeros", dtype="int64", **state)
        self.initialized = self.add_weight(name="initialized", shape=(), initializer="zeros", dtype="bool", **state)
        if self.lookup_dim is not None:
            add_projections(self, self.code_dim, self.lookup_dim, self.seed)
        self._build_state(state)

    @property
    def codebook_dim(self):
        """Size of the codebook vectors: `lookup_dim` if set, else `code_dim`."""
        return self.code_dim if self.lookup_dim is None else self.lookup_dim

    def _build_state(self, state_kwargs):
        """Hook for subclasses that keep extra state (EMA statistics)."""

    # ------------------------------------------------------------ public API
    def call(self, inputs, training=None):
        inputs, in_dtype, flat = self._flatten(inputs)
        outputs = self._quantize_flat(flat, training=training)
        self.add_loss(outputs["loss"])
        return self._output_dict(inputs, in_dtype, **outputs)

    def _quantize_flat(self, flat, training=None):
        """The output dict for float32 `(N, code_dim)` vectors, flat shapes.

        Composite quantizers (residual stages) call this directly: unlike
        `call` it adds no loss to the layer, so the caller decides which
        terms count.
        """
        latent = self._to_search_space(flat)
        codebook = self._search_codebook()
        indices = nearest_codes(latent, codebook)
        quantized = tf.gather(codebook, indices)

        codebook_loss, commitment_loss = self._loss_terms(latent, quantized)
        loss = codebook_loss + self.commitment_cost * commitment_loss

        # Batch statistics describe the global batch, so that every replica
        # reports (and acts on) the same numbers as one device would.
        local_counts, global_counts, perplexity, usage = histogram_statistics(indices, self.num_codes)
        if training:
            self._training_updates(latent, indices, local_counts, global_counts)

        if self.rotation_trick:
            passed = rotate_to_codes(latent, quantized)
        else:
            passed = latent + tf.stop_gradient(quantized - latent)
        return {
            "quantized": self._from_search_space(passed),
            "loss": loss,
            "codebook_loss": codebook_loss,
            "commitment_loss": commitment_loss,
            "indices": indices,
            "perplexity": perplexity,
            "usage": usage,
            "counts": local_counts,
        }

    def codes(self, inputs):
        """Nearest-code indices: int32 with shape `inputs.shape[:-1]`."""
        inputs, _, flat = self._flatten(inputs)
        indices = nearest_codes(self._to_search_space(flat), self._search_codebook())
        return tf.reshape(indices, tf.shape(inputs)[:-1])

    def lookup(self, indices):
        """Code vectors (float32) for int indices: shape `indices.shape + (code_dim,)`."""
        indices = check_indices(self, indices, self.num_codes)
        vectors = tf.gather(self._search_codebook(), indices)
        if self.lookup_dim is None:
            return vectors
        flat = self._from_search_space(tf.reshape(vectors, [-1, self.lookup_dim]))
        return tf.reshape(flat, tf.concat([tf.shape(indices), [self.code_dim]], axis=0))

    def initialize_codebook(self, vectors):
        """Sets the codebook by k-means on `vectors` (float `(N, code_dim)`).

        Called by `VQVAE.fit` on encoder outputs of the first batches when
        `kmeans_init=True`. It runs in cross-replica context (outside
        `strategy.run`), so the assignment writes the same codebook to every
        replica, equal to the single-device result for the same data.
        """
        vectors = tf.reshape(tf.cast(tf.convert_to_tensor(vectors), tf.float32), [-1, self.code_dim])
        if not self.built:
            self.build((None, self.code_dim))
        # With `lookup_dim` the k-means runs where the search runs: on the
        # inputs as the current (initial) projection maps them.
        vectors = self._to_search_space(vectors)
        centers, counts, sums = kmeans(vectors, self.num_codes, iterations=self.kmeans_iters, seed=self.seed or 0)
        # The k-means statistics count as one observed step, so the moving
        # averages that follow weight them like any other batch.
        self.steps.assign(tf.maximum(self.steps, 1))
        everything = tf.ones([self.num_codes], tf.bool)
        self.codebook.assign(centers)
        self._reset_codes(everything, centers, counts, sums)
        self._reset_usage(everything, counts)
        self.initialized.assign(True)

    # ------------------------------------------------------------- internals
    def _to_search_space(self, flat):
        """`(N, code_dim)` inputs -> `(N, codebook_dim)` vectors that are searched."""
        if self.lookup_dim is not None:
            flat = dense(flat, self.in_kernel, self.in_bias)
        return _l2_normalize(flat) if self.l2_normalize else flat

    def _from_search_space(self, vectors):
        """`(N, codebook_dim)` codes -> `(N, code_dim)` outputs."""
        return vectors if self.lookup_dim is None else dense(vectors, self.out_kernel, self.out_bias)

    def _search_codebook(self):
        codebook = tf.convert_to_tensor(self.codebook)
        return _l2_normalize(codebook) if self.l2_normalize else codebook

    def _loss_terms(self, latent, quantized):
        """`(codebook_loss, commitment_loss)` of float32 `(N, D)` vectors and their codes."""
        return vq_loss_terms(latent, quantized)

    def _update_codebook(self, flat, indices, global_counts):
        """Hook for state-held codebooks (EMA)."""

    def _reset_codes(self, mask, vectors, counts, sums):
        """Hook: reset per-code state of the codes in `mask`."""

    def _training_updates(self, flat, indices, local_counts, global_counts):
        self.steps.assign_add(1)
        self._update_codebook(flat, indices, global_counts)
        decay = self.usage_decay
        self.usage_average.assign(decay * self.usage_average + (1.0 - decay) * global_counts)
        if self.dead_code_threshold > 0.0:
            self._restart_dead_codes(flat)

    def _debiased_usage(self):
        # Zero-debiased like the EMA codebook statistics: after one step the
        # usage equals that step's counts instead of (1 - decay) times them.
        return self.usage_average / self._bias(self.usage_decay)

    def _restart_dead_codes(self, flat):
        """Replaces codes used less than the threshold by batch vectors.

        The replacements are rows of the *global* batch chosen with a
        stateless RNG keyed on (seed, step), fetched with one all-reduce, so
        every replica revives the same codes with the same vectors, as one
        device would at the same global batch. All of this runs every step
        without `tf.cond` because collectives inside control flow are not
        supported under MirroredStrategy.
        """
        _, global_rows = distributed_ops.global_row_offset(tf.shape(flat)[0])
        seed = tf.stack([tf.constant(self.seed or 0, tf.int64), tf.convert_to_tensor(self.steps)])
        picks = tf.random.stateless_uniform(
            [self.num_codes], seed=seed, minval=0, maxval=tf.maximum(global_rows, 1), dtype=tf.int32
        )
        candidates = distributed_ops.gather_global_rows(flat, picks)
        dead = self._debiased_usage() < self.dead_code_threshold
        self.codebook.assign(tf.where(dead[:, None], candidates, self.codebook))
        threshold = tf.fill([self.num_codes], self.dead_code_threshold)
        self._reset_codes(dead, candidates, threshold, candidates * threshold[:, None])
        self._reset_usage(dead, threshold)

    def _bias(self, decay):
        """Zero-debiasing factor `1 - decay^t` of a moving average after t steps."""
        return 1.0 - tf.pow(decay, tf.cast(self.steps, tf.float32))

    def _reset_usage(self, mask, usage):
        self.usage_average.assign(tf.where(mask, usage * self._bias(self.usage_decay), self.usage_average))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_codes=self.num_codes,
            code_dim=self.code_dim,
            commitment_cost=self.commitment_cost,
            l2_normalize=self.l2_normalize,
            kmeans_init=self.kmeans_init,
            kmeans_iters=self.kmeans_iters,
            dead_code_threshold=self.dead_code_threshold,
            usage_decay=self.usage_decay,
            rotation_trick=self.rotation_trick,
            lookup_dim=self.lookup_dim,
            seed=self.seed,
        )
        return config


#: Arguments, call arguments and outputs of every vector quantizer, for their class docstrings.
COMMON_ARGS_DOC = """
    Args:
        num_codes: int, number of codebook entries K.
        code_dim: int, size D of each code vector; the last axis of the inputs.
        commitment_cost: float, beta, weight of `||z - sg(e)||^2`. Defaults
            to 0.25 as in the paper.
        l2_normalize: bool, whether to L2-normalise inputs and codes before
            the search (cosine-similarity codes). Defaults to False.
        kmeans_init: bool, whether `VQVAE.fit` initialises the codebook by
            k-means++ and Lloyd iterations on encoder outputs of the first
            batches. Defaults to False.
        kmeans_iters: int, Lloyd iterations of that initialisation.
        dead_code_threshold: float, a code whose zero-debiased moving average
            of assignments per (global) training batch falls below this is
            replaced by a random encoder output of the current batch, and its
            statistics are reset. 0 (default) turns restarts off.
        usage_decay: float, decay of the usage moving average. Defaults to 0.99.
        rotation_trick: bool, whether gradients reach the encoder by the
            rotation trick (Fifty et al. 2024, `vqvae_tf.quantizers.rotation`) instead
            of the straight-through copy. The output value is the code
            either way. Defaults to False.
        lookup_dim: int or None, size of a low-dimensional codebook: inputs
            are projected `code_dim -> lookup_dim` by a learned affine map,
            searched (and EMA-averaged) there, and the code is projected back
            `lookup_dim -> code_dim` (vector-quantize-pytorch's
            `codebook_dim`; Yu et al. 2022, arXiv:2110.04627). Losses are
            measured in the lookup space. None (default) searches in
            `code_dim`.
        seed: int or None, seed of the initialiser, projections, k-means and
            restarts.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: float tensor of any rank >= 2 whose last axis is `code_dim`,
            e.g. encoder outputs `(batch, height, width, code_dim)`. Any float
            dtype: distances are always computed in float32.
        training: bool, whether to update state (EMA statistics, usage,
            restarts). State never moves when it is False or None.

    Returns:
        A dict with:
        - `"quantized"`: straight-through output `z + sg(e - z)` (or the
          rotation trick's), same shape and dtype as `inputs`; with
          `lookup_dim` it is the projected-back code.
        - `"loss"`: float32 scalar, codebook loss + beta * commitment loss
          (also added with `add_loss`).
        - `"codebook_loss"`, `"commitment_loss"`: float32 scalars.
        - `"indices"`: int32 codes, shape `inputs.shape[:-1]`.
        - `"perplexity"`: float32 scalar, exp(entropy) of the batch's code
          histogram (global batch under a strategy).
        - `"usage"`: float32 scalar, fraction of codes used in the batch.
        - `"counts"`: float32 `(num_codes,)`, this replica's code histogram.
"""


@keras.saving.register_keras_serializable(package="vqvae_tf")
class VectorQuantizer(BaseVectorQuantizer):
    __doc__ = (
        """Vector quantizer whose codebook is learned by gradient descent.

    Each input vector `z` is replaced by its nearest codebook entry `e`.
    Loss: `||sg(z) - e||^2 + beta * ||z - sg(e)||^2`, means over all
    elements; gradients reach the encoder by the straight-through estimator.
"""
        + COMMON_ARGS_DOC
        + """
    Example:

    >>> vq = VectorQuantizer(num_codes=512, code_dim=64)
    >>> out = vq(tf.random.normal((2, 8, 8, 64)))
    >>> out["quantized"].shape, out["indices"].shape, out["indices"].dtype
    (TensorShape([2, 8, 8, 64]), TensorShape([2, 8, 8]), tf.int32)

    References:
        van den Oord, Vinyals, Kavukcuoglu. Neural Discrete Representation
        Learning. NeurIPS 2017. arXiv:1711.00937.
    """
    )

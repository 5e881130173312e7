"""Vector quantizer layers: the discrete bottleneck of a VQ-VAE.

Two layers share one implementation:

* `VectorQuantizer`: the codebook is a trainable weight moved by the codebook
  loss `||sg(z) - e||^2`.
* `VectorQuantizerEMA`: the codebook is state, updated by exponential moving
  averages of the assigned encoder outputs (paper, appendix A.1).

Both compute distances and the nearest code in float32 whatever the dtype
policy (float16 distances overflow and pick wrong codes), keep every piece of
state identical across replicas under `tf.distribute` and equal to one device
at the same global batch, and return a documented dict instead of a tuple.
Both can search a low-dimensional codebook between learned projections
(`lookup_dim`) and pass gradients by the rotation trick (`rotation_trick`).

`QUANTIZERS` maps the short names that `VQVAE(quantizer=...)` accepts to the
layer classes, including the variants in their own modules (`"residual"`,
`"fsq"`, `"gumbel"`).
"""

import collections.abc
import importlib
import math

import keras
import numpy as np
import tensorflow as tf

from vqvae_tf.utils import distributed_ops
from vqvae_tf.quantizers.codebook_init import kmeans
from vqvae_tf.quantizers.code_search import nearest_codes, perplexity_from_counts
from vqvae_tf.quantizers.rotation import rotate_to_codes

OUTPUT_KEYS = (
    "quantized",
    "loss",
    "codebook_loss",
    "commitment_loss",
    "indices",
    "perplexity",
    "usage",
    "counts",
)


def as_tensor(inputs):
    """Tensors keep their dtype (that is the point); float64 arrays become float32."""
    if isinstance(inputs, (tf.Tensor, tf.Variable)) or keras.backend.is_keras_tensor(inputs):
        return inputs
    array = np.asarray(inputs)
    return tf.convert_to_tensor(array.astype(np.float32) if array.dtype == np.float64 else array)


@tf.custom_gradient
def vq_loss_terms(latent, quantized):
    """The paper's two loss terms, `(codebook_loss, commitment_loss)`.

    `codebook_loss = mean((sg(z) - e)^2)` and `commitment_loss =
    mean((z - sg(e))^2)` have the same value, so it is computed once, and
    the stop-gradients become a gradient that sends each term's share to
    `e` or to `z` alone: one pass over the `(N, D)` difference forward and
    one backward instead of two each (a measurable share of a training step,
    bench/quantizer.py).

    Args:
        latent: float32 `(N, D)` encoder vectors `z`.
        quantized: float32 `(N, D)` their codes `e`.

    Returns:
        Two float32 scalars.
    """
    diff = latent - quantized
    mse = tf.reduce_mean(tf.square(diff))

    def grad(d_codebook, d_commitment):
        per_element = diff * (2.0 / tf.cast(tf.size(diff, out_type=tf.int64), tf.float32))
        return d_commitment * per_element, -d_codebook * per_element

    return (mse, mse), grad


def _l2_normalize(x):
    return tf.math.l2_normalize(x, axis=-1, epsilon=1e-12)


class QuantizerLayer(keras.layers.Layer):
    """The contract every quantizer layer shares; subclass it.

    Distances in float16 overflow and choose wrong codes (DESIGN.md fact 8):
    a quantizer takes inputs in their own dtype, computes in float32 and
    casts its output back, so it neither converts its inputs to the policy's
    compute dtype nor autocasts its weights. Its call returns the documented
    dict (`OUTPUT_KEYS`, plus `extra_output_keys` scalars), whose `indices`
    have `code_shape` trailing axes per position.
    """

    #: Scalar outputs beyond `OUTPUT_KEYS` (e.g. the Gumbel KL).
    extra_output_keys = ()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._convert_input_args = False
        self.autocast = False

    def __call__(self, inputs, *args, **kwargs):
        # Keras's own input conversion is off (see above); arrays still work.
        return super().__call__(as_tensor(inputs), *args, **kwargs)

    @property
    def code_shape(self):
        """Trailing axes of a code map per position: `()`, one int per position."""
        return ()

    def _output_dict(self, inputs, in_dtype, *, quantized, indices, perplexity, usage, counts, **terms):
        """The documented output dict, shaped like `inputs`, from flat pieces.

        `quantized` is float32 `(N, code_dim)` and `indices` int32
        `(N,) + code_shape` over the flattened positions; loss terms not
        given are zero, other `terms` are the `extra_output_keys` scalars.
        """
        zero = tf.constant(0.0, tf.float32)
        index_shape = tf.shape(inputs)[:-1]
        if self.code_shape:
            index_shape = tf.concat([index_shape, tf.constant(self.code_shape, tf.int32)], axis=0)
        outputs = {key: terms.pop(key, zero) for key in ("loss", "codebook_loss", "commitment_loss")}
        outputs.update(
            quantized=tf.cast(tf.reshape(quantized, tf.shape(inputs)), in_dtype),
            indices=tf.reshape(indices, index_shape),
            perplexity=perplexity,
            usage=usage,
            counts=counts,
        )
        outputs.update(terms)
        return outputs

    def compute_output_spec(self, inputs, training=None):
        shape = tuple(inputs.shape)
        scalar = keras.KerasTensor((), dtype="float32")
        spec = {key: scalar for key in ("loss", "codebook_loss", "commitment_loss", "perplexity", "usage")}
        spec.update({key: scalar for key in self.extra_output_keys})
        spec["quantized"] = keras.KerasTensor(shape, dtype=inputs.dtype)
        spec["indices"] = keras.KerasTensor(shape[:-1] + tuple(self.code_shape), dtype="int32")
        spec["counts"] = keras.KerasTensor((self.num_codes,), dtype="float32")
        return spec


class BaseVectorQuantizer(QuantizerLayer):
    """Shared machinery of the vector quantizers; use a subclass.

    Subclasses decide how the codebook is stored and moved
    (`_make_codebook`, `_loss_terms`, `_update_codebook`).
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
        _check_int("num_codes", num_codes, minimum=2)
        _check_int("code_dim", code_dim, minimum=1)
        _check_float("commitment_cost", commitment_cost, minimum=0.0)
        _check_int("kmeans_iters", kmeans_iters, minimum=0)
        _check_float("dead_code_threshold", dead_code_threshold, minimum=0.0)
        _check_float("usage_decay", usage_decay, minimum=0.0, maximum=1.0, inclusive_max=False)
        if seed is not None:
            _check_int("seed", seed, minimum=0)
        if lookup_dim is not None:
            _check_int("lookup_dim", lookup_dim, minimum=1)
        self.num_codes = int(num_codes)
        self.code_dim = int(code_dim)
        self.commitment_cost = float(commitment_cost)
        self.l2_normalize = bool(l2_normalize)
        self.kmeans_init = bool(kmeans_init)
        self.kmeans_iters = int(kmeans_iters)
        self.dead_code_threshold = float(dead_code_threshold)
        self.usage_decay = float(usage_decay)
        self.rotation_trick = bool(rotation_trick)
        self.lookup_dim = None if lookup_dim is None else int(lookup_dim)
        self.seed = seed

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        self._check_shape(tuple(input_shape))
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
        self.initialized = self.add_weight(
            name="initialized", shape=(), initializer="zeros", dtype="bool", **state
        )
        if self.lookup_dim is not None:
            self.in_kernel, self.in_bias = add_dense_weights(
                self, "in_projection", self.code_dim, self.lookup_dim, self.seed
            )
            self.out_kernel, self.out_bias = add_dense_weights(
                self, "out_projection", self.lookup_dim, self.code_dim, self.seed
            )
        self._build_state(state)

    @property
    def codebook_dim(self):
        """Size of the codebook vectors: `lookup_dim` if set, else `code_dim`."""
        return self.code_dim if self.lookup_dim is None else self.lookup_dim

    def _build_state(self, state_kwargs):
        """Hook for subclasses that keep extra state (EMA statistics)."""

    # ------------------------------------------------------------ public API
    def call(self, inputs, training=None):
        in_dtype = self._check_inputs(inputs)
        flat = tf.reshape(tf.cast(inputs, tf.float32), [-1, self.code_dim])
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
        inputs = as_tensor(inputs)
        self._check_inputs(inputs)
        if not self.built:
            self.build(inputs.shape)
        flat = tf.reshape(tf.cast(inputs, tf.float32), [-1, self.code_dim])
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
        centers, counts, sums = kmeans(
            vectors, self.num_codes, iterations=self.kmeans_iters, seed=self.seed or 0
        )
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

    def _check_shape(self, shape):
        check_input_shape(self, shape, self.code_dim)

    def _check_inputs(self, inputs):
        return check_inputs(self, inputs, self.code_dim)

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



_DOC_COMMON = """
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
        + _DOC_COMMON
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
        + _DOC_COMMON
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
        _check_float("decay", decay, minimum=0.0, maximum=1.0, inclusive_max=False)
        _check_float("epsilon", epsilon, minimum=0.0, inclusive_min=False)
        super().__init__(num_codes, code_dim, **kwargs)
        self.decay = float(decay)
        self.epsilon = float(epsilon)

    def _build_state(self, state_kwargs):
        self.ema_cluster_size = self.add_weight(
            name="ema_cluster_size", shape=(self.num_codes,), initializer="zeros", dtype="float32", **state_kwargs
        )
        self.ema_dw = self.add_weight(
            name="ema_dw", shape=(self.num_codes, self.codebook_dim), initializer="zeros", dtype="float32", **state_kwargs
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


class _QuantizerRegistry(collections.abc.Mapping):
    """Short name -> quantizer class; classes of other modules load on first use.

    The variants live in modules that import this one (for the VQ stages and
    the shared helpers), so naming them as "module:Class" strings resolved on
    access avoids a circular import while `QUANTIZERS` stays one mapping.
    """

    def __init__(self, entries):
        self._entries = dict(entries)

    def __getitem__(self, name):
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = getattr(importlib.import_module(module), attribute)
            self._entries[name] = entry
        return entry

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)

    def __repr__(self):
        return f"QUANTIZERS({sorted(self._entries)})"


QUANTIZERS = _QuantizerRegistry(
    {
        "vq": VectorQuantizer,
        "ema": VectorQuantizerEMA,
        "residual": "vqvae_tf.quantizers.residual:ResidualVectorQuantizer",
        "fsq": "vqvae_tf.quantizers.fsq:FiniteScalarQuantizer",
        "gumbel": "vqvae_tf.quantizers.gumbel:GumbelQuantizer",
    }
)


def get_quantizer(kind, **kwargs):
    """Builds a registered quantizer by short name (`"vq"`, `"ema"`, `"residual"`, `"fsq"`, `"gumbel"`)."""
    try:
        cls = QUANTIZERS[kind]
    except KeyError:
        raise ValueError(f"Unknown quantizer {kind!r}; expected one of {sorted(QUANTIZERS)}.") from None
    return cls(**kwargs)


# ----------------------------------------------------- shared by the variants
def add_dense_weights(layer, name, in_dim, out_dim, seed=None):
    """Adds a float32 affine map `(in_dim -> out_dim)` to `layer`: (kernel, bias).

    Quantizers compute in float32 under any policy, so their projections
    are plain float32 weights applied with `dense`, not `Dense` sublayers
    that would follow the dtype policy.
    """
    kernel = layer.add_weight(
        name=f"{name}_kernel",
        shape=(in_dim, out_dim),
        initializer=keras.initializers.GlorotUniform(seed=seed),
        dtype="float32",
        autocast=False,
    )
    bias = layer.add_weight(name=f"{name}_bias", shape=(out_dim,), initializer="zeros", dtype="float32", autocast=False)
    return kernel, bias


def dense(flat, kernel, bias):
    """`flat @ kernel + bias` for `(N, in_dim)` inputs (TFLite FULLY_CONNECTED)."""
    return tf.nn.bias_add(tf.matmul(flat, kernel), bias)


def check_indices(layer, indices, num_codes):
    """Integer code indices as int32; eager calls also check the range.

    Raises:
        TypeError: if the indices are not integers.
        ValueError: (eagerly) if a value lies outside `[0, num_codes)`.
    """
    indices = tf.convert_to_tensor(indices)
    if not indices.dtype.is_integer:
        raise TypeError(
            f"{type(layer).__name__}.lookup expects integer code indices; received dtype {indices.dtype.name}."
        )
    if tf.executing_eagerly() and tf.size(indices) > 0:
        low, high = int(tf.reduce_min(indices)), int(tf.reduce_max(indices))
        if low < 0 or high >= num_codes:
            raise ValueError(
                f"{type(layer).__name__}.lookup expects indices in [0, {num_codes}); "
                f"received values in [{low}, {high}]."
            )
    return tf.cast(indices, tf.int32)


def histogram_statistics(indices, num_codes):
    """`(local_counts, global_counts, perplexity, usage)` of int32 codes `(N,)`.

    The global counts are all-reduced over replicas (identity on one device),
    so perplexity and usage describe the global batch under any strategy.
    """
    local_counts = tf.math.unsorted_segment_sum(tf.ones_like(indices, dtype=tf.float32), indices, num_codes)
    global_counts = distributed_ops.all_reduce_sum(local_counts)
    usage = tf.reduce_mean(tf.cast(global_counts > 0, tf.float32))
    return local_counts, global_counts, perplexity_from_counts(global_counts), usage


def check_input_shape(layer, shape, dim, dim_name="code_dim"):
    """Raises ValueError unless `shape` has rank >= 2 and last axis `dim`."""
    shape = tuple(shape)
    if len(shape) < 2 or (shape[-1] is not None and shape[-1] != dim):
        raise ValueError(
            f"{type(layer).__name__} expects inputs of rank >= 2 with last axis "
            f"{dim_name}={dim}, e.g. (batch, height, width, {dim}); "
            f"received shape {shape}."
        )


def check_inputs(layer, inputs, dim, dim_name="code_dim"):
    """Validates float inputs of a quantizer up front; returns their dtype.

    Raises:
        TypeError: for non-float inputs.
        ValueError: for a wrong shape, or (eagerly) NaN or Inf values.
    """
    dtype = tf.as_dtype(inputs.dtype) if hasattr(inputs, "dtype") else None
    if dtype is None or not dtype.is_floating:
        raise TypeError(
            f"{type(layer).__name__} expects floating-point inputs; received dtype "
            f"{getattr(dtype, 'name', type(inputs).__name__)}."
        )
    check_input_shape(layer, inputs.shape, dim, dim_name)
    if tf.executing_eagerly() and isinstance(inputs, tf.Tensor):
        if not bool(tf.reduce_all(tf.math.is_finite(inputs))):
            raise ValueError(
                f"{type(layer).__name__} received non-finite values (NaN or Inf) in its inputs; "
                "expected finite encoder outputs."
            )
    return dtype


def _check_int(name, value, minimum=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be an int; received {value!r} of type {type(value).__name__}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; received {value}.")


def _check_float(name, value, minimum=None, maximum=None, inclusive_min=True, inclusive_max=True):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"`{name}` must be a number; received {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite; received {value}.")
    if minimum is not None and (value < minimum or (not inclusive_min and value == minimum)):
        op = ">=" if inclusive_min else ">"
        raise ValueError(f"`{name}` must be {op} {minimum}; received {value}.")
    if maximum is not None and (value > maximum or (not inclusive_max and value == maximum)):
        op = "<=" if inclusive_max else "<"
        raise ValueError(f"`{name}` must be {op} {maximum}; received {value}.")

"""Gumbel-softmax quantization (DALL-E's dVAE) and its temperature schedule.

Instead of a nearest-code search, the encoder output is mapped to logits over
the codes; training mixes the codebook with a relaxed one-hot sample
(Gumbel-softmax, Jang et al. 2017; Maddison et al. 2017) and inference takes
the most likely code. The temperature anneals towards a floor during
training (`GumbelTemperatureSchedule`), making the samples ever closer to
one-hot.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from vqvae_tf.quantizers.base import (
    QuantizerLayer,
    add_dense_weights,
    check_indices,
    check_input_shape,
    dense,
    histogram_statistics,
)
from vqvae_tf.utils import distributed_ops
from vqvae_tf.utils.checks import check_int, check_number

# Salt of the stateless RNG of the relaxed samples (see ResidualVectorQuantizer).
_SAMPLE_SALT = 0x6B


@keras.saving.register_keras_serializable(package="vqvae_tf")
class GumbelQuantizer(QuantizerLayer):
    """Gumbel-softmax quantizer over a learned codebook (DALL-E dVAE style).

    A 1x1 projection turns each encoder output `z` (size `code_dim`) into
    logits `l = z W + b` over the `num_codes` codes; the codebook `E`
    (`num_codes x code_dim`) is learned by gradient descent.

    * Training: `y ~ RelaxedOneHotCategorical(T, l)` (a Gumbel-softmax
      sample, `tfp.distributions`); the output is `y E`, or with
      `hard=True` the straight-through `(onehot(argmax y) + y - sg(y)) E`.
      The noise comes from a stateless RNG keyed on `(seed, step)` and on
      each vector's row in the *global* batch, so training under
      `tf.distribute` matches one device at the same global batch.
    * Inference (`training` not True), `codes` and `lookup`:
      `E[argmax l]`, the hard code (int32 ARG_MAX and GATHER in TFLite).

    The loss is `kl_weight * KL(softmax(l) || uniform)`, the mean over
    vectors of `sum_k p_k log p_k + log K`, which keeps the code
    distribution spread out (DALL-E's KL term with a uniform prior).

    The temperature `T` is a non-trainable variable initialised to
    `temperature`; `GumbelTemperatureSchedule` anneals it during `fit`
    without retracing the training step.

    Args:
        num_codes: int, number of codes K.
        code_dim: int, size D of the inputs and of the code vectors.
        temperature: float > 0, initial Gumbel-softmax temperature. Defaults
            to 1.0.
        kl_weight: float >= 0, weight of the KL-to-uniform term. Defaults to
            5e-4 (taming-transformers' GumbelQuantize).
        hard: bool, whether training outputs the straight-through one-hot
            code instead of the soft mixture. Defaults to False.
        l2_normalize: must be False; accepted so that quantizer configs
            written for the vector quantizers fail with a clear message.
        seed: int or None, seed of the initialisers and of the noise.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: float `(..., code_dim)`, e.g. `(batch, H, W, code_dim)`.
        training: bool, whether to sample (and count a step) or take argmax.

    Returns:
        The quantizer dict of `VectorQuantizer` (`"quantized"` same shape and
        dtype as the inputs, `"indices"` int32 `inputs.shape[:-1]` (argmax
        of the sample in training, of the logits otherwise), `"counts"`
        `(num_codes,)`, `"perplexity"`, `"usage"`, `"loss"`), with
        `"codebook_loss"` and `"commitment_loss"` zero, plus `"kl"`: the
        unweighted KL to uniform (float32 scalar).

    Input shape: `(batch, 8, 8, 64)` -> `"quantized"` `(batch, 8, 8, 64)`,
    `"indices"` `(batch, 8, 8)`.

    Example:

    >>> gq = GumbelQuantizer(num_codes=512, code_dim=64, hard=True)
    >>> z = tf.random.normal((2, 8, 8, 64))
    >>> train_out = gq(z, training=True)            # relaxed sample
    >>> codes = gq.codes(z)                          # argmax, (2, 8, 8) int32
    >>> bool(tf.reduce_all(gq.lookup(codes) == gq(z)["quantized"]))
    True

    References:
        Ramesh et al. Zero-Shot Text-to-Image Generation (DALL-E).
        arXiv:2102.12092.
        Jang, Gu, Poole. Categorical Reparameterization with Gumbel-Softmax.
        arXiv:1611.01144.
    """

    extra_output_keys = ("kl",)

    def __init__(
        self,
        num_codes,
        code_dim,
        temperature=1.0,
        kl_weight=5e-4,
        hard=False,
        l2_normalize=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_codes = check_int("num_codes", num_codes, minimum=2)
        self.code_dim = check_int("code_dim", code_dim, minimum=1)
        self.initial_temperature = check_number("temperature", temperature, minimum=0, inclusive_min=False)
        self.kl_weight = check_number("kl_weight", kl_weight, minimum=0)
        if l2_normalize:
            raise ValueError(
                "GumbelQuantizer does not support `l2_normalize=True`: it picks codes from learned logits, "
                "not by distance; received True."
            )
        if seed is not None:
            check_int("seed", seed, minimum=0)
        self.hard = bool(hard)
        self.l2_normalize = False
        self.seed = seed

    def build(self, input_shape):
        check_input_shape(self, input_shape, self.code_dim)
        self.kernel, self.bias = add_dense_weights(self, "logits", self.code_dim, self.num_codes, self.seed)
        limit = math.sqrt(3.0 / self.code_dim)
        self.codebook = self.add_weight(
            name="codebook",
            shape=(self.num_codes, self.code_dim),
            initializer=keras.initializers.RandomUniform(-limit, limit, seed=self.seed),
            dtype="float32",
            autocast=False,
        )
        state = dict(trainable=False, autocast=False, aggregation="only_first_replica")
        self.temperature = self.add_weight(
            name="temperature",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_temperature),
            dtype="float32",
            **state,
        )
        self.steps = self.add_weight(name="steps", shape=(), initializer="zeros", dtype="int64", **state)

    def logits(self, inputs):
        """Float32 logits over the codes, `inputs.shape[:-1] + (num_codes,)`."""
        inputs, _, flat = self._flatten(inputs)
        flat = dense(flat, self.kernel, self.bias)
        return tf.reshape(flat, tf.concat([tf.shape(inputs)[:-1], [self.num_codes]], axis=0))

    def _relaxed_sample(self, logits):
        """A Gumbel-softmax sample of `(N, K)` logits, keyed on global rows."""
        import tensorflow_probability as tfp  # imports tf_keras: only when training

        rows = tf.shape(logits)[0]
        offset, global_rows = distributed_ops.global_row_offset(rows)
        # Each replica samples the whole global batch (its own rows in place,
        # zeros elsewhere) with the same seed and keeps its rows: the noise a
        # vector gets depends on its global row, not on the replica count.
        padded = tf.pad(logits, [[offset, global_rows - offset - rows], [0, 0]])
        seed = tf.stack([tf.constant(self.seed or 0, tf.int64), tf.convert_to_tensor(self.steps)])
        seed = tf.random.experimental.stateless_fold_in(seed, _SAMPLE_SALT)
        distribution = tfp.distributions.RelaxedOneHotCategorical(tf.convert_to_tensor(self.temperature), logits=padded)
        return distribution.sample(seed=seed)[offset : offset + rows]

    def call(self, inputs, training=None):
        inputs, in_dtype, flat = self._flatten(inputs)
        logits = dense(flat, self.kernel, self.bias)
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        kl = tf.reduce_mean(tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=-1)) + math.log(self.num_codes)
        if training:
            soft = self._relaxed_sample(logits)
            indices = tf.argmax(soft, axis=-1, output_type=tf.int32)
            weights = soft
            if self.hard:
                weights = tf.one_hot(indices, self.num_codes) + soft - tf.stop_gradient(soft)
            quantized = tf.matmul(weights, self.codebook)
            self.steps.assign_add(1)
        else:
            indices = tf.argmax(logits, axis=-1, output_type=tf.int32)
            quantized = tf.gather(self.codebook, indices)
        local_counts, _, perplexity, usage = histogram_statistics(indices, self.num_codes)
        loss = self.kl_weight * kl
        self.add_loss(loss)
        return self._output_dict(
            inputs,
            in_dtype,
            quantized=quantized,
            indices=indices,
            perplexity=perplexity,
            usage=usage,
            counts=local_counts,
            loss=loss,
            kl=kl,
        )

    def codes(self, inputs):
        """int32 argmax codes, shape `inputs.shape[:-1]`."""
        return tf.argmax(self.logits(inputs), axis=-1, output_type=tf.int32)

    def lookup(self, indices):
        """Code vectors (float32) for int indices: `indices.shape + (code_dim,)`."""
        indices = check_indices(self, indices, self.num_codes)
        if not self.built:
            self.build((None, self.code_dim))
        return tf.gather(tf.convert_to_tensor(self.codebook), indices)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_codes=self.num_codes,
            code_dim=self.code_dim,
            temperature=self.initial_temperature,
            kl_weight=self.kl_weight,
            hard=self.hard,
            l2_normalize=self.l2_normalize,
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="vqvae_tf")
class GumbelTemperatureSchedule(keras.callbacks.Callback):
    """Anneals the temperature of `GumbelQuantizer` layers during `fit`.

    Before each training batch, with `t` the optimizer's iteration count
    (so resumed training continues the schedule):

        T(t) = max(min_temperature, initial_temperature * exp(-decay_rate * t))

    DALL-E annealed from 1 to 1/16 over its first 150,000 updates. The value
    is assigned to the layers' temperature variables, so the compiled
    training step reads it without retracing.

    Args:
        initial_temperature: float > 0. Defaults to 1.0.
        min_temperature: float > 0, the floor. Defaults to 1/16.
        decay_rate: float >= 0, per-step exponential rate. Defaults to 1e-4.
        layers: list of `GumbelQuantizer` or None (default) to anneal every
            `GumbelQuantizer` found in the model.

    Example:

    >>> model = VQVAE(quantizer="gumbel", num_codes=64, code_dim=16, ...)
    >>> model.fit(data, callbacks=[GumbelTemperatureSchedule(decay_rate=1e-3)])

    References:
        Ramesh et al. 2021 (DALL-E), arXiv:2102.12092, appendix A.2.
    """

    def __init__(self, initial_temperature=1.0, min_temperature=1.0 / 16, decay_rate=1e-4, layers=None):
        super().__init__()
        self.initial_temperature = check_number(
            "initial_temperature", initial_temperature, minimum=0, inclusive_min=False
        )
        self.min_temperature = check_number("min_temperature", min_temperature, minimum=0, inclusive_min=False)
        self.decay_rate = check_number("decay_rate", decay_rate, minimum=0)
        if layers is not None and not all(isinstance(layer, GumbelQuantizer) for layer in layers):
            raise ValueError(f"`layers` must be a list of GumbelQuantizer layers or None; received {layers!r}.")
        self._layers = list(layers) if layers is not None else None

    def temperature_at(self, step):
        """The scheduled temperature at optimizer step `step` (a Python float)."""
        value = self.initial_temperature * math.exp(-self.decay_rate * float(step))
        return max(self.min_temperature, value)

    def _targets(self):
        if self._layers is not None:
            return self._layers
        found, stack, seen = [], [self.model], set()
        while stack:
            layer = stack.pop()
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if isinstance(layer, GumbelQuantizer):
                found.append(layer)
            stack.extend(getattr(layer, "layers", None) or [])
        if not found:
            raise ValueError(
                f"GumbelTemperatureSchedule found no GumbelQuantizer in model {self.model.name!r}; "
                "pass layers=[...] explicitly."
            )
        return found

    def on_train_begin(self, logs=None):
        self._active = self._targets()

    def on_train_batch_begin(self, batch, logs=None):
        step = int(np.asarray(self.model.optimizer.iterations))
        value = self.temperature_at(step)
        for layer in self._active:
            if layer.built:
                layer.temperature.assign(value)

    def get_config(self):
        return dict(
            initial_temperature=self.initial_temperature,
            min_temperature=self.min_temperature,
            decay_rate=self.decay_rate,
        )

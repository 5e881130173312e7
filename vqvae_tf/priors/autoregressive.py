"""Shared parts of the autoregressive priors over discrete code maps.

A prior models a VQ-VAE code map `z` of shape `(H, W)` with values in
`[0, K)` as `p(z) = prod_i p(z_i | z_<i)` in raster order (row by row, left to
right). This module holds what the priors have in common:

- `AutoregressivePrior`: the Keras model base class (input checks, `fit` on a
  dataset of code maps, loss and metrics, seeded ancestral sampling).
- `UnigramPrior`: a per-position unigram baseline with the same NLL interface.
- `nll_per_code`, `bits_per_dim`, `vqvae_bits_per_dim`: likelihood helpers.
- `sample_from_logits`: temperature / top-k sampling with a stateless seed.

The concrete priors live in `vqvae_tf.priors.pixelcnn` (`GatedPixelCNN`) and
`vqvae_tf.priors.transformer` (`TransformerPrior`).
"""

import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

LN2 = math.log(2.0)


# ----------------------------------------------------------------------------
# Input checks


def _is_symbolic(x):
    """True for tensors whose values are unknown now (graph or Keras tensors)."""
    if isinstance(x, keras.KerasTensor):
        return True
    return tf.is_tensor(x) and not tf.executing_eagerly()


def validate_codes(codes, num_codes, map_shape=None, name="codes"):
    """Checks a batch of code maps and returns it as an int32 tensor.

    Args:
        codes: integer tensor or array of shape `(batch, H, W)`.
        num_codes: int, K; every code must be in `[0, K)`.
        map_shape: optional `(H, W)` the model was built for.
        name: str, the argument name used in error messages.

    Returns:
        An int32 `tf.Tensor` of shape `(batch, H, W)`.

    Raises:
        ValueError: wrong dtype, rank or map size, or codes out of range
            (the range is checked only when the values are known, i.e. eagerly).
    """
    if isinstance(codes, keras.KerasTensor):
        dtype, shape = tf.as_dtype(codes.dtype), tuple(codes.shape)
    else:
        if not tf.is_tensor(codes):
            codes = np.asarray(codes)
            if codes.dtype == object:
                raise ValueError(
                    f"`{name}` must be a numeric array; received dtype object."
                )
        dtype, shape = tf.as_dtype(codes.dtype), tuple(codes.shape)
    if not (dtype.is_integer and not dtype.is_quantized):
        raise ValueError(
            f"`{name}` must be an integer tensor of code indices; received "
            f"dtype {dtype.name}. Expected int32 or int64 (cast codes with "
            "tf.cast(codes, tf.int32))."
        )
    if len(shape) != 3:
        raise ValueError(
            f"`{name}` must have rank 3, (batch, H, W); received shape {shape} "
            f"(rank {len(shape)})."
        )
    if map_shape is not None:
        got = shape[1:]
        if any(g is not None and g != e for g, e in zip(got, map_shape)):
            raise ValueError(
                f"`{name}` maps must be of size {tuple(map_shape)} (H, W) for "
                f"this model; received shape {shape}."
            )
    if isinstance(codes, keras.KerasTensor):
        return codes
    codes = tf.cast(codes, tf.int32)
    if not _is_symbolic(codes) and tf.size(codes) > 0:
        low = int(tf.reduce_min(codes))
        high = int(tf.reduce_max(codes))
        if low < 0 or high >= num_codes:
            raise ValueError(
                f"`{name}` values must be in [0, {num_codes}) (num_codes="
                f"{num_codes}); received values in [{low}, {high}]."
            )
    return codes


def validate_labels(labels, num_classes, batch_size=None, name="labels"):
    """Checks class labels against a model's `num_classes`.

    Args:
        labels: None, or integer tensor/array of shape `(batch,)`.
        num_classes: int; 0 means the model is unconditional.
        batch_size: optional int the labels' length must match.
        name: str, the argument name used in error messages.

    Returns:
        None for an unconditional model, else an int32 tensor `(batch,)`.

    Raises:
        ValueError: labels given to an unconditional model, missing for a
            conditional one, or of the wrong dtype, shape or range.
    """
    if num_classes == 0:
        if labels is not None:
            raise ValueError(
                f"This prior is unconditional (num_classes=0) but received "
                f"`{name}`; expected labels=None."
            )
        return None
    if labels is None:
        raise ValueError(
            f"This prior is class-conditional (num_classes={num_classes}); "
            f"expected `{name}` of shape (batch,) with values in "
            f"[0, {num_classes}), received None."
        )
    if isinstance(labels, keras.KerasTensor):
        return labels
    if not tf.is_tensor(labels):
        labels = np.asarray(labels)
    dtype = tf.as_dtype(labels.dtype)
    if not dtype.is_integer:
        raise ValueError(
            f"`{name}` must be integer class ids; received dtype {dtype.name}."
        )
    if len(labels.shape) != 1:
        raise ValueError(
            f"`{name}` must have shape (batch,); received shape "
            f"{tuple(labels.shape)}."
        )
    if (
        batch_size is not None
        and labels.shape[0] is not None
        and labels.shape[0] != batch_size
    ):
        raise ValueError(
            f"`{name}` must have one label per code map ({batch_size}); "
            f"received {labels.shape[0]}."
        )
    labels = tf.cast(labels, tf.int32)
    if not _is_symbolic(labels) and tf.size(labels) > 0:
        low, high = int(tf.reduce_min(labels)), int(tf.reduce_max(labels))
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"`{name}` values must be in [0, {num_classes}); received "
                f"values in [{low}, {high}]."
            )
    return labels


def _validate_sampling_args(num_samples, temperature, top_k, num_codes):
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(
            f"`num_samples` must be a positive int; received {num_samples!r}."
        )
    if not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(
            f"`temperature` must be a float >= 0 (0 = greedy); received "
            f"{temperature!r}."
        )
    if top_k is not None and (
        not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= num_codes
    ):
        raise ValueError(
            f"`top_k` must be None or an int in [1, {num_codes}]; received "
            f"{top_k!r}."
        )


def _seed_tensor(seed):
    """An int or an (a, b) pair -> the shape-[2] seed of stateless RNG ops."""
    if isinstance(seed, (int, np.integer)):
        seed = (int(seed), 0)
    seed = np.asarray(seed)
    if seed.shape != (2,) or not np.issubdtype(seed.dtype, np.integer):
        raise ValueError(
            f"`seed` must be an int or a pair of ints; received {seed!r}."
        )
    return tf.constant(seed, tf.int64)


# ----------------------------------------------------------------------------
# Sampling and likelihood helpers


def sample_from_logits(logits, seed, temperature=1.0, top_k=None):
    """Draws one code per row of `logits` with temperature and top-k.

    Uses the Gumbel-max trick with stateless uniform noise, so the draw is a
    pure function of `(logits, seed)`: the same seed gives the same codes,
    in or out of a `tf.function`. `temperature=0` is the argmax (greedy).

    Args:
        logits: float tensor `(n, K)`.
        seed: int64 tensor of shape `(2,)` (stateless RNG seed).
        temperature: Python float >= 0. Defaults to 1.0.
        top_k: Python int or None; keep only the `top_k` largest logits.
            Defaults to None (all codes).

    Returns:
        int32 tensor `(n,)` with values in `[0, K)`.
    """
    logits = tf.cast(logits, tf.float32)
    if top_k is not None:
        # Keep exactly k codes (ties go to the lower index, as in argmax), so
        # top_k=1 is the greedy choice even when logits tie.
        top = tf.math.top_k(logits, k=top_k).indices
        keep = tf.reduce_max(tf.one_hot(top, tf.shape(logits)[-1]), axis=1) > 0
        logits = tf.where(keep, logits, tf.constant(-np.inf, logits.dtype))
    if temperature == 0:
        return tf.argmax(logits, axis=-1, output_type=tf.int32)
    uniform = tf.random.stateless_uniform(
        tf.shape(logits), seed=seed, minval=np.finfo(np.float32).tiny, maxval=1.0
    )
    gumbel = -tf.math.log(-tf.math.log(uniform))
    return tf.argmax(logits / temperature + gumbel, axis=-1, output_type=tf.int32)


def code_log_prob(logits, codes):
    """Log-probability in nats of each code: `(B, H, W, K), (B, H, W) -> (B, H, W)`."""
    return tfp.distributions.Categorical(logits=tf.cast(logits, tf.float32)).log_prob(
        codes
    )


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
    if num_dims <= 0:
        raise ValueError(f"`num_dims` must be > 0; received {num_dims}.")
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


def _bits_per_code(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(
        y_true, y_pred, from_logits=True
    ) / LN2


def _nats_per_code(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(
        y_true, y_pred, from_logits=True
    )


@keras.saving.register_keras_serializable(package="vqvae_tf")
class NLLPerCode(keras.metrics.MeanMetricWrapper):
    """Mean negative log-likelihood in nats per code, from logits.

    Args:
        name: str, defaults to `"nll"`.
        dtype: metric dtype, defaults to None (float32).
    """

    def __init__(self, name="nll", dtype=None):
        super().__init__(fn=_nats_per_code, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="vqvae_tf")
class BitsPerCode(keras.metrics.MeanMetricWrapper):
    """Mean negative log-likelihood in bits per code, from logits.

    Args:
        name: str, defaults to `"bits_per_code"`.
        dtype: metric dtype, defaults to None (float32).
    """

    def __init__(self, name="bits_per_code", dtype=None):
        super().__init__(fn=_bits_per_code, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


# ----------------------------------------------------------------------------
# The model base class


class AutoregressivePrior(keras.Model):
    """Base class of the autoregressive priors over `(H, W)` code maps.

    Subclasses implement `embed(codes)` (codes -> per-position input
    embeddings) and `logits_from_embeddings(embeddings, labels, training)`,
    a causal map: the logits at raster position `i` depend only on the
    embeddings at positions `< i`. Splitting the two lets tests check
    causality by differentiating through the embeddings. Subclasses also
    implement `_sample_graph` (the per-position decoding loop).

    Training: `compile(optimizer)` defaults the loss to sparse categorical
    cross-entropy from logits (through `compute_loss`, so it scales correctly
    under `tf.distribute`) and the metrics to `nll` (nats per code) and
    `bits_per_code`. `fit` takes a dataset (or arrays) yielding code maps
    `(batch, H, W)` for an unconditional prior, `(codes, labels)` for a
    conditional one.

    Args:
        num_codes: int >= 2, K, the codebook size.
        num_classes: int >= 0; 0 = unconditional. Defaults to 0.
        map_shape: optional `(H, W)`; required by priors with fixed position
            embeddings, and the default map size for `sample`.
        **kwargs: base `keras.Model` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: int tensor `(batch, H, W)`, or a tuple `(codes, labels)`.
        labels: optional int tensor `(batch,)` (alternative to the tuple).
        training: bool, training mode for dropout.

    Returns logits `(batch, H, W, K)`.
    """

    def __init__(self, num_codes, num_classes=0, map_shape=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_codes, (int, np.integer)) or num_codes < 2:
            raise ValueError(f"`num_codes` must be an int >= 2; received {num_codes!r}.")
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 0:
            raise ValueError(
                f"`num_classes` must be an int >= 0 (0 = unconditional); "
                f"received {num_classes!r}."
            )
        if map_shape is not None:
            if len(tuple(map_shape)) != 2 or any(
                not isinstance(s, (int, np.integer)) or s < 1 for s in map_shape
            ):
                raise ValueError(
                    f"`map_shape` must be None or (H, W) with positive ints; "
                    f"received {map_shape!r}."
                )
            map_shape = tuple(int(s) for s in map_shape)
        self.num_codes = int(num_codes)
        self.num_classes = int(num_classes)
        self.map_shape = map_shape

    # -- to implement --------------------------------------------------------

    def embed(self, codes):
        """Codes `(B, H, W)` -> input embeddings `(B, H, W, D)`."""
        raise NotImplementedError

    def logits_from_embeddings(self, embeddings, labels=None, training=None):
        """Embeddings `(B, H, W, D)` -> logits `(B, H, W, K)`, causally."""
        raise NotImplementedError

    def _sample_graph(self, num_samples, height, width, labels, seed, temperature, top_k):
        raise NotImplementedError

    # -- Keras plumbing -------------------------------------------------------

    def _split_inputs(self, inputs, labels):
        if isinstance(inputs, dict):
            inputs, labels = inputs.get("codes"), inputs.get("labels", labels)
        elif isinstance(inputs, (tuple, list)):
            if len(inputs) == 1:
                inputs = inputs[0]
            elif len(inputs) == 2:
                inputs, labels = inputs
            else:
                raise ValueError(
                    "Expected `codes` or a `(codes, labels)` pair; received a "
                    f"sequence of {len(inputs)} elements."
                )
        return inputs, labels

    def call(self, inputs, labels=None, training=None):
        codes, labels = self._split_inputs(inputs, labels)
        codes = validate_codes(codes, self.num_codes, self.map_shape)
        labels = validate_labels(labels, self.num_classes)
        return self.logits_from_embeddings(self.embed(codes), labels, training=training)

    def _keras_data(self, data):
        """Dataset element -> Keras `(x, y)`: the codes are their own targets."""
        if isinstance(data, (tuple, list)):
            if len(data) == 1:
                data = data[0]
            elif len(data) == 2:
                codes, labels = data
                return (codes, labels), codes
            else:
                raise ValueError(
                    "A prior's dataset must yield `codes` or `(codes, labels)`; "
                    f"received elements of {len(data)} parts."
                )
        return data, data

    def _symbolic_build(self, iterator=None, data_batch=None):
        # Under a tf.distribute strategy Keras builds the loss and metrics from
        # one batch before training: MEAN-reduced across replicas (so the int
        # codes arrive as floats) and unpacked as Keras (x, y) without our
        # `train_step` mapping. Give it the batch as `train_step` sees it.
        if data_batch is not None:
            data_batch = tf.nest.map_structure(
                lambda t: None if t is None else tf.cast(t, tf.int32), data_batch
            )
            data_batch = self._keras_data(data_batch)
        return super()._symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data):
        return super().train_step(self._keras_data(data))

    def test_step(self, data):
        return super().test_step(self._keras_data(data))

    def predict_step(self, data):
        x, _ = self._keras_data(data)
        return self(x, training=False)

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """`keras.Model.compile` with the prior's loss and metrics as defaults."""
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics is None:
            metrics = [NLLPerCode(), BitsPerCode()]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compiling on load when `compile` is overridden; ours only
        # fills defaults, so the saved (explicit) arguments restore it exactly.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_codes": self.num_codes,
                "num_classes": self.num_classes,
                "map_shape": self.map_shape,
            }
        )
        return config

    def _ensure_built(self, height, width):
        if not self.built:
            codes = tf.zeros((1, height, width), tf.int32)
            labels = tf.zeros((1,), tf.int32) if self.num_classes else None
            self(codes, labels)

    # -- public inference API -------------------------------------------------

    def logits(self, codes, labels=None):
        """Validated eager forward pass: codes `(B, H, W)` -> logits `(B, H, W, K)`."""
        codes = validate_codes(codes, self.num_codes, self.map_shape)
        labels = validate_labels(labels, self.num_classes, codes.shape[0])
        return tf.cast(self(codes, labels, training=False), tf.float32)

    def log_prob(self, codes, labels=None):
        """Log-likelihood in nats of each code map: `(B, H, W) -> (B,)`."""
        codes = validate_codes(codes, self.num_codes, self.map_shape)
        return tf.reduce_sum(code_log_prob(self.logits(codes, labels), codes), axis=[1, 2])

    def sample(
        self,
        num_samples,
        labels=None,
        temperature=1.0,
        top_k=None,
        seed=0,
        map_shape=None,
    ):
        """Ancestral sampling of code maps in raster order.

        Args:
            num_samples: int, number of maps n.
            labels: class ids `(n,)` for a conditional prior, else None.
            temperature: float >= 0, logits are divided by it; 0 = greedy
                (argmax, deterministic). Defaults to 1.0.
            top_k: int or None, sample only among the k most likely codes.
                Defaults to None.
            seed: int or pair of ints; the result is a pure function of the
                seed (stateless RNG). Defaults to 0.
            map_shape: `(H, W)`, defaults to the model's `map_shape`.

        Returns:
            int32 tensor `(n, H, W)` with values in `[0, K)`.
        """
        return self._sample(num_samples, labels, temperature, top_k, seed, map_shape)

    def _sample(self, num_samples, labels, temperature, top_k, seed, map_shape, **options):
        """Validates the sampling arguments and runs `_sample_graph`."""
        _validate_sampling_args(num_samples, temperature, top_k, self.num_codes)
        if map_shape is None:
            map_shape = self.map_shape
        if map_shape is None:
            raise ValueError(
                "`map_shape` is required: this model was created with "
                "map_shape=None; pass map_shape=(H, W) to sample()."
            )
        map_shape = tuple(int(s) for s in map_shape)
        if self.map_shape is not None and map_shape != self.map_shape:
            raise ValueError(
                f"This model samples maps of size {self.map_shape}; received "
                f"map_shape={map_shape}."
            )
        labels = validate_labels(labels, self.num_classes, num_samples)
        self._ensure_built(*map_shape)
        return self._sample_graph(
            int(num_samples),
            map_shape[0],
            map_shape[1],
            labels,
            _seed_tensor(seed),
            float(temperature),
            None if top_k is None else int(top_k),
            **options,
        )


# ----------------------------------------------------------------------------
# Baseline


class UnigramPrior:
    """Per-position unigram model: `p(z_hw = k) = (n_hwk + a) / (N + K a)`.

    Counts each code at each map position over the training maps, with
    Laplace (add-`alpha`) smoothing; it ignores context, so it is the baseline
    an autoregressive prior must beat. Same NLL interface as the priors:
    `nll_per_code(unigram, codes)`.

    Args:
        num_codes: int >= 2, K.
        map_shape: `(H, W)`.
        alpha: float > 0, the smoothing pseudo-count. Defaults to 1.0.

    Example:

    ```python
    unigram = UnigramPrior(16, (8, 8)).fit(train_codes)
    nll_per_code(unigram, test_codes)  # nats per code
    ```
    """

    num_classes = 0

    def __init__(self, num_codes, map_shape, alpha=1.0):
        if not isinstance(num_codes, (int, np.integer)) or num_codes < 2:
            raise ValueError(f"`num_codes` must be an int >= 2; received {num_codes!r}.")
        if alpha <= 0:
            raise ValueError(f"`alpha` must be > 0; received {alpha!r}.")
        self.num_codes = int(num_codes)
        self.map_shape = tuple(int(s) for s in map_shape)
        self.alpha = float(alpha)
        self.counts = np.zeros(self.map_shape + (self.num_codes,), np.float64)

    def fit(self, codes):
        """Adds code maps to the counts.

        Args:
            codes: array `(N, H, W)`, or an iterable (e.g. `tf.data.Dataset`)
                of such batches or of `(codes, labels)` pairs.

        Returns:
            self.
        """
        batches = (
            [codes]
            if isinstance(codes, np.ndarray) or tf.is_tensor(codes)
            else codes
        )
        for batch in batches:
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            batch = validate_codes(batch, self.num_codes, self.map_shape).numpy()
            one_hot = np.eye(self.num_codes, dtype=np.float64)[batch]
            self.counts += one_hot.sum(axis=0)
        return self

    def logits(self, codes, labels=None):
        """Log-probabilities `(B, H, W, K)` for codes `(B, H, W)`."""
        codes = validate_codes(codes, self.num_codes, self.map_shape)
        validate_labels(labels, 0)
        smoothed = self.counts + self.alpha
        log_p = np.log(smoothed / smoothed.sum(axis=-1, keepdims=True))
        return tf.broadcast_to(
            tf.constant(log_p, tf.float32),
            (codes.shape[0],) + self.map_shape + (self.num_codes,),
        )

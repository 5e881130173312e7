"""`AutoregressivePrior`: the Keras model base class of the priors over code maps.

A prior models a VQ-VAE code map `z` of shape `(H, W)` with values in
`[0, K)` as `p(z) = prod_i p(z_i | z_<i)` in raster order (row by row, left to
right). The base class holds what the priors have in common: input checks,
`fit` on a dataset of code maps, the loss and metrics, and seeded ancestral
sampling. The concrete priors live in `vqvae_tf.priors.pixelcnn`
(`GatedPixelCNN`) and `vqvae_tf.priors.transformer` (`TransformerPrior`).
"""

import keras
import tensorflow as tf

from vqvae_tf.priors.likelihood import BitsPerCode, NLLPerCode, code_log_prob
from vqvae_tf.priors.sampling import check_sampling_args, seed_tensor
from vqvae_tf.priors.validation import validate_codes, validate_labels
from vqvae_tf.utils.checks import check_int, is_int


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
        num_codes = check_int("num_codes", num_codes, minimum=2)
        num_classes = check_int("num_classes", num_classes, minimum=0)
        if map_shape is not None:
            if len(tuple(map_shape)) != 2 or any(not is_int(s) or s < 1 for s in map_shape):
                raise ValueError(f"`map_shape` must be None or (H, W) with positive ints; received {map_shape!r}.")
            map_shape = tuple(int(s) for s in map_shape)
        self.num_codes = num_codes
        self.num_classes = num_classes
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
                    f"Expected `codes` or a `(codes, labels)` pair; received a sequence of {len(inputs)} elements."
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
            data_batch = tf.nest.map_structure(lambda t: None if t is None else tf.cast(t, tf.int32), data_batch)
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
        check_sampling_args(num_samples, temperature, top_k, self.num_codes)
        if map_shape is None:
            map_shape = self.map_shape
        if map_shape is None:
            raise ValueError(
                "`map_shape` is required: this model was created with "
                "map_shape=None; pass map_shape=(H, W) to sample()."
            )
        map_shape = tuple(int(s) for s in map_shape)
        if self.map_shape is not None and map_shape != self.map_shape:
            raise ValueError(f"This model samples maps of size {self.map_shape}; received map_shape={map_shape}.")
        labels = validate_labels(labels, self.num_classes, num_samples)
        self._ensure_built(*map_shape)
        return self._sample_graph(
            int(num_samples),
            map_shape[0],
            map_shape[1],
            labels,
            seed_tensor(seed),
            float(temperature),
            None if top_k is None else int(top_k),
            **options,
        )

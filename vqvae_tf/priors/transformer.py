"""Decoder-only Transformer prior over flattened code maps, with a KV cache."""

import math

import keras
import tensorflow as tf
from keras import ops

from vqvae_tf.priors.autoregressive import AutoregressivePrior
from vqvae_tf.priors.sampling import sample_at
from vqvae_tf.utils.checks import check_int, check_number

# Masked attention scores; finite so fully masked rows never produce NaN.
_MASK_VALUE = -1e9


@keras.saving.register_keras_serializable(package="vqvae_tf")
class CausalTransformerBlock(keras.layers.Layer):
    """Pre-LayerNorm Transformer block with causal self-attention.

    `x + attn(ln(x))`, then `x + mlp(ln(x))`. Own attention (not
    `keras.layers.MultiHeadAttention`) so the same weights serve the full
    causal pass (`call`) and one-token incremental decoding with a key/value
    cache (`step`).

    Args:
        embed_dim: int, D, divisible by `num_heads`.
        num_heads: int. Defaults to 4.
        mlp_ratio: int, hidden MLP width is `mlp_ratio * D`. Defaults to 4.
        dropout: float in [0, 1), residual dropout. Defaults to 0.0.
        **kwargs: base layer arguments.

    Call arguments:
        x: `(B, S, D)`. training: bool.

    Returns `(B, S, D)`, e.g. `(2, 64, 128)` in and out; the output at
    position s depends only on inputs at positions `<= s`.
    """

    def __init__(self, embed_dim, num_heads=4, mlp_ratio=4, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if embed_dim % num_heads:
            raise ValueError(f"`embed_dim` ({embed_dim}) must be divisible by `num_heads` ({num_heads}).")
        self.embed_dim = int(embed_dim)
        self.num_heads = int(num_heads)
        self.mlp_ratio = int(mlp_ratio)
        self.dropout = check_number("dropout", dropout, minimum=0, maximum=1, inclusive_max=False)
        self.head_dim = embed_dim // num_heads
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="attention_norm")
        self.qkv = keras.layers.Dense(3 * embed_dim, name="qkv")
        self.attention_out = keras.layers.Dense(embed_dim, name="attention_out")
        self.mlp_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="mlp_norm")
        self.mlp_hidden = keras.layers.Dense(mlp_ratio * embed_dim, activation="gelu", name="mlp_hidden")
        self.mlp_out = keras.layers.Dense(embed_dim, name="mlp_out")
        self.residual_dropout = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        shape = (None, None, self.embed_dim)
        self.attention_norm.build(shape)
        self.qkv.build(shape)
        self.attention_out.build(shape)
        self.mlp_norm.build(shape)
        self.mlp_hidden.build(shape)
        self.mlp_out.build((None, None, self.mlp_ratio * self.embed_dim))
        self.built = True

    def _heads(self, x):
        """`(B, S, 3D)` -> q, k, v, each `(B, heads, S, head_dim)`."""
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, length, 3, self.num_heads, self.head_dim))
        x = ops.transpose(x, (2, 0, 3, 1, 4))
        return x[0], x[1], x[2]

    def _attend(self, q, k, v, mask):
        scores = ops.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(self.head_dim)
        scores = ops.where(mask, scores, ops.cast(_MASK_VALUE, scores.dtype))
        mixed = ops.einsum("bhqk,bhkd->bhqd", ops.softmax(scores, axis=-1), v)
        batch, length = ops.shape(mixed)[0], ops.shape(mixed)[2]
        mixed = ops.reshape(ops.transpose(mixed, (0, 2, 1, 3)), (batch, length, self.embed_dim))
        return self.attention_out(mixed)

    def _mlp(self, x, training):
        return x + self.residual_dropout(self.mlp_out(self.mlp_hidden(self.mlp_norm(x))), training=training)

    def call(self, x, training=None):
        q, k, v = self._heads(self.qkv(self.attention_norm(x)))
        length = ops.shape(x)[1]
        positions = ops.arange(length)
        mask = positions[:, None] >= positions[None, :]
        x = x + self.residual_dropout(self._attend(q, k, v, mask), training=training)
        return self._mlp(x, training)

    def step(self, x, key_cache, value_cache, position):
        """Decodes one token with cached keys/values of earlier positions.

        Args:
            x: `(B, 1, D)`, the input at `position`.
            key_cache, value_cache: `(B, heads, T, head_dim)`, filled at
                positions `< position` (the rest is ignored).
            position: int scalar tensor.

        Returns:
            `(output (B, 1, D), key_cache, value_cache)` with the caches
            filled at `position` too.
        """
        q, k, v = self._heads(self.qkv(self.attention_norm(x)))
        total = ops.shape(key_cache)[2]
        # Slot `position` of the caches is still zero: adding the one-hot
        # scaled new entry writes it exactly and leaves the others untouched.
        slot = ops.cast(ops.arange(total) == position, key_cache.dtype)[None, None, :, None]
        key_cache = key_cache + slot * k
        value_cache = value_cache + slot * v
        mask = (ops.arange(total) <= position)[None, :]
        x = x + self._attend(q, key_cache, value_cache, mask)
        return self._mlp(x, False), key_cache, value_cache

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "embed_dim": self.embed_dim,
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "dropout": self.dropout,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="vqvae_tf")
class TransformerPrior(AutoregressivePrior):
    """Decoder-only Transformer prior over raster-flattened code maps.

    The map `(H, W)` is read as T = H * W tokens. The input sequence is
    `[start, e(z_0), ..., e(z_{T-2})]`, where `start` is a learned vector (or
    the class embedding for a conditional prior, i.e. a class token), so
    output s predicts code `z_s` from codes `< s`. Each slot s also gets the
    learned 2-D position embedding of the code it predicts:
    `row_embedding[s // W] + column_embedding[s % W]`.

    Sampling decodes one token at a time either with a key/value cache
    (`use_cache=True`: each step runs one token through the blocks) or
    without (each step re-runs the whole prefix); both draw the same samples
    for the same seed.

    Args:
        num_codes: int >= 2, K.
        map_shape: `(H, W)`, fixed by the position embeddings.
        num_classes: int >= 0, 0 = unconditional. Defaults to 0.
        embed_dim: int, D. Defaults to 128.
        num_heads: int. Defaults to 4.
        num_layers: int >= 1. Defaults to 4.
        mlp_ratio: int. Defaults to 4.
        dropout: float, residual dropout. Defaults to 0.0.
        **kwargs: base `keras.Model` arguments.

    Call arguments and output: as `AutoregressivePrior` (int codes
    `(B, H, W)`, or a `(codes, labels)` pair, -> logits `(B, H, W, K)`); e.g.
    codes `(4, 8, 8)` with K=512 give `(4, 8, 8, 512)`.

    Example:

    ```python
    prior = TransformerPrior(num_codes=512, map_shape=(8, 8), num_classes=10)
    prior.compile(keras.optimizers.Adam(3e-4))
    prior.fit(dataset_of_codes_and_labels, epochs=10)
    samples = prior.sample(10, labels=np.arange(10), top_k=50, seed=3)
    ```

    References:
        Vaswani et al. 2017, "Attention Is All You Need"; Radford et al.
        2019 (GPT-2, pre-LayerNorm blocks); Esser et al. 2021, "Taming
        Transformers for High-Resolution Image Synthesis" (Transformer
        priors over VQ codes).
    """

    def __init__(
        self,
        num_codes,
        map_shape,
        num_classes=0,
        embed_dim=128,
        num_heads=4,
        num_layers=4,
        mlp_ratio=4,
        dropout=0.0,
        **kwargs,
    ):
        if map_shape is None:
            raise ValueError(
                "`map_shape` (H, W) is required: the position embeddings have a fixed size; received None."
            )
        super().__init__(num_codes, num_classes=num_classes, map_shape=map_shape, **kwargs)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_layers = check_int("num_layers", num_layers, minimum=1)
        self.mlp_ratio = mlp_ratio
        self.dropout = dropout
        height, width = self.map_shape
        self.code_embedding = keras.layers.Embedding(num_codes, embed_dim, name="code_embedding")
        self.row_embedding = keras.layers.Embedding(height, embed_dim, name="row_embedding")
        self.column_embedding = keras.layers.Embedding(width, embed_dim, name="column_embedding")
        if num_classes:
            self.class_embedding = keras.layers.Embedding(num_classes, embed_dim, name="class_embedding")
        self.blocks = [
            CausalTransformerBlock(embed_dim, num_heads, mlp_ratio, dropout, name=f"block_{i}")
            for i in range(num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")
        self.head = keras.layers.Dense(num_codes, name="head")

    def build(self, input_shape=None):
        for layer in (self.code_embedding, self.row_embedding, self.column_embedding):
            layer.build((None,))
        if self.num_classes:
            self.class_embedding.build((None,))
        else:
            self.start_token = self.add_weight(
                name="start_token",
                shape=(self.embed_dim,),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
            )
        for block in self.blocks:
            block.build((None, None, self.embed_dim))
        self.final_norm.build((None, None, self.embed_dim))
        self.head.build((None, None, self.embed_dim))
        self.built = True

    # -- pieces shared by the full pass and both decoders --------------------

    def _positions(self):
        """`(T, D)`: row + column embedding of each raster position."""
        height, width = self.map_shape
        index = ops.arange(height * width)
        return self.row_embedding(index // width) + self.column_embedding(index % width)

    def _start(self, labels, batch):
        """`(B, 1, D)` first input: the class token or the learned start."""
        if self.num_classes:
            return self.class_embedding(labels)[:, None, :]
        return ops.broadcast_to(ops.cast(self.start_token, self.compute_dtype), (batch, 1, self.embed_dim))

    def _decode(self, sequence, training=None):
        """`(B, S, D)` inputs incl. start, S <= T -> logits `(B, S, K)`."""
        length = ops.shape(sequence)[1]
        x = sequence + self._positions()[None, :length]
        for block in self.blocks:
            x = block(x, training=training)
        return self.head(self.final_norm(x))

    def embed(self, codes):
        return self.code_embedding(codes)

    def logits_from_embeddings(self, embeddings, labels=None, training=None):
        batch = ops.shape(embeddings)[0]
        height, width = self.map_shape
        tokens = ops.reshape(embeddings, (batch, height * width, self.embed_dim))
        sequence = ops.concatenate([self._start(labels, batch), tokens[:, :-1]], axis=1)
        logits = self._decode(sequence, training=training)
        return ops.reshape(logits, (batch, height, width, self.num_codes))

    # -- sampling ------------------------------------------------------------

    def sample(
        self,
        num_samples,
        labels=None,
        temperature=1.0,
        top_k=None,
        seed=0,
        map_shape=None,
        use_cache=True,
    ):
        """Ancestral sampling; see `AutoregressivePrior.sample`.

        Args:
            use_cache: bool; True decodes with a key/value cache (one token
                per step), False recomputes the whole prefix at every step.
                Same samples either way. Defaults to True.
        """
        return self._sample(num_samples, labels, temperature, top_k, seed, map_shape, use_cache=bool(use_cache))

    def _sample_graph(self, num_samples, height, width, labels, seed, temperature, top_k, use_cache=True):
        decode = self._sample_cached if use_cache else self._sample_uncached
        return decode(num_samples, labels, seed, temperature, top_k)

    @tf.function
    def _sample_uncached(self, num_samples, labels, seed, temperature, top_k):
        total = self.map_shape[0] * self.map_shape[1]
        start = self._start(labels, num_samples)

        def body(t, tokens):
            sequence = ops.concatenate([start, self.code_embedding(tokens)], axis=1)
            logits = self._decode(sequence, training=False)[:, -1]
            new = sample_at(logits, seed, t, temperature, top_k)
            return t + 1, tf.concat([tokens, new[:, None]], axis=1)

        _, tokens = tf.while_loop(
            lambda t, tokens: t < total,
            body,
            (tf.constant(0), tf.zeros((num_samples, 0), tf.int32)),
            shape_invariants=(tf.TensorShape([]), tf.TensorShape([num_samples, None])),
        )
        return tf.reshape(tokens, (num_samples,) + self.map_shape)

    def _cached_step(self, start, positions, previous, t, caches):
        """One position of the cached decoder (the sampler's and the TFLite export's `step`).

        Args:
            start: `(B, 1, D)`, `_start`'s. positions: `(T, D)`, `_positions()`.
            previous: int `(B,)`, the codes at `t - 1` (unread at `t == 0`).
            t: int scalar tensor.
            caches: per block a `(keys, values)` pair, `(B, heads, T, head_dim)`
                each, filled at positions `< t`.

        Returns:
            `(logits (B, K) at t, caches filled at t too)`.
        """
        x = tf.where(t == 0, start, self.code_embedding(previous)[:, None, :])
        x = x + positions[t][None, None, :]
        new_caches = []
        for block, (keys, values) in zip(self.blocks, caches):
            x, keys, values = block.step(x, keys, values, t)
            new_caches.append((keys, values))
        return self.head(self.final_norm(x))[:, 0], tuple(new_caches)

    @tf.function
    def _sample_cached(self, num_samples, labels, seed, temperature, top_k):
        total = self.map_shape[0] * self.map_shape[1]
        start = self._start(labels, num_samples)
        positions = self._positions()
        cache_shape = (num_samples, self.num_heads, total, self.embed_dim // self.num_heads)
        caches = tuple(
            (tf.zeros(cache_shape, self.compute_dtype), tf.zeros(cache_shape, self.compute_dtype)) for _ in self.blocks
        )

        def body(t, previous, tokens, caches):
            logits, caches = self._cached_step(start, positions, previous, t, caches)
            new = sample_at(logits, seed, t, temperature, top_k)
            tokens = tokens.write(t, new)
            return t + 1, new, tokens, caches

        _, _, tokens, _ = tf.while_loop(
            lambda t, *_: t < total,
            body,
            (
                tf.constant(0),
                tf.zeros((num_samples,), tf.int32),
                tf.TensorArray(tf.int32, size=total),
                caches,
            ),
        )
        return tf.reshape(tf.transpose(tokens.stack()), (num_samples,) + self.map_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "embed_dim": self.embed_dim,
                "num_heads": self.num_heads,
                "num_layers": self.num_layers,
                "mlp_ratio": self.mlp_ratio,
                "dropout": self.dropout,
            }
        )
        return config

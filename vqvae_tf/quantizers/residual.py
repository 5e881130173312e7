"""Residual vector quantization (SoundStream): a stack of VQ stages.

Stage 1 quantizes the input, each later stage quantizes what the stages
before it left over, and the output is the sum of the stage codes. `S`
stages of `K` codes address `K^S` vectors with `S` small codebooks, and the
first `n` stages alone already give a coarser reconstruction, so one model
serves several bit rates when trained with quantizer dropout.
"""

import keras
import tensorflow as tf

from vqvae_tf.quantizers.base import (
    QuantizerLayer,
    add_projections,
    check_indices,
    check_input_shape,
    code_counts,
    dense,
)
from vqvae_tf.quantizers.code_search import nearest_codes
from vqvae_tf.quantizers.ema import VectorQuantizerEMA
from vqvae_tf.quantizers.rotation import rotate_to_codes
from vqvae_tf.quantizers.vector_quantizer import VectorQuantizer
from vqvae_tf.utils.checks import check_int, check_number

STAGE_QUANTIZERS = {"ema": VectorQuantizerEMA, "vq": VectorQuantizer}

# Salt of the stateless RNG that draws the number of active stages, so it is
# not correlated with the dead-code restarts keyed on the same (seed, step).
_DROPOUT_SALT = 0x5D


@keras.saving.register_keras_serializable(package="vqvae_tf")
class ResidualVectorQuantizer(QuantizerLayer):
    """Residual vector quantizer: `num_stages` VQ stages on successive residuals.

    With stage quantizers `Q_1 .. Q_S`:

        r_1 = z,   q_i = Q_i(r_i),   r_{i+1} = r_i - q_i,   z_q = q_1 + ... + q_n

    where `n = S` except in training with quantizer dropout, where with
    probability `quantizer_dropout` a batch uses only the first
    `n ~ U{1..S}` stages (Zeghidour et al. 2021), so the decoder learns to
    reconstruct from any prefix of the stages. `n` is drawn by a stateless
    RNG keyed on `(seed, step)`, hence the same on every replica. Dropped
    stages still run and still learn their codebooks (the residuals they see
    do not depend on the dropout); only their output and their commitment
    pull on the encoder are dropped. Under a strategy every stage's state is
    updated from all-reduced statistics, as in `VectorQuantizerEMA`.

    Gradients reach the encoder through one straight-through copy
    `z + sg(z_q - z)` (or the rotation trick from `z` to `z_q`), so the
    encoder's gradient scale does not depend on the number of stages.

    Args:
        num_codes: int, codes per stage K.
        code_dim: int, size D of the inputs and of each code.
        num_stages: int >= 1, S. Defaults to 4.
        shared_codebook: bool, whether all stages share one codebook (whose
            EMA update then sees the residuals of every stage at once).
            Defaults to False.
        stage_quantizer: `"ema"` (default) or `"vq"`, the kind of each stage.
        quantizer_dropout: float in [0, 1], probability that a training batch
            uses a random prefix of the stages. Defaults to 0 (all stages).
        commitment_cost: float, beta of each stage. Defaults to 0.25.
        decay: float, EMA decay of `"ema"` stages. Defaults to 0.99.
        epsilon: float, Laplace smoothing of `"ema"` stages. Defaults to 1e-5.
        l2_normalize, kmeans_init, kmeans_iters, dead_code_threshold,
        usage_decay: options of each stage, see `VectorQuantizer`.
            `kmeans_init` fits the stages in order, each to the residuals of
            the ones before it.
        lookup_dim: int or None. If set, the whole stack works in a learned
            `lookup_dim`-dimensional projection of the inputs: one affine map
            `code_dim -> lookup_dim` before the first stage, the stages
            quantize residuals of that projection, and one affine map back
            after the sum. (Per-stage projections would subtract each stage's
            projected-back code from the residual with no gradient reaching
            the map back, so that map never learned and training diverged.)
        rotation_trick: bool, whether the encoder gradient is rotated from
            `z` onto `z_q` (see `vqvae_tf.quantizers.rotation`). Defaults to False.
        seed: int or None; stage `i` is seeded with `seed + i`, the dropout
            RNG with `seed`.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: float `(..., code_dim)`, e.g. `(batch, H, W, code_dim)`.
        training: bool, whether stage state moves and dropout applies.

    Returns:
        The quantizer dict of `VectorQuantizer` with these differences:
        `"indices"` is int32 `inputs.shape[:-1] + (num_stages,)` (all stages,
        also the ones a dropout step left out); `"loss"`,
        `"codebook_loss"` and `"commitment_loss"` are sums over stages;
        `"perplexity"` and `"usage"` are means over stages; `"counts"`
        `(num_codes,)` sums the stages' histograms.

    Input shape: `(batch, 8, 8, 64)` -> `"quantized"` `(batch, 8, 8, 64)`,
    `"indices"` `(batch, 8, 8, 4)` for 4 stages.

    Example:

    >>> rvq = ResidualVectorQuantizer(num_codes=256, code_dim=64, num_stages=4)
    >>> z = tf.random.normal((2, 8, 8, 64))
    >>> codes = rvq.codes(z)                   # (2, 8, 8, 4) int32
    >>> coarse = rvq.lookup(codes[..., :2])    # decode with 2 stages only
    >>> coarse.shape
    TensorShape([2, 8, 8, 64])

    References:
        Zeghidour, Luebs, Omran, Skoglund, Tagliasacchi. SoundStream: An
        End-to-End Neural Audio Codec. arXiv:2107.03312.
        Lee et al. 2022 (RQ-VAE), arXiv:2203.01941.
    """

    def __init__(
        self,
        num_codes,
        code_dim,
        num_stages=4,
        shared_codebook=False,
        stage_quantizer="ema",
        quantizer_dropout=0.0,
        commitment_cost=0.25,
        decay=0.99,
        epsilon=1e-5,
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
        self.num_stages = check_int("num_stages", num_stages, minimum=1)
        if stage_quantizer not in STAGE_QUANTIZERS:
            raise ValueError(
                f"`stage_quantizer` must be one of {sorted(STAGE_QUANTIZERS)}; received {stage_quantizer!r}."
            )
        self.quantizer_dropout = check_number("quantizer_dropout", quantizer_dropout, minimum=0, maximum=1)
        if seed is not None:
            check_int("seed", seed, minimum=0)
        self.num_codes = num_codes
        self.code_dim = code_dim
        self.shared_codebook = bool(shared_codebook)
        self.stage_quantizer = stage_quantizer
        self.commitment_cost = commitment_cost
        self.decay = decay
        self.epsilon = epsilon
        self.l2_normalize = bool(l2_normalize)
        self.kmeans_init = bool(kmeans_init)
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.usage_decay = usage_decay
        self.rotation_trick = bool(rotation_trick)
        self.lookup_dim = None if lookup_dim is None else int(lookup_dim)
        self.seed = seed
        options = dict(
            num_codes=num_codes,
            code_dim=code_dim,
            commitment_cost=commitment_cost,
            l2_normalize=l2_normalize,
            kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters,
            dead_code_threshold=dead_code_threshold,
            usage_decay=usage_decay,
        )
        if lookup_dim is not None:
            check_int("lookup_dim", lookup_dim, minimum=1)
            # The stages see (and their codebooks live in) the projection.
            options["code_dim"] = int(lookup_dim)
        if stage_quantizer == "ema":
            options.update(decay=decay, epsilon=epsilon)
        cls = STAGE_QUANTIZERS[stage_quantizer]
        # The stages validate the shared options (num_codes, decay, ...).
        count = 1 if self.shared_codebook else self.num_stages
        self.stages = [cls(seed=None if seed is None else seed + i, name=f"stage_{i}", **options) for i in range(count)]
        # Same float32-under-any-policy rule as the stages (docs/design.md, fact 8).

    @property
    def code_shape(self):
        """Trailing axes of a code map per position: `(num_stages,)`."""
        return (self.num_stages,)

    @property
    def initialized(self):
        """Whether `initialize_codebook` has run (a boolean variable)."""
        return self.stages[0].initialized

    def build(self, input_shape):
        check_input_shape(self, input_shape, self.code_dim)
        for stage in self.stages:
            if not stage.built:
                stage.build((None, self.stages[0].code_dim))
        if self.lookup_dim is not None:
            add_projections(self, self.code_dim, self.lookup_dim, self.seed)

    def _to_search_space(self, flat):
        """`(N, code_dim)` inputs -> `(N, lookup_dim)` inputs of the first stage."""
        return flat if self.lookup_dim is None else dense(flat, self.in_kernel, self.in_bias)

    def _from_search_space(self, vectors):
        """`(N, lookup_dim)` sums of stage codes -> `(N, code_dim)` outputs."""
        return vectors if self.lookup_dim is None else dense(vectors, self.out_kernel, self.out_bias)

    def _stage(self, i):
        return self.stages[0 if self.shared_codebook else i]

    def _active_stages(self, training):
        """Number of stages that count in this call (int32 scalar)."""
        if not training or self.quantizer_dropout == 0.0:
            return tf.constant(self.num_stages, tf.int32)
        seed = tf.stack([tf.constant(self.seed or 0, tf.int64), tf.convert_to_tensor(self.stages[0].steps)])
        seed = tf.random.experimental.stateless_fold_in(seed, _DROPOUT_SALT)
        draws = tf.random.stateless_uniform([2], seed=seed)
        prefix = tf.minimum(tf.cast(draws[1] * self.num_stages, tf.int32) + 1, self.num_stages)
        return tf.where(draws[0] < self.quantizer_dropout, prefix, self.num_stages)

    def call(self, inputs, training=None):
        inputs, in_dtype, flat = self._flatten(inputs)
        active = self._active_stages(training)
        # With one shared codebook the stages only search; its state moves
        # once per step, from every stage's residuals together.
        stage_training = bool(training) and not self.shared_codebook
        latent = self._to_search_space(flat)
        residual = latent
        total = tf.zeros_like(latent)
        codebook_loss = commitment_loss = tf.constant(0.0, tf.float32)
        outputs, searched = [], []
        for i in range(self.num_stages):
            stage = self._stage(i)
            out = stage._quantize_flat(residual, training=stage_training)
            code = tf.stop_gradient(out["quantized"])
            keep = tf.cast(i < active, tf.float32)
            total += keep * code
            codebook_loss += out["codebook_loss"]
            commitment_loss += keep * out["commitment_loss"]
            outputs.append(out)
            searched.append(residual)
            residual = residual - code
        if training and self.shared_codebook:
            stage = self.stages[0]
            latents = stage._to_search_space(tf.concat(searched, axis=0))
            indices = tf.concat([out["indices"] for out in outputs], axis=0)
            local_counts, global_counts = code_counts(indices, stage.num_codes)
            stage._training_updates(latents, indices, local_counts, global_counts)

        passed = rotate_to_codes(latent, total) if self.rotation_trick else latent + tf.stop_gradient(total - latent)
        passed = self._from_search_space(passed)
        loss = codebook_loss + self._stage(0).commitment_cost * commitment_loss
        self.add_loss(loss)
        indices = tf.stack([out["indices"] for out in outputs], axis=-1)
        return self._output_dict(
            inputs,
            in_dtype,
            quantized=passed,
            indices=indices,
            perplexity=tf.add_n([out["perplexity"] for out in outputs]) / self.num_stages,
            usage=tf.add_n([out["usage"] for out in outputs]) / self.num_stages,
            counts=tf.add_n([out["counts"] for out in outputs]),
            loss=loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
        )

    def _search(self, stage, residual):
        """Nearest codes of one stage and their vectors in input space."""
        indices = nearest_codes(stage._to_search_space(residual), stage._search_codebook())
        return indices, stage._from_search_space(tf.gather(stage._search_codebook(), indices))

    def codes(self, inputs):
        """int32 codes `inputs.shape[:-1] + (num_stages,)`, coarse to fine."""
        inputs, _, flat = self._flatten(inputs)
        residual = self._to_search_space(flat)
        indices = []
        for i in range(self.num_stages):
            stage_indices, vectors = self._search(self._stage(i), residual)
            indices.append(stage_indices)
            residual = residual - vectors
        indices = tf.stack(indices, axis=-1)
        return tf.reshape(indices, tf.concat([tf.shape(inputs)[:-1], [self.num_stages]], axis=0))

    @property
    def absent_code(self):
        """The index (`num_codes`) that `lookup` reads as "stage absent": a zero vector."""
        return self.num_codes

    def lookup(self, indices):
        """Sum of the stage codes of int indices `(..., n)`, `1 <= n <= num_stages`.

        Index `absent_code` (`num_codes`) marks a stage as absent: it adds
        nothing. A map that keeps the first `m` stages can therefore be
        decoded either as `(..., m)` or padded to `(..., num_stages)` with
        `absent_code`; both give the same vectors, and the second keeps the
        shape static, so one exported decoder serves every `m`.

        Returns float32 `indices.shape[:-1] + (code_dim,)`. Passing fewer
        stages than `num_stages` decodes at a lower bit rate.
        """
        indices = check_indices(self, indices, self.num_codes, absent_code=self.absent_code)
        stages = indices.shape[-1] if indices.shape.rank else None
        if stages is None or not 1 <= stages <= self.num_stages:
            raise ValueError(
                f"{type(self).__name__}.lookup expects indices shaped (..., n) with a static "
                f"1 <= n <= num_stages={self.num_stages}; received shape {tuple(indices.shape)}."
            )
        if not self.built:
            self.build((None, self.code_dim))
        # unstack (TFLite UNPACK), not indices[..., i]: an ellipsis slice is a
        # StridedSlice that the TFLite builtins do not take.
        per_stage = tf.unstack(indices, num=stages, axis=-1)
        total = tf.add_n([self._stage_vectors(i, codes) for i, codes in enumerate(per_stage)])
        if self.lookup_dim is None:
            return total
        flat = self._from_search_space(tf.reshape(total, [-1, self.lookup_dim]))
        return tf.reshape(flat, tf.concat([tf.shape(indices)[:-1], [self.code_dim]], axis=0))

    def _stage_vectors(self, i, codes):
        """Stage `i`'s vectors of `codes`, zero where a code is `absent_code`.

        A clamped gather times a 0/1 mask: builtin TFLite ops (MINIMUM,
        GATHER, LESS, CAST, EXPAND_DIMS, MUL) in every export quantization
        (`[..., None]` would be a StridedSlice, which the builtins lack).
        """
        present = tf.expand_dims(tf.cast(codes < self.num_codes, tf.float32), -1)
        return self._stage(i).lookup(tf.minimum(codes, self.num_codes - 1)) * present

    def initialize_codebook(self, vectors):
        """k-means initialisation of the stages from `(N, code_dim)` vectors.

        Separate codebooks are fitted in order, stage `i` to the residuals
        left by stages `1..i-1`. A shared codebook is fitted to the inputs,
        then refitted to the inputs of all stages together.
        """
        vectors = tf.reshape(tf.cast(tf.convert_to_tensor(vectors), tf.float32), [-1, self.code_dim])
        if not self.built:
            self.build((None, self.code_dim))
        # As in `VectorQuantizer`: k-means where the search runs.
        vectors = self._to_search_space(vectors)

        def stage_inputs():
            residual, seen = vectors, []
            for i in range(self.num_stages):
                seen.append(residual)
                residual = residual - self._search(self._stage(i), residual)[1]
            return seen

        if self.shared_codebook:
            self.stages[0].initialize_codebook(vectors)
            self.stages[0].initialize_codebook(tf.concat(stage_inputs(), axis=0))
            return
        residual = vectors
        for stage in self.stages:
            stage.initialize_codebook(residual)
            residual = residual - self._search(stage, residual)[1]

    def get_config(self):
        config = super().get_config()
        config.update(
            num_codes=self.num_codes,
            code_dim=self.code_dim,
            num_stages=self.num_stages,
            shared_codebook=self.shared_codebook,
            stage_quantizer=self.stage_quantizer,
            quantizer_dropout=self.quantizer_dropout,
            commitment_cost=self.commitment_cost,
            decay=self.decay,
            epsilon=self.epsilon,
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

"""Finite scalar quantization (FSQ): a fixed grid instead of a learned codebook.

Each of `d` channels is bounded to a few values and rounded; the codebook is
the implicit grid of `prod(levels)` points. There is nothing to collapse, no
codebook loss and no state, so FSQ needs none of the EMA, restart or k-means
machinery of the vector quantizers.
"""

import keras
import numpy as np
import tensorflow as tf

from vqvae_tf.quantizers.base import (
    QuantizerLayer,
    add_projections,
    check_indices,
    check_input_shape,
    dense,
    histogram_statistics,
)
from vqvae_tf.utils.checks import check_int

# Codes are summed as float32 digits times the mixed-radix basis, exact only
# below 2^24; the code histogram has one float per code as well.
MAX_CODES = 1 << 24
# Widens the tanh bound a little so that the outermost levels are reached
# before saturation. The paper's listing shrinks it by (1 - 1e-3) instead,
# which leaves no room for the half-step offset when L = 2 (atanh(>1));
# with (1 + 1e-3) the bound overshoots the grid by 0.0035 at most, which
# still rounds inside it, for every L >= 2 (as vector-quantize-pytorch).
_BOUND_EPSILON = 1e-3
# Largest level that `levels_for_codes` forms when factoring a codebook size.
_MAX_DERIVED_LEVEL = 8


def levels_for_codes(num_codes):
    """FSQ levels whose product is `num_codes`, each at most 8 where possible.

    The prime factors are packed, largest first, into as few levels <= 8 as
    they fit (a prime above 8 is a level of its own): 1000 -> (8, 5, 5, 5),
    512 -> (8, 8, 8), 64 -> (8, 8).

    Raises:
        ValueError: if `num_codes` is not an int >= 2 or above `MAX_CODES`.
    """
    rest = check_int("num_codes", num_codes, minimum=2)
    if num_codes > MAX_CODES:
        raise ValueError(f"`num_codes` must be <= {MAX_CODES} for FSQ; received {num_codes}.")
    factors, prime = [], 2
    while prime * prime <= rest:
        while rest % prime == 0:
            factors.append(prime)
            rest //= prime
        prime += 1
    if rest > 1:
        factors.append(rest)
    levels = []
    for factor in sorted(factors, reverse=True):
        for i, level in enumerate(levels):
            if level * factor <= _MAX_DERIVED_LEVEL:
                levels[i] = level * factor
                break
        else:
            levels.append(factor)
    return tuple(sorted(levels, reverse=True))


@keras.saving.register_keras_serializable(package="vqvae_tf")
class FiniteScalarQuantizer(QuantizerLayer):
    """Finite scalar quantizer (Mentzer et al. 2023).

    For `d = len(levels)` channels with `L_i` levels each:

        h_i     = (L_i - 1)(1 + 1e-3) / 2,    o_i = 0.5 if L_i is even else 0
        bound_i = tanh(z_i + atanh(o_i / h_i)) h_i - o_i
        z^_i    = round_ste(bound_i) / floor(L_i / 2)          in [-1, 1]

    so channel `i` takes `L_i` values (even `L_i` take the asymmetric grid
    `-L/2 .. L/2 - 1` thanks to the half-step offset). Rounding passes
    gradients straight through; there is no codebook and no auxiliary loss.
    A code is the mixed-radix integer of the digits `round(bound_i) +
    floor(L_i / 2)`: `index = sum_i digit_i prod_{j<i} L_j`, a bijection onto
    `[0, prod(levels))`.

    When `code_dim != len(levels)`, learned affine maps project the inputs
    `code_dim -> d` and the quantized values back `d -> code_dim`, so FSQ
    fits an encoder of any width (`VQVAE(quantizer="fsq")`).

    Args:
        levels: sequence of ints >= 2, levels per channel. Defaults to
            `(8, 5, 5, 5)` (1000 codes, paper's table 1) unless `num_codes`
            is given, in which case `levels_for_codes(num_codes)`.
        code_dim: int or None, size of the inputs; None means `len(levels)`
            (no projection).
        num_codes: int or None, the codebook size `prod(levels)`; given
            without `levels` it chooses the levels, given with them it must
            match (`VQVAE` passes its `num_codes`).
        l2_normalize: must be False; accepted so that quantizer configs
            written for the vector quantizers fail with a clear message.
        seed: int or None, seed of the projections.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: float `(..., code_dim)`, e.g. `(batch, H, W, code_dim)`.
        training: unused (FSQ keeps no state); accepted for the contract.

    Returns:
        The quantizer dict of `VectorQuantizer`: `"quantized"` (same shape
        and dtype as the inputs), `"indices"` int32 `inputs.shape[:-1]`,
        `"counts"` `(prod(levels),)`, `"perplexity"`, `"usage"`, and
        `"loss"`, `"codebook_loss"`, `"commitment_loss"` all zero.

    Input shape: `(batch, 8, 8, 4)` with `levels=(8, 5, 5, 5)` ->
    `"quantized"` `(batch, 8, 8, 4)`, `"indices"` `(batch, 8, 8)`.

    Example:

    >>> fsq = FiniteScalarQuantizer(levels=(8, 5, 5, 5))
    >>> out = fsq(tf.random.normal((2, 8, 8, 4)))
    >>> fsq.num_codes, out["indices"].dtype
    (1000, tf.int32)
    >>> bool(tf.reduce_all(fsq.lookup(out["indices"]) == out["quantized"]))
    True

    References:
        Mentzer, Minnen, Agustsson, Tschannen. Finite Scalar Quantization:
        VQ-VAE Made Simple. arXiv:2309.15505.
    """

    def __init__(self, levels=None, code_dim=None, num_codes=None, l2_normalize=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        if levels is None:
            levels = (8, 5, 5, 5) if num_codes is None else levels_for_codes(num_codes)
        if isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__") or len(levels) == 0:
            raise ValueError(f"`levels` must be a non-empty sequence of ints >= 2; received {levels!r}.")
        levels = tuple(check_int("levels", level, minimum=2) for level in levels)
        size = int(np.prod(levels, dtype=np.int64))
        if size > MAX_CODES:
            raise ValueError(f"FSQ supports at most {MAX_CODES} codes; received levels {levels} ({size} codes).")
        if num_codes is not None and num_codes != size:
            raise ValueError(
                f"`num_codes` must equal prod(levels) = {size} for levels {levels}; received num_codes={num_codes}. "
                "Pass num_codes alone to derive the levels."
            )
        if code_dim is not None:
            check_int("code_dim", code_dim, minimum=1)
        if l2_normalize:
            raise ValueError(
                "FiniteScalarQuantizer does not support `l2_normalize=True`: its codes are a fixed grid; received True."
            )
        if seed is not None:
            check_int("seed", seed, minimum=0)
        self.levels = levels
        self.num_codes = size
        self.code_dim = len(levels) if code_dim is None else int(code_dim)
        self.l2_normalize = False
        self.seed = seed
        self.projected = self.code_dim != len(levels)
        levels_array = np.asarray(levels, np.float32)
        half_level = (levels_array - 1.0) * (1.0 + _BOUND_EPSILON) / 2.0
        offset = np.where(np.asarray(levels) % 2 == 0, 0.5, 0.0).astype(np.float32)
        self._half_level = half_level
        self._offset = offset
        # The paper's listing writes tan; atanh is what makes bound(0) = 0
        # (the two agree to 1e-3 at these arguments).
        self._shift = np.arctanh(offset / half_level).astype(np.float32)
        self._half_width = (np.asarray(levels) // 2).astype(np.float32)
        self._basis = np.cumprod([1] + list(levels[:-1])).astype(np.int64)

    def build(self, input_shape):
        check_input_shape(self, input_shape, self.code_dim)
        if self.projected:
            add_projections(self, self.code_dim, len(self.levels), self.seed)

    def _bound(self, flat):
        if self.projected:
            flat = dense(flat, self.in_kernel, self.in_bias)
        return tf.tanh(flat + self._shift) * self._half_level - self._offset

    def _digits_to_indices(self, rounded):
        digits = rounded + self._half_width
        return tf.cast(tf.round(tf.reduce_sum(digits * self._basis.astype(np.float32), axis=-1)), tf.int32)

    def _grid_to_outputs(self, grid):
        normalized = grid / self._half_width
        return dense(normalized, self.out_kernel, self.out_bias) if self.projected else normalized

    def call(self, inputs, training=None):
        inputs, in_dtype, flat = self._flatten(inputs)
        bounded = self._bound(flat)
        rounded = tf.round(bounded)
        # Straight-through rounding written so the value is exactly the grid
        # point (x - x == 0), matching `lookup` bit for bit.
        grid = rounded + (bounded - tf.stop_gradient(bounded))
        quantized = self._grid_to_outputs(grid)
        indices = self._digits_to_indices(rounded)
        local_counts, _, perplexity, usage = histogram_statistics(indices, self.num_codes)
        return self._output_dict(
            inputs,
            in_dtype,
            quantized=quantized,
            indices=indices,
            perplexity=perplexity,
            usage=usage,
            counts=local_counts,
        )

    def codes(self, inputs):
        """int32 codes in `[0, prod(levels))`, shape `inputs.shape[:-1]`."""
        inputs, _, flat = self._flatten(inputs)
        indices = self._digits_to_indices(tf.round(self._bound(flat)))
        return tf.reshape(indices, tf.shape(inputs)[:-1])

    def indices_to_digits(self, indices):
        """int32 digits `indices.shape + (len(levels),)`, digit i in `[0, levels[i])`."""
        indices = check_indices(self, indices, self.num_codes)
        basis = tf.constant(self._basis.astype(np.int32))
        return tf.math.floormod(
            tf.math.floordiv(tf.expand_dims(indices, -1), basis), tf.constant(self.levels, tf.int32)
        )

    def digits_to_indices(self, digits):
        """int32 codes for int digits `(..., len(levels))`, the inverse of `indices_to_digits`."""
        digits = tf.convert_to_tensor(digits)
        if not digits.dtype.is_integer or digits.shape[-1] != len(self.levels):
            raise ValueError(
                f"digits_to_indices expects integer digits shaped (..., {len(self.levels)}); "
                f"received {digits.dtype.name} {tuple(digits.shape)}."
            )
        return tf.reduce_sum(tf.cast(digits, tf.int32) * tf.constant(self._basis.astype(np.int32)), axis=-1)

    def lookup(self, indices):
        """Quantized vectors (float32) for int codes: `indices.shape + (code_dim,)`."""
        if not self.built:
            self.build((None, self.code_dim))
        digits = self.indices_to_digits(indices)
        grid = tf.cast(digits, tf.float32) - self._half_width
        flat = self._grid_to_outputs(tf.reshape(grid, [-1, len(self.levels)]))
        return tf.reshape(flat, tf.concat([tf.shape(digits)[:-1], [self.code_dim]], axis=0))

    def get_config(self):
        config = super().get_config()
        config.update(
            levels=list(self.levels),
            code_dim=self.code_dim,
            num_codes=self.num_codes,
            l2_normalize=self.l2_normalize,
            seed=self.seed,
        )
        return config

"""The contract every quantizer layer shares, and the helpers of its variants.

Every quantizer takes vectors `(..., code_dim)` in any float dtype, computes
in float32 and returns the dict of `OUTPUT_KEYS` (see `QuantizerLayer`).
The helpers here validate inputs and indices, hold float32 projections and
count codes the same way in every variant, so that their messages, weights
and statistics agree.
"""

import keras
import numpy as np
import tensorflow as tf

from vqvae_tf.quantizers.code_search import perplexity_from_counts
from vqvae_tf.utils import distributed_ops

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


class QuantizerLayer(keras.layers.Layer):
    """The contract every quantizer layer shares; subclass it.

    Distances in float16 overflow and choose wrong codes (docs/design.md,
    fact 8): a quantizer takes inputs in their own dtype, computes in float32
    and casts its output back, so it neither converts its inputs to the
    policy's compute dtype nor autocasts its weights. Its call returns the documented
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

    def _flatten(self, inputs):
        """`(inputs, in_dtype, flat)`: checked inputs, their dtype and float32 `(N, code_dim)` rows.

        Builds the layer on first use, as the methods that run outside
        `__call__` (`codes`, `logits`) need.
        """
        inputs = as_tensor(inputs)
        in_dtype = check_inputs(self, inputs, self.code_dim)
        if not self.built:
            self.build(inputs.shape)
        return inputs, in_dtype, tf.reshape(tf.cast(inputs, tf.float32), [-1, self.code_dim])

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


def add_projections(layer, outer_dim, inner_dim, seed=None):
    """Adds learned maps `outer_dim -> inner_dim` and back to `layer`.

    Sets `in_kernel`, `in_bias` (the map in) and `out_kernel`, `out_bias`
    (the map back), the weights of a quantizer that searches or rounds in a
    space of its own (`lookup_dim`, FSQ's channels).
    """
    layer.in_kernel, layer.in_bias = add_dense_weights(layer, "in_projection", outer_dim, inner_dim, seed)
    layer.out_kernel, layer.out_bias = add_dense_weights(layer, "out_projection", inner_dim, outer_dim, seed)


def dense(flat, kernel, bias):
    """`flat @ kernel + bias` for `(N, in_dim)` inputs (TFLite FULLY_CONNECTED)."""
    return tf.nn.bias_add(tf.matmul(flat, kernel), bias)


def check_indices(layer, indices, num_codes, absent_code=None):
    """Integer code indices as int32; eager calls also check the range.

    Args:
        layer: the layer (named in messages).
        indices: integer indices.
        num_codes: codes are in `[0, num_codes)`.
        absent_code: an extra allowed value meaning "absent" (residual
            stages), or None.

    Raises:
        TypeError: if the indices are not integers.
        ValueError: (eagerly) if a value lies outside `[0, num_codes)` (or is
            not `absent_code`).
    """
    indices = tf.convert_to_tensor(indices)
    if not indices.dtype.is_integer:
        raise TypeError(
            f"{type(layer).__name__}.lookup expects integer code indices; received dtype {indices.dtype.name}."
        )
    if tf.executing_eagerly() and tf.size(indices) > 0:
        low, high = int(tf.reduce_min(indices)), int(tf.reduce_max(indices))
        top = num_codes if absent_code is None else absent_code + 1
        if low < 0 or high >= top:
            extra = "" if absent_code is None else f" or {absent_code} (an absent stage)"
            raise ValueError(
                f"{type(layer).__name__}.lookup expects indices in [0, {num_codes}){extra}; "
                f"received values in [{low}, {high}]."
            )
    return tf.cast(indices, tf.int32)


def code_counts(indices, num_codes):
    """`(local_counts, global_counts)`: float32 `(num_codes,)` histograms of int32 codes `(N,)`.

    The global counts are all-reduced over replicas (identity on one device).
    """
    local_counts = tf.math.unsorted_segment_sum(tf.ones_like(indices, dtype=tf.float32), indices, num_codes)
    return local_counts, distributed_ops.all_reduce_sum(local_counts)


def histogram_statistics(indices, num_codes):
    """`(local_counts, global_counts, perplexity, usage)` of int32 codes `(N,)`.

    Perplexity and usage come from the global counts, so they describe the
    global batch under any strategy.
    """
    local_counts, global_counts = code_counts(indices, num_codes)
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

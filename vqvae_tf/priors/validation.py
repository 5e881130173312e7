"""Input checks of the priors: code maps and class labels against a model's sizes.

Every prior (and `nll_per_code`, the unigram baseline) validates its inputs
here, so a wrong dtype, rank, map size or an out-of-range code gets the same
message whichever prior it reached.
"""

import keras
import numpy as np
import tensorflow as tf


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
                raise ValueError(f"`{name}` must be a numeric array; received dtype object.")
        dtype, shape = tf.as_dtype(codes.dtype), tuple(codes.shape)
    if not (dtype.is_integer and not dtype.is_quantized):
        raise ValueError(
            f"`{name}` must be an integer tensor of code indices; received "
            f"dtype {dtype.name}. Expected int32 or int64 (cast codes with "
            "tf.cast(codes, tf.int32))."
        )
    if len(shape) != 3:
        raise ValueError(f"`{name}` must have rank 3, (batch, H, W); received shape {shape} (rank {len(shape)}).")
    if map_shape is not None:
        got = shape[1:]
        if any(g is not None and g != e for g, e in zip(got, map_shape)):
            raise ValueError(
                f"`{name}` maps must be of size {tuple(map_shape)} (H, W) for this model; received shape {shape}."
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
                f"This prior is unconditional (num_classes=0) but received `{name}`; expected labels=None."
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
        raise ValueError(f"`{name}` must be integer class ids; received dtype {dtype.name}.")
    if len(labels.shape) != 1:
        raise ValueError(f"`{name}` must have shape (batch,); received shape {tuple(labels.shape)}.")
    if batch_size is not None and labels.shape[0] is not None and labels.shape[0] != batch_size:
        raise ValueError(f"`{name}` must have one label per code map ({batch_size}); received {labels.shape[0]}.")
    labels = tf.cast(labels, tf.int32)
    if not _is_symbolic(labels) and tf.size(labels) > 0:
        low, high = int(tf.reduce_min(labels)), int(tf.reduce_max(labels))
        if low < 0 or high >= num_classes:
            raise ValueError(f"`{name}` values must be in [0, {num_classes}); received values in [{low}, {high}].")
    return labels

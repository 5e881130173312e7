"""The deterministic probability model of prior coding, and the checks of its inputs.

Encoder and decoder must build bit-identical probability tables (see
`vqvae_tf.codec.prior_coding`): both get the prior's logits from the same
traced function (`logits_function`) on inputs of the same shape, and turn
them into float64 probabilities with the same NumPy procedure
(`probabilities_from_logits`).
"""

from __future__ import annotations

import weakref

import numpy as np

from vqvae_tf.utils.checks import is_int

__all__ = [
    "PriorCodingError",
    "check_code_values",
    "check_codes",
    "check_integers",
    "check_labels",
    "check_map_shape",
    "check_prior",
    "is_shape",
    "logits_function",
    "probabilities_from_logits",
]

# One traced logits function per prior (weak keys: dies with the prior).
_LOGITS_FUNCTIONS = weakref.WeakKeyDictionary()


class PriorCodingError(ValueError):
    """A payload cannot be decoded with this prior, or bad arguments to code one."""


def probabilities_from_logits(logits):
    """float32 logits `(n, K)` -> float64 probabilities `(n, K)`, deterministically.

    Softmax in float64 after subtracting the row maximum. Encoder and decoder
    call this on arrays of the same shape, so NumPy's reductions run in the
    same order and the tables are bit-identical.
    """
    x = np.array(logits, dtype=np.float64, order="C")
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def logits_function(prior):
    """`codes (N, H, W) int32, labels -> float32 logits (N, H, W, K)` as NumPy."""
    import keras
    import tensorflow as tf

    if not isinstance(prior, keras.Model):
        # e.g. `UnigramPrior`: plain NumPy-backed logits, already deterministic.
        return lambda codes, labels: np.asarray(prior.logits(codes, labels), np.float32)
    function = _LOGITS_FUNCTIONS.get(prior)
    if function is None:

        @tf.function(autograph=False)
        def traced(codes, labels):
            return tf.cast(prior(codes, labels, training=False), tf.float32)

        def function(codes, labels):
            with tf.device("/CPU:0"):
                labels = None if labels is None else tf.constant(labels, tf.int32)
                return traced(tf.constant(codes, tf.int32), labels).numpy()

        _LOGITS_FUNCTIONS[prior] = function
    return function


def check_prior(prior):
    """Raises TypeError unless `prior` has what prior coding uses."""
    for name in ("num_codes", "num_classes", "logits_at" if hasattr(prior, "logits_at") else "logits"):
        if not hasattr(prior, name):
            raise TypeError(
                "`prior` must be an autoregressive prior (GatedPixelCNN, TransformerPrior, "
                f"UnigramPrior, LitePrior); received {type(prior).__name__} without `{name}`."
            )


def is_shape(shape, ranks) -> bool:
    """True if `shape` is a tuple or list of `ranks` positive ints."""
    return isinstance(shape, (tuple, list)) and len(shape) in ranks and all(is_int(s) and s >= 1 for s in shape)


def check_map_shape(prior, map_shape):
    """`map_shape` `(H, W)` or `(N, H, W)` as ints, if the prior codes maps of that size."""
    if not is_shape(map_shape, (2, 3)):
        raise PriorCodingError(f"`map_shape` must be (H, W) or (N, H, W) with positive ints; received {map_shape!r}.")
    expected = getattr(prior, "map_shape", None)
    if expected is not None and tuple(map_shape[-2:]) != tuple(expected):
        raise PriorCodingError(
            f"this prior codes maps of size {tuple(expected)}; received map_shape {tuple(map_shape)}."
        )
    return tuple(int(s) for s in map_shape)


def check_integers(codes, name="codes"):
    """Raises unless `codes` has an integer dtype (`name`: the argument named in the message)."""
    if not np.issubdtype(codes.dtype, np.integer):
        raise PriorCodingError(f"`{name}` must be integers; received dtype {codes.dtype}.")


def check_code_values(prior, codes, name="codes"):
    """Raises unless the integer `codes` are in `[0, prior.num_codes)`."""
    if codes.min() < 0 or codes.max() >= prior.num_codes:
        raise PriorCodingError(
            f"`{name}` must be in [0, {prior.num_codes}); received values in [{codes.min()}, {codes.max()}]."
        )


def check_codes(prior, codes):
    """`codes` `(H, W)` or `(N, H, W)` as int32, checked against the prior."""
    codes = np.asarray(codes)
    check_integers(codes)
    check_map_shape(prior, codes.shape)
    check_code_values(prior, codes)
    return codes.astype(np.int32)


def check_labels(prior, labels, batch, single):
    """The labels of `batch` maps as int32 `(batch,)`, or None for an unconditional prior.

    `single`: one map was given, so one int label is accepted.
    """
    if prior.num_classes == 0:
        if labels is not None:
            raise PriorCodingError("this prior is unconditional (num_classes=0); expected labels=None.")
        return None
    if labels is None:
        raise PriorCodingError(
            f"this prior is class-conditional (num_classes={prior.num_classes}); pass the "
            "label(s) the codes were coded with."
        )
    labels = np.asarray(labels)
    if single and labels.ndim == 0:
        labels = labels[None]
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (batch,):
        raise PriorCodingError(
            f"`labels` must be {'an int or ' if single else ''}integers of shape ({batch},); "
            f"received {labels.dtype} of shape {labels.shape}."
        )
    if labels.min() < 0 or labels.max() >= prior.num_classes:
        raise PriorCodingError(
            f"`labels` must be in [0, {prior.num_classes}); received values in [{labels.min()}, {labels.max()}]."
        )
    return labels.astype(np.int32)

"""Nearest-code search and code-histogram statistics, shared by every quantizer."""

import tensorflow as tf


def nearest_codes(vectors, codebook):
    """Index of the nearest codebook row for each vector (squared L2).

    `argmin ||x - e||^2 = argmax (x.e - ||e||^2 / 2)`: the `||x||^2` term is
    the same for every code, and the bias-add fuses into the matmul on CPU
    (oneDNN `_FusedMatMul`) and into FULLY_CONNECTED in TFLite, so the
    `(N, K)` score matrix is written once and read once by ARG_MAX.
    `tf.argmax` with int32 output converts to the TFLite ARG_MAX builtin,
    unlike `keras.ops.argmin` on floats (DESIGN.md fact 1).

    Args:
        vectors: float32 `(N, D)`.
        codebook: float32 `(K, D)`.

    Returns:
        int32 `(N,)`.
    """
    half_sq_norms = 0.5 * tf.reduce_sum(tf.square(codebook), axis=1)
    scores = tf.nn.bias_add(tf.matmul(vectors, codebook, transpose_b=True), -half_sq_norms)
    return tf.argmax(scores, axis=-1, output_type=tf.int32)



def perplexity_from_counts(counts):
    """`exp(entropy)` of the code histogram; K when usage is uniform."""
    probs = counts / tf.maximum(tf.reduce_sum(counts), 1.0)
    entropy = -tf.reduce_sum(probs * tf.math.log(probs + 1e-10))
    return tf.exp(entropy)

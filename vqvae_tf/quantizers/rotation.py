"""The rotation trick: a gradient estimator through vector quantization.

The straight-through estimator copies the decoder's gradient onto the encoder
output unchanged, whatever the angle and length between the encoder output
`e` and its code `q`. The rotation trick (Fifty et al. 2024) instead treats
the quantization as a rotation and rescaling of `e` onto `q`,

    q~ = sg(lambda R) e,   lambda = ||q|| / ||e||,   R e / ||e|| = q / ||q||,

so the forward value is `q` and the encoder receives `lambda R^T g`: the
decoder gradient `g` rotated by the angle between `e` and `q` and scaled by
their length ratio, which carries information about where `e` lies inside its
Voronoi cell.

`R` is the Householder-style rotation of the paper (section 4.2),

    R = I - 2 r r^T + 2 q^ e^T,   r = (e^ + q^) / ||e^ + q^||,

applied as two dot products per vector: no `D x D` matrix is formed.
"""

import tensorflow as tf

# Guards the divisions by vector norms: an encoder output or code of exactly
# zero length has no direction.
_EPSILON = 1e-6


def rotate_to_codes(inputs, codes):
    """The rotation trick in its stop-gradient form.

    Args:
        inputs: float `(N, D)` encoder outputs `e` (gradients flow to them).
        codes: float `(N, D)` chosen codes `q`, same shape (treated as
            constants: the codebook learns from its own loss or EMA).

    Returns:
        `(N, D)`, numerically exactly `codes`, whose gradient with respect to
        `inputs` is `lambda R^T g` for an upstream gradient `g`.

    Example:

    >>> e = tf.Variable([[1.0, 0.0]])
    >>> q = tf.constant([[0.0, 2.0]])
    >>> with tf.GradientTape() as tape:
    ...     out = rotate_to_codes(e, q)
    ...     loss = tf.reduce_sum(out * [[0.0, 1.0]])
    >>> out.numpy().tolist(), tape.gradient(loss, e).numpy().tolist()
    ([[0.0, 2.0]], [[2.0, 0.0]])

    References:
        Fifty, Junkins, Duan, Iger, Liu, Levine, Ermon, Xing, Re. Restructuring
        Vector Quantization with the Rotation Trick. arXiv:2410.06424.
    """
    codes = tf.stop_gradient(codes)
    input_norm = tf.norm(inputs, axis=-1, keepdims=True)
    code_norm = tf.norm(codes, axis=-1, keepdims=True)
    safe_input_norm = tf.maximum(input_norm, _EPSILON)
    input_dir = tf.stop_gradient(inputs / safe_input_norm)
    code_dir = codes / tf.maximum(code_norm, _EPSILON)
    # When e^ = -q^ the sum vanishes, r becomes 0 and R e^ = e^ + 2 q^ (e^.e^)
    # = q^ still holds, so no special case is needed.
    householder = tf.math.l2_normalize(input_dir + code_dir, axis=-1, epsilon=1e-12)
    scale = tf.stop_gradient(code_norm / safe_input_norm)

    def dot(a, b):
        return tf.reduce_sum(a * b, axis=-1, keepdims=True)

    rotated = scale * (inputs - 2.0 * householder * dot(householder, inputs) + 2.0 * code_dir * dot(input_dir, inputs))
    # The value is taken from `codes` rather than from `rotated` (equal up to
    # rounding), so the layer's output is bit-exactly the chosen code.
    return codes + (rotated - tf.stop_gradient(rotated))

"""Transposed convolutions computed as sub-pixel convolutions, for export.

A 4x4 stride-2 "same" transposed convolution equals a 2-tap convolution
with `2**rank` times the outputs followed by depth-to-space: same weights,
same sums of the same products. The decoder uses this form so that exported
graphs hold pad, convolution, depth-to-space and slice (all delegated by
XNNPACK) instead of TRANSPOSE_CONV with a computed output shape (which is
not).
"""

import keras
import tensorflow as tf

#: Activations that act on each value alone, so commute with rearranging values.
_ELEMENTWISE_ACTIVATIONS = tuple(keras.activations.get(name) for name in ("linear", "relu", "relu6", "sigmoid", "tanh"))

# The 4x4 stride-2 "same" transposed convolution, along one spatial axis:
# output r = 2m gets x[m] * w[1] + x[m - 1] * w[3], and r = 2m + 1 gets
# x[m + 1] * w[0] + x[m] * w[2]. A 2-tap valid convolution over x padded by
# one on each side sees (x[a - 1], x[a]) at position a; give it two output
# slots: slot 1 taps (w[3], w[1]) and makes output 2a, slot 0 taps (w[2],
# w[0]) and makes output 2a - 1. Tap index k = 2p + q, so slot = q and the
# tap is p reversed. Interleaving the slots puts output r at r + 1: crop one
# position on each side.


def subpixel_kernel(kernel):
    """The 2-tap convolution kernel equivalent to a 4-tap stride-2 transposed one.

    Args:
        kernel: a `Conv{1,2}DTranspose` kernel, `(4,) * rank + (filters, channels)`.

    Returns:
        A `keras.ops.conv` kernel `(2,) * rank + (channels, 2**rank * filters)`
        whose output channel `(slot_1, ..., slot_rank, filter)` is in
        depth-to-space (DCR) order.
    """
    ops = keras.ops
    rank = len(kernel.shape) - 2
    filters, channels = kernel.shape[-2:]
    # Reshape, reverse and transpose only (no gather): dense gradients, and
    # TFLite converters fold it into one constant.
    kernel = ops.reshape(kernel, (2, 2) * rank + (filters, channels))  # (p, q) per axis
    kernel = ops.flip(kernel, axis=[2 * a for a in range(rank)])
    taps, slots = [2 * a for a in range(rank)], [2 * a + 1 for a in range(rank)]
    kernel = ops.transpose(kernel, taps + [2 * rank + 1] + slots + [2 * rank])
    return ops.reshape(kernel, (2,) * rank + (channels, 2**rank * filters))


def subpixel_conv_transpose(layer, inputs):
    """`layer(inputs)` of a 4x4 stride-2 "same" transposed convolution, as a sub-pixel convolution.

    Pads the input by one, runs a 2-tap valid convolution with `2**rank *
    filters` outputs (`subpixel_kernel`: each output phase's taps of the
    transposed kernel), interleaves the phases (depth-to-space for images, a
    reshape for sequences) and crops one position on each side. Same sums
    of the same products as `layer(inputs)`, so equal up to float rounding,
    with the layer's own variables (`.keras` files and model ids do not
    change). Why: a transposed convolution with a run-time output size
    becomes TFLite's TRANSPOSE_CONV with a computed output shape, which
    XNNPACK does not delegate (TFLite decoders ran ~3x slower than the
    SavedModel); pad, convolution, depth-to-space and slice are all
    delegated, and TensorFlow runs them about as fast as `conv2d_transpose`
    (README, export section). The 2-tap form does the transposed
    convolution's multiply-adds (a 3-tap "same" form would do 2.25x as many)
    and its kernel is no larger, so TFLite converters fold the rearranged
    kernel into a constant.

    Args:
        layer: a built `keras.layers.Conv1DTranspose` or `Conv2DTranspose`
            with kernel_size 4, strides 2, padding "same", dilation 1, no
            output_padding, channels_last.
        inputs: `(batch, steps, channels)` or `(batch, height, width,
            channels)`.

    Returns:
        `(batch, 2 * steps, filters)` or `(batch, 2 * height, 2 * width,
        filters)`, after the layer's activation.

    Example:

    >>> layer = keras.layers.Conv2DTranspose(8, 4, strides=2, padding="same")
    >>> x = np.random.rand(2, 5, 7, 3).astype("float32")
    >>> np.allclose(subpixel_conv_transpose(layer, x), layer(x), atol=1e-5)
    True

    References:
        Shi et al. 2016, "Real-time single image and video super-resolution
        using an efficient sub-pixel convolutional neural network",
        arXiv:1609.05158.
    """
    ops, rank = keras.ops, layer.rank
    received = dict(
        kernel_size=tuple(layer.kernel_size),
        strides=tuple(layer.strides),
        dilation_rate=tuple(layer.dilation_rate),
        padding=layer.padding,
        output_padding=layer.output_padding,
        data_format=layer.data_format,
    )
    expected = dict(
        kernel_size=(4,) * rank,
        strides=(2,) * rank,
        dilation_rate=(1,) * rank,
        padding="same",
        output_padding=None,
        data_format="channels_last",
    )
    if received != expected:
        raise ValueError(
            f"subpixel_conv_transpose computes transposed convolutions with {expected}; "
            f"received layer {layer.name!r} with {received}."
        )
    if not layer.built:
        layer.build(tuple(inputs.shape))
    # The layer's own __call__ would cast its variables to the compute dtype
    # (mixed precision); this path reads them directly.
    dtype = layer.compute_dtype
    padded = ops.pad(ops.cast(inputs, dtype), [[0, 0]] + [[1, 1]] * rank + [[0, 0]])
    kernel = subpixel_kernel(ops.cast(layer.kernel, dtype))
    outputs = ops.conv(padded, kernel, strides=1, padding="valid", data_format="channels_last")
    if layer.use_bias:
        outputs = ops.add(outputs, ops.tile(ops.cast(layer.bias, dtype), [2**rank]))
    # An elementwise activation goes before the rearrangement, where TFLite
    # fuses it into the convolution (int8: a tighter output range, and no
    # standalone int8 RELU, which XNNPACK does not delegate); others (softmax
    # mixes channels) after it.
    early = layer.activation in _ELEMENTWISE_ACTIVATIONS
    if early:
        outputs = layer.activation(outputs)
    if rank == 2:
        outputs = ops.depth_to_space(outputs, 2)
    else:
        outputs = ops.reshape(outputs, (ops.shape(outputs)[0], -1, layer.filters))
    outputs = _crop_one(outputs)
    return outputs if early or layer.activation is None else layer.activation(outputs)


@tf.custom_gradient
def _crop_one(x):
    """`x` without its first and last position on every spatial axis.

    A strided slice (TFLite STRIDED_SLICE with constant bounds, which XNNPACK
    delegates). Its gradient is written as a pad: TensorFlow's
    StridedSliceGrad took about as long as the whole transposed convolution's
    backward pass in float32 and bfloat16 here.
    """
    spatial = len(x.shape) - 2
    paddings = [[0, 0]] + [[1, 1]] * spatial + [[0, 0]]

    def grad(upstream):
        return tf.pad(upstream, paddings)

    return x[(slice(None),) + (slice(1, -1),) * spatial], grad

"""The paper's convolutional encoder and decoder, for images and sequences.

Encoder: `log2(downsample)` strided 4x4 convolutions (stride 2, ReLU), a 3x3
convolution, a stack of residual blocks (ReLU, 3x3 conv, ReLU, 1x1 conv), a
ReLU and a 1x1 projection to `code_dim`. The decoder mirrors it with 4x4
transposed convolutions, computed as sub-pixel convolutions
(`subpixel_conv_transpose`: same weights and numbers, no transposed-conv op
in exported graphs). `rank=2` builds images (NHWC), `rank=1` sequences (NWC:
audio, time series) from the same code. Fully convolutional: any spatial size
divisible by `downsample`, including `None` dimensions.
"""

import math

import keras
import tensorflow as tf

_CONV = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D}
DOWNSAMPLE_FACTORS = (2, 4, 8, 16)


def _validate(rank=None, downsample=None, **positive):
    if rank is not None and rank not in _CONV:
        raise ValueError(f"`rank` must be 1 (sequences) or 2 (images); received {rank!r}.")
    if downsample is not None and downsample not in DOWNSAMPLE_FACTORS:
        raise ValueError(f"`downsample` must be one of {DOWNSAMPLE_FACTORS}; received {downsample!r}.")
    for name, value in positive.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "num_residual_blocks" else 1):
            low = 0 if name == "num_residual_blocks" else 1
            raise ValueError(f"`{name}` must be an int >= {low}; received {value!r}.")


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
    received = dict(kernel_size=tuple(layer.kernel_size), strides=tuple(layer.strides),
                    dilation_rate=tuple(layer.dilation_rate), padding=layer.padding,
                    output_padding=layer.output_padding, data_format=layer.data_format)
    expected = dict(kernel_size=(4,) * rank, strides=(2,) * rank, dilation_rate=(1,) * rank, padding="same",
                    output_padding=None, data_format="channels_last")
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


_CONV_TRANSPOSE = {1: keras.layers.Conv1DTranspose, 2: keras.layers.Conv2DTranspose}


@keras.saving.register_keras_serializable(package="vqvae_tf")
class ResidualBlock(keras.layers.Layer):
    """`x + conv1x1(relu(conv3x3(relu(x))))`, as in the paper.

    Args:
        filters: int, channels of the input and output.
        residual_units: int, channels of the inner 3x3 convolution.
        rank: 1 or 2, sequence or image convolutions. Defaults to 2.
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape: `(batch, height, width, filters)` (rank 2) or
        `(batch, steps, filters)` (rank 1).
    Output shape: same as the input.

    Example:

    >>> block = ResidualBlock(filters=64, residual_units=32)
    >>> block(np.zeros((1, 8, 8, 64), "float32")).shape
    TensorShape([1, 8, 8, 64])
    """

    def __init__(self, filters, residual_units, rank=2, **kwargs):
        super().__init__(**kwargs)
        _validate(rank=rank, filters=filters, residual_units=residual_units)
        self.filters = filters
        self.residual_units = residual_units
        self.rank = rank
        conv = _CONV[rank]
        self.inner = conv(residual_units, 3, padding="same", activation="relu", name="conv3", dtype=self.dtype_policy)
        self.outer = conv(filters, 1, padding="same", name="conv1", dtype=self.dtype_policy)

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.filters:
            raise ValueError(
                f"ResidualBlock expects {self.filters} input channels; received shape {tuple(input_shape)}."
            )
        self.inner.build(input_shape)
        self.outer.build(tuple(input_shape[:-1]) + (self.residual_units,))

    def call(self, inputs):
        return inputs + self.outer(self.inner(keras.ops.relu(inputs)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, residual_units=self.residual_units, rank=self.rank)
        return config


class _ConvStack(keras.layers.Layer):
    """Common arguments and config of `Encoder` and `Decoder`."""

    def __init__(
        self,
        downsample=4,
        hidden_units=256,
        residual_units=256,
        num_residual_blocks=2,
        rank=2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _validate(
            rank=rank,
            downsample=downsample,
            hidden_units=hidden_units,
            residual_units=residual_units,
            num_residual_blocks=num_residual_blocks,
        )
        self.downsample = downsample
        self.hidden_units = hidden_units
        self.residual_units = residual_units
        self.num_residual_blocks = num_residual_blocks
        self.rank = rank
        self.num_strided = int(math.log2(downsample))

    def _residual_blocks(self):
        return [
            ResidualBlock(self.hidden_units, self.residual_units, self.rank, name=f"res{i}", dtype=self.dtype_policy)
            for i in range(self.num_residual_blocks)
        ]

    def _check_rank(self, input_shape):
        if len(input_shape) != self.rank + 2:
            layout = "(batch, height, width, channels)" if self.rank == 2 else "(batch, steps, channels)"
            raise ValueError(
                f"{type(self).__name__} (rank={self.rank}) expects inputs shaped {layout}; "
                f"received shape {tuple(input_shape)}."
            )

    def get_config(self):
        config = super().get_config()
        config.update(
            downsample=self.downsample,
            hidden_units=self.hidden_units,
            residual_units=self.residual_units,
            num_residual_blocks=self.num_residual_blocks,
            rank=self.rank,
        )
        return config


_STACK_ARGS = """
    Args:
        downsample: int in (2, 4, 8, 16), total stride; each factor of two is
            one 4x4 strided (transposed) convolution. Defaults to 4.
        hidden_units: int, channels of the convolutions. Defaults to 256 as
            in the paper.
        residual_units: int, channels inside each residual block. Defaults
            to 256.
        num_residual_blocks: int, residual blocks. Defaults to 2.
        rank: 2 for images (NHWC), 1 for sequences (NWC). Defaults to 2.
"""


@keras.saving.register_keras_serializable(package="vqvae_tf")
class Encoder(_ConvStack):
    __doc__ = (
        """The VQ-VAE encoder: data to `code_dim` vectors on a coarser grid.
"""
        + _STACK_ARGS
        + """        code_dim: int, channels of the output (the quantizer's D).
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape: `(batch, H, W, C)` with H and W divisible by `downsample`
        (rank 2), or `(batch, T, C)` (rank 1).
    Output shape: `(batch, H / downsample, W / downsample, code_dim)`.

    Example:

    >>> encoder = Encoder(downsample=4, hidden_units=32, residual_units=16, code_dim=8)
    >>> encoder(np.zeros((2, 32, 32, 3), "float32")).shape
    TensorShape([2, 8, 8, 8])

    References:
        van den Oord et al. 2017, arXiv:1711.00937, section 4.
    """
    )

    def __init__(self, downsample=4, hidden_units=256, residual_units=256, num_residual_blocks=2, code_dim=64, rank=2, **kwargs):
        super().__init__(downsample, hidden_units, residual_units, num_residual_blocks, rank, **kwargs)
        _validate(code_dim=code_dim)
        self.code_dim = code_dim
        conv = _CONV[rank]
        policy = self.dtype_policy
        self.strided = []
        for i in range(self.num_strided):
            # The paper halves the width before the last strided layer.
            units = hidden_units // 2 if i < self.num_strided - 1 else hidden_units
            self.strided.append(
                conv(max(units, 1), 4, strides=2, padding="same", activation="relu", name=f"down{i}", dtype=policy)
            )
        self.conv_in = conv(hidden_units, 3, padding="same", name="conv_in", dtype=policy)
        self.blocks = self._residual_blocks()
        self.project = conv(code_dim, 1, padding="same", name="project", dtype=policy)

    def build(self, input_shape):
        self._check_rank(input_shape)
        shape = tuple(input_shape)
        for layer in self.strided + [self.conv_in] + self.blocks:
            layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
        self.project.build(shape)

    def call(self, inputs):
        x = inputs
        for layer in self.strided:
            x = layer(x)
        x = self.conv_in(x)
        for block in self.blocks:
            x = block(x)
        return self.project(keras.ops.relu(x))

    def compute_output_shape(self, input_shape):
        spatial = [None if s is None else s // self.downsample for s in input_shape[1:-1]]
        return (input_shape[0], *spatial, self.code_dim)

    def get_config(self):
        config = super().get_config()
        config["code_dim"] = self.code_dim
        return config


@keras.saving.register_keras_serializable(package="vqvae_tf")
class Decoder(_ConvStack):
    __doc__ = (
        """The VQ-VAE decoder: quantized vectors back to data.
"""
        + _STACK_ARGS
        + """        output_channels: int, channels of the reconstruction (3 for RGB).
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape: `(batch, h, w, code_dim)` (rank 2) or `(batch, t, code_dim)`.
    Output shape: `(batch, h * downsample, w * downsample, output_channels)`,
        linear (no output activation), in the data's range.

    Example:

    >>> decoder = Decoder(downsample=4, hidden_units=32, residual_units=16, output_channels=3)
    >>> decoder(np.zeros((2, 8, 8, 8), "float32")).shape
    TensorShape([2, 32, 32, 3])

    References:
        van den Oord et al. 2017, arXiv:1711.00937, section 4.
    """
    )

    def __init__(
        self, downsample=4, hidden_units=256, residual_units=256, num_residual_blocks=2, output_channels=3, rank=2, **kwargs
    ):
        super().__init__(downsample, hidden_units, residual_units, num_residual_blocks, rank, **kwargs)
        _validate(output_channels=output_channels)
        self.output_channels = output_channels
        policy = self.dtype_policy
        self.conv_in = _CONV[rank](hidden_units, 3, padding="same", name="conv_in", dtype=policy)
        self.blocks = self._residual_blocks()
        transpose = _CONV_TRANSPOSE[rank]
        self.upsampling = []
        for i in range(self.num_strided):
            last = i == self.num_strided - 1
            self.upsampling.append(
                transpose(
                    output_channels if last else max(hidden_units // 2, 1),
                    4,
                    strides=2,
                    padding="same",
                    activation=None if last else "relu",
                    name=f"up{i}",
                    dtype=policy,
                )
            )

    def build(self, input_shape):
        self._check_rank(input_shape)
        shape = tuple(input_shape)
        for layer in [self.conv_in] + self.blocks + self.upsampling:
            layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))

    def call(self, inputs):
        x = self.conv_in(inputs)
        for block in self.blocks:
            x = block(x)
        x = keras.ops.relu(x)
        for layer in self.upsampling:
            x = subpixel_conv_transpose(layer, x)
        return x

    def compute_output_shape(self, input_shape):
        spatial = [None if s is None else s * self.downsample for s in input_shape[1:-1]]
        return (input_shape[0], *spatial, self.output_channels)

    def get_config(self):
        config = super().get_config()
        config["output_channels"] = self.output_channels
        return config

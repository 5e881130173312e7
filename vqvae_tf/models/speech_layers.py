"""The layers of the speech network (`vqvae_tf.models.speech_networks`).

Padded 1-D convolutions, ReZero-gated residual units, nearest-neighbour
upsampling and frames-to-samples unfolding, each exposing `time_op()` for `speech_networks.time_reach`.
"""

import keras

from vqvae_tf.utils.checks import check_bool, check_int

_UNIT_KERNEL = 7


def _padding(kernel, stride, dilation, causal):
    """(left, right) zero padding: total `d (k - 1) + 1 - s` keeps `T / s` outputs for T divisible by s."""
    total = dilation * (kernel - 1) + 1 - stride
    left = total if causal else total // 2
    return left, total - left


@keras.saving.register_keras_serializable(package="vqvae_tf")
class PaddedConv1D(keras.layers.Layer):
    """A 1-D convolution with explicit causal or centred zero padding.

    Args:
        filters: int, output channels.
        kernel_size: int.
        strides: int. Defaults to 1.
        dilation_rate: int. Defaults to 1.
        causal: bool, all padding on the left (no look-ahead). Defaults to True.
        activation: a Keras activation name or None. Defaults to None.
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape: `(batch, T, channels)`, T divisible by `strides`.
    Output shape: `(batch, T / strides, filters)`.

    Example:

    >>> conv = PaddedConv1D(8, 4, strides=2)
    >>> conv(np.zeros((1, 16, 1), "float32")).shape
    TensorShape([1, 8, 8])
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        dilation_rate=1,
        causal=True,
        activation=None,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_int("filters", filters, minimum=1)
        self.kernel_size = check_int("kernel_size", kernel_size, minimum=1)
        self.strides = check_int("strides", strides, minimum=1)
        self.dilation_rate = check_int("dilation_rate", dilation_rate, minimum=1)
        self.causal = check_bool("causal", causal)
        self.activation = activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        if self.kernel_size < self.strides and self.dilation_rate == 1:
            raise ValueError(f"kernel_size must be >= strides; received {kernel_size} and {strides}.")
        self.pad = _padding(self.kernel_size, self.strides, self.dilation_rate, self.causal)
        self.conv = keras.layers.Conv1D(
            filters,
            kernel_size,
            strides=strides,
            dilation_rate=dilation_rate,
            padding="valid",
            activation=activation,
            kernel_initializer=self.kernel_initializer,
            name="conv",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        self.conv.build((input_shape[0], None, input_shape[-1]))

    def call(self, inputs):
        return self.conv(keras.ops.pad(inputs, [[0, 0], list(self.pad), [0, 0]]))

    def compute_output_shape(self, input_shape):
        steps = None if input_shape[1] is None else input_shape[1] // self.strides
        return (input_shape[0], steps, self.filters)

    def time_op(self):
        """`("conv", kernel, stride, dilation, left_pad)`, for `time_reach`."""
        return ("conv", self.kernel_size, self.strides, self.dilation_rate, self.pad[0])

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            dilation_rate=self.dilation_rate,
            causal=self.causal,
            activation=self.activation,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="vqvae_tf")
class ResidualUnit1D(keras.layers.Layer):
    """`x + gate * conv1(elu(conv7_dilated(elu(x))))`, SoundStream's residual unit with a ReZero gate.

    `gate` holds one weight per channel and starts at 0, so a fresh unit is
    the identity and deep stacks train from the first step (module docstring).

    Args:
        filters: int, channels of the input and output.
        dilation_rate: int, dilation of the kernel-7 convolution.
        causal: bool. Defaults to True.
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape: `(batch, T, filters)`. Output shape: the same.

    Example:

    >>> unit = ResidualUnit1D(8, dilation_rate=3)
    >>> unit(np.zeros((1, 32, 8), "float32")).shape
    TensorShape([1, 32, 8])
    """

    def __init__(self, filters, dilation_rate, causal=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_int("filters", filters, minimum=1)
        self.dilation_rate = check_int("dilation_rate", dilation_rate, minimum=1)
        self.causal = check_bool("causal", causal)
        policy = self.dtype_policy
        self.dilated = PaddedConv1D(filters, _UNIT_KERNEL, 1, dilation_rate, causal, name="dilated", dtype=policy)
        self.pointwise = PaddedConv1D(filters, 1, causal=causal, name="pointwise", dtype=policy)

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.filters:
            raise ValueError(f"ResidualUnit1D expects {self.filters} channels; received shape {tuple(input_shape)}.")
        self.dilated.build(input_shape)
        self.pointwise.build(input_shape)
        self.gate = self.add_weight(name="gate", shape=(self.filters,), initializer="zeros")

    def call(self, inputs):
        branch = self.pointwise(keras.ops.elu(self.dilated(keras.ops.elu(inputs))))
        return inputs + keras.ops.cast(self.gate, branch.dtype) * branch

    def compute_output_shape(self, input_shape):
        return input_shape

    def time_op(self):
        # The skip path's reach lies inside the dilated convolution's.
        return self.dilated.time_op()

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, dilation_rate=self.dilation_rate, causal=self.causal)
        return config


@keras.saving.register_keras_serializable(package="vqvae_tf")
class Upsample1D(keras.layers.Layer):
    """Nearest-neighbour upsampling in time: each step repeated `factor` times.

    Written as broadcast and reshape, which TFLite and ONNX run as builtins.

    Args:
        factor: int >= 1.
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape: `(batch, T, C)`. Output shape: `(batch, T * factor, C)`.

    Example:

    >>> Upsample1D(3)(np.zeros((1, 4, 2), "float32")).shape
    TensorShape([1, 12, 2])
    """

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = check_int("factor", factor, minimum=1)

    def call(self, inputs):
        shape = keras.ops.shape(inputs)
        # expand_dims, not inputs[:, :, None]: TFLite builtins lack a StridedSlice with a new axis.
        tiled = keras.ops.broadcast_to(keras.ops.expand_dims(inputs, 2), (shape[0], shape[1], self.factor, shape[2]))
        return keras.ops.reshape(tiled, (shape[0], shape[1] * self.factor, shape[2]))

    def compute_output_shape(self, input_shape):
        steps = None if input_shape[1] is None else input_shape[1] * self.factor
        return (input_shape[0], steps, input_shape[2])

    def time_op(self):
        return ("up", self.factor)

    def get_config(self):
        config = super().get_config()
        config["factor"] = self.factor
        return config


@keras.saving.register_keras_serializable(package="vqvae_tf")
class FramesToSamples(keras.layers.Layer):
    """Unfolds frames into samples: `(batch, t, F * C)` to `(batch, t * F, C)`.

    The 1-D depth-to-space: channel block `j` of frame `i` becomes sample
    `i F + j`. After a kernel-2 convolution to `F * C` channels this is a
    transposed convolution of kernel `2 F` and stride `F` (overlap-add of
    two-frame windows) written as a plain convolution and a RESHAPE, which
    TFLite and ONNX run as builtins.

    Args:
        frame_length: int >= 1, samples per frame (F).
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape: `(batch, t, F * C)`. Output shape: `(batch, t * F, C)`.

    Example:

    >>> FramesToSamples(4)(np.zeros((1, 5, 8), "float32")).shape
    TensorShape([1, 20, 2])
    """

    def __init__(self, frame_length, **kwargs):
        super().__init__(**kwargs)
        self.frame_length = check_int("frame_length", frame_length, minimum=1)

    def _channels(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels % self.frame_length:
            raise ValueError(
                f"FramesToSamples({self.frame_length}) expects channels divisible by {self.frame_length}; "
                f"received shape {tuple(input_shape)}."
            )
        return None if channels is None else channels // self.frame_length

    def build(self, input_shape):
        self._channels(input_shape)

    def call(self, inputs):
        shape = keras.ops.shape(inputs)
        channels = self._channels(inputs.shape)
        return keras.ops.reshape(inputs, (shape[0], shape[1] * self.frame_length, channels))

    def compute_output_shape(self, input_shape):
        steps = None if input_shape[1] is None else input_shape[1] * self.frame_length
        return (input_shape[0], steps, self._channels(input_shape))

    def time_op(self):
        # Sample n of the output comes from frame n // F alone: the time map of an upsampling.
        return ("up", self.frame_length)

    def get_config(self):
        config = super().get_config()
        config["frame_length"] = self.frame_length
        return config

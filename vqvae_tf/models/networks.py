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

from vqvae_tf.models.subpixel import subpixel_conv_transpose
from vqvae_tf.utils.checks import check_choice, check_int

_CONV = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D}
DOWNSAMPLE_FACTORS = (2, 4, 8, 16)

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
        self.rank = check_choice("rank", rank, tuple(_CONV))
        self.filters = check_int("filters", filters, minimum=1)
        self.residual_units = check_int("residual_units", residual_units, minimum=1)
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
        self.rank = check_choice("rank", rank, tuple(_CONV))
        self.downsample = check_choice("downsample", downsample, DOWNSAMPLE_FACTORS)
        self.hidden_units = check_int("hidden_units", hidden_units, minimum=1)
        self.residual_units = check_int("residual_units", residual_units, minimum=1)
        self.num_residual_blocks = check_int("num_residual_blocks", num_residual_blocks, minimum=0)
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

    def __init__(
        self, downsample=4, hidden_units=256, residual_units=256, num_residual_blocks=2, code_dim=64, rank=2, **kwargs
    ):
        super().__init__(downsample, hidden_units, residual_units, num_residual_blocks, rank, **kwargs)
        self.code_dim = check_int("code_dim", code_dim, minimum=1)
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
        self,
        downsample=4,
        hidden_units=256,
        residual_units=256,
        num_residual_blocks=2,
        output_channels=3,
        rank=2,
        **kwargs,
    ):
        super().__init__(downsample, hidden_units, residual_units, num_residual_blocks, rank, **kwargs)
        self.output_channels = check_int("output_channels", output_channels, minimum=1)
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

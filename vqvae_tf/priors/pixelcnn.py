"""Gated PixelCNN prior over 2-D code maps (no blind spot)."""

import keras
import tensorflow as tf
from keras import ops

from vqvae_tf.priors.autoregressive import AutoregressivePrior
from vqvae_tf.priors.sampling import sample_at
from vqvae_tf.utils.checks import check_int


def _shift_down(x):
    """Moves every row one step down (row 0 becomes zeros): `(B, H, W, C)`."""
    return ops.pad(x, [[0, 0], [1, 0], [0, 0], [0, 0]])[:, :-1]


def _shift_right(x):
    """Moves every column one step right (column 0 becomes zeros)."""
    return ops.pad(x, [[0, 0], [0, 0], [1, 0], [0, 0]])[:, :, :-1]


@keras.saving.register_keras_serializable(package="vqvae_tf")
class GatedPixelCNNBlock(keras.layers.Layer):
    """One gated layer with a vertical and a horizontal stack.

    Invariant (which makes the stacks causal without a blind spot): the
    vertical input at `(i, j)` depends only on code rows `< i`, the horizontal
    input only on rows `< i` and on row `i` at columns `< j`. Both convolutions
    may then include the current position:

    - vertical: a `(k//2 + 1, k)` convolution over rows `i - k//2 .. i` and
      columns `j - k//2 .. j + k//2` (zero-padded on top and both sides);
    - horizontal: a `(1, k//2 + 1)` convolution over columns `j - k//2 .. j`,
      plus a 1x1 convolution of the vertical pre-activation (the link that
      lets the horizontal stack see everything above);
    - gates `tanh(a) * sigmoid(b)` on both stacks, a class embedding added as
      a bias to both pre-activations, and a residual 1x1 on the horizontal one.

    Args:
        channels: int, C, channels of both stacks.
        kernel_size: odd int >= 3, k. Defaults to 3.
        num_classes: int >= 0, class-conditional bias if > 0. Defaults to 0.
        **kwargs: base layer arguments.

    Call arguments:
        vertical: `(B, H, W, C)`. horizontal: `(B, H, W, C)`.
        labels: int `(B,)` or None.

    Returns `(vertical, horizontal)`, both `(B, H, W, C)`; e.g.
    `(2, 8, 8, 32)` in and out.

    References:
        van den Oord et al. 2016, "Conditional Image Generation with
        PixelCNN Decoders", arXiv 1606.05328.
    """

    def __init__(self, channels, kernel_size=3, num_classes=0, **kwargs):
        super().__init__(**kwargs)
        self.channels = check_int("channels", channels, minimum=1)
        self.kernel_size = check_int("kernel_size", kernel_size, minimum=3)
        if kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be an odd int >= 3; received {kernel_size!r}.")
        self.num_classes = check_int("num_classes", num_classes, minimum=0)
        half = kernel_size // 2
        self.vertical_conv = keras.layers.Conv2D(2 * channels, (half + 1, kernel_size), name="vertical_conv")
        self.horizontal_conv = keras.layers.Conv2D(2 * channels, (1, half + 1), name="horizontal_conv")
        self.vertical_to_horizontal = keras.layers.Conv2D(2 * channels, 1, name="vertical_to_horizontal")
        self.horizontal_out = keras.layers.Conv2D(channels, 1, name="horizontal_out")
        if num_classes:
            self.vertical_class_bias = keras.layers.Embedding(num_classes, 2 * channels, name="vertical_class_bias")
            self.horizontal_class_bias = keras.layers.Embedding(num_classes, 2 * channels, name="horizontal_class_bias")

    def build(self, input_shape):
        shape = (None, None, None, self.channels)
        self.vertical_conv.build(shape)
        self.horizontal_conv.build(shape)
        self.vertical_to_horizontal.build((None, None, None, 2 * self.channels))
        self.horizontal_out.build(shape)
        if self.num_classes:
            self.vertical_class_bias.build((None,))
            self.horizontal_class_bias.build((None,))
        self.built = True

    @staticmethod
    def _gate(x):
        a, b = ops.split(x, 2, axis=-1)
        return ops.tanh(a) * ops.sigmoid(b)

    def call(self, vertical, horizontal, labels=None):
        half = self.kernel_size // 2
        v_pre = self.vertical_conv(ops.pad(vertical, [[0, 0], [half, 0], [half, half], [0, 0]]))
        h_pre = self.horizontal_conv(
            ops.pad(horizontal, [[0, 0], [0, 0], [half, 0], [0, 0]])
        ) + self.vertical_to_horizontal(v_pre)
        if self.num_classes:
            v_pre = v_pre + self.vertical_class_bias(labels)[:, None, None, :]
            h_pre = h_pre + self.horizontal_class_bias(labels)[:, None, None, :]
        return self._gate(v_pre), horizontal + self.horizontal_out(self._gate(h_pre))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "kernel_size": self.kernel_size,
                "num_classes": self.num_classes,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="vqvae_tf")
class GatedPixelCNN(AutoregressivePrior):
    """Gated PixelCNN prior over code maps, optionally class-conditional.

    The codes are embedded; the first layer sees the embedding shifted one row
    down (vertical stack) and one column right (horizontal stack), which makes
    every later layer causal with unmasked-at-the-centre convolutions (see
    `GatedPixelCNNBlock`). The horizontal stack feeds a ReLU-1x1-ReLU-1x1 head
    that gives K logits per position. Fully convolutional: any map size works.

    Args:
        num_codes: int >= 2, K.
        num_classes: int >= 0, 0 = unconditional. Defaults to 0.
        channels: int, C, embedding and stack width. Defaults to 64.
        num_layers: int >= 1, gated layers. Defaults to 4.
        kernel_size: odd int >= 3. Defaults to 3.
        map_shape: optional `(H, W)`; the default for `sample` and a check on
            inputs. Defaults to None (any size).
        **kwargs: base `keras.Model` arguments.

    Call arguments and output: as `AutoregressivePrior` (int codes
    `(B, H, W)`, or a `(codes, labels)` pair, -> logits `(B, H, W, K)`); e.g.
    codes `(4, 8, 8)` with K=512 give `(4, 8, 8, 512)`.

    Example:

    ```python
    prior = GatedPixelCNN(num_codes=512, channels=64, num_layers=8)
    prior.compile(keras.optimizers.Adam(3e-4))
    prior.fit(code_dataset, epochs=10)        # yields (B, H, W) int32 maps
    samples = prior.sample(16, map_shape=(8, 8), temperature=1.0, seed=1)
    ```

    References:
        van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
        Decoders", arXiv 1606.05328; van den Oord et al. 2017, "Neural
        Discrete Representation Learning", arXiv 1711.00937.
    """

    def __init__(
        self,
        num_codes,
        num_classes=0,
        channels=64,
        num_layers=4,
        kernel_size=3,
        map_shape=None,
        **kwargs,
    ):
        super().__init__(num_codes, num_classes=num_classes, map_shape=map_shape, **kwargs)
        self.channels = check_int("channels", channels, minimum=1)
        self.num_layers = check_int("num_layers", num_layers, minimum=1)
        self.kernel_size = kernel_size
        self.code_embedding = keras.layers.Embedding(num_codes, channels, name="code_embedding")
        self.blocks = [
            GatedPixelCNNBlock(channels, kernel_size, num_classes, name=f"gated_{i}") for i in range(num_layers)
        ]
        self.head_hidden = keras.layers.Conv2D(channels, 1, activation="relu", name="head_hidden")
        self.head_logits = keras.layers.Conv2D(num_codes, 1, name="head_logits")

    def build(self, input_shape=None):
        self.code_embedding.build((None, None, None))
        for block in self.blocks:
            block.build((None, None, None, self.channels))
        self.head_hidden.build((None, None, None, self.channels))
        self.head_logits.build((None, None, None, self.channels))
        self.built = True

    def embed(self, codes):
        return self.code_embedding(codes)

    def logits_from_embeddings(self, embeddings, labels=None, training=None):
        vertical, horizontal = _shift_down(embeddings), _shift_right(embeddings)
        for block in self.blocks:
            vertical, horizontal = block(vertical, horizontal, labels)
        return self.head_logits(self.head_hidden(ops.relu(horizontal)))

    @tf.function
    def _sample_graph(self, num_samples, height, width, labels, seed, temperature, top_k):
        batch_index = tf.range(num_samples)

        def body(t, codes):
            row, col = t // width, t % width
            # Rows below `row` cannot influence it: run the net on rows <= row.
            logits = self(codes[:, : row + 1], labels, training=False)[:, row, col]
            new = sample_at(logits, seed, t, temperature, top_k)
            index = tf.stack(
                [batch_index, tf.fill([num_samples], row), tf.fill([num_samples], col)],
                axis=1,
            )
            return t + 1, tf.tensor_scatter_nd_update(codes, index, new)

        _, codes = tf.while_loop(
            lambda t, codes: t < height * width,
            body,
            (tf.constant(0), tf.zeros((num_samples, height, width), tf.int32)),
        )
        return codes

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "num_layers": self.num_layers,
                "kernel_size": self.kernel_size,
            }
        )
        return config

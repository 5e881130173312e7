"""What the image models (`VQVAE`, `GaussianVAE`) share: input checks and the stack's arguments."""

import keras
import numpy as np
import tensorflow as tf

#: Arguments of the `Encoder` / `Decoder` stack that an image model takes, saves and passes on.
STACK_ARGS = ("downsample", "hidden_units", "residual_units", "num_residual_blocks")


class ImageInputsMixin:
    """Validates batches of images for a `keras.Model` subclass.

    The model needs `input_channels`, the `STACK_ARGS` attributes and
    optionally `rank` (2 for images, 1 for sequences; default 2). Bad input
    raises a `ValueError` / `TypeError` naming what was received and what
    was expected, before TensorFlow sees it.
    """

    def _stack_config(self):
        """The `STACK_ARGS` of this model, as its `get_config` saves them and its networks take them."""
        return {name: getattr(self, name) for name in STACK_ARGS}

    def predict_step(self, data):
        return self(self._unpack(data), training=False)

    def _unpack(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, (dict, list, tuple)):
            raise ValueError(
                f"{type(self).__name__} expects a single image tensor per batch; received {type(x).__name__}."
            )
        x = tf.convert_to_tensor(x)
        self._check_inputs(x)
        tf.debugging.assert_all_finite(
            tf.cast(x, tf.float32),
            f"{type(self).__name__} received non-finite values (NaN or Inf) in a batch of images",
        )
        return x

    def _check_shape(self, shape):
        rank = getattr(self, "rank", 2)
        layout = "(batch, height, width, channels)" if rank == 2 else "(batch, steps, channels)"
        if len(shape) != rank + 2:
            raise ValueError(f"{type(self).__name__} expects inputs shaped {layout}; received shape {tuple(shape)}.")
        if shape[-1] is not None and shape[-1] != self.input_channels:
            raise ValueError(
                f"{type(self).__name__} expects {self.input_channels} input channels; received shape {tuple(shape)}."
            )
        for size in shape[1:-1]:
            if size is not None and size % self.downsample:
                raise ValueError(
                    f"{type(self).__name__} spatial sizes must be multiples of downsample={self.downsample}; "
                    f"received shape {tuple(shape)}."
                )

    def _check_inputs(self, inputs):
        dtype = tf.as_dtype(inputs.dtype)
        if not dtype.is_floating:
            raise TypeError(
                f"{type(self).__name__} expects float images scaled to [0, 1]; received dtype {dtype.name}. "
                "Convert with tf.cast(images, 'float32') / 255."
            )
        self._check_shape(tuple(inputs.shape))
        if tf.executing_eagerly() and isinstance(inputs, (tf.Tensor, np.ndarray)):
            if not bool(tf.reduce_all(tf.math.is_finite(tf.cast(inputs, tf.float32)))):
                raise ValueError(
                    f"{type(self).__name__} received non-finite values (NaN or Inf) in its inputs; "
                    "expected finite images."
                )

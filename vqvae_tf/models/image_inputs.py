"""What the autoencoders (`VQVAE`, `GaussianVAE`) share: input checks, the stack's arguments, the speech network's.

`speech_args` checks the speech arguments (`rank`, `downsample`, `strides`,
`causal`, `sample_rate`) of either model and `networks_for` picks the encoder and
decoder classes with their arguments, so the two models build the same
networks on the same latent grid from the same arguments.
"""

import keras
import numpy as np
import tensorflow as tf

from vqvae_tf.models.networks import Decoder, Encoder
from vqvae_tf.models.speech_networks import SpeechDecoder, SpeechEncoder, check_strides
from vqvae_tf.utils.checks import check_int

#: Arguments of the `Encoder` / `Decoder` stack that an image model takes, saves and passes on.
STACK_ARGS = ("downsample", "hidden_units", "residual_units", "num_residual_blocks")


def speech_args(rank, downsample, strides, causal, sample_rate, frame_length=1):
    """Checks the speech arguments of a model; returns `(downsample, causal)` resolved.

    Without `strides` (the paper's network): `downsample` None means 4 and
    `causal` must be None or False. With `strides` (the rank-1 speech
    network): `rank` must be 1, `downsample` None or the hop (`frame_length`
    times the product of the strides), and `causal` None means True.

    Example: `speech_args(1, None, (4, 5, 8), None, 8000)` is `(160, True)`.
    """
    if sample_rate is not None:
        check_int("sample_rate", sample_rate, minimum=1)
    frame_length = check_int("frame_length", frame_length, minimum=1, maximum=4096)
    if strides is None:
        if frame_length != 1:
            raise ValueError(f"frame_length needs the speech network (strides=...); received {frame_length}.")
        if causal:
            raise ValueError(f"causal=True needs the speech network (strides=...); received causal={causal!r}.")
        return (4 if downsample is None else downsample), False
    if rank != 1:
        raise ValueError(f"strides are for the rank-1 speech network; received rank={rank!r}.")
    strides = check_strides(strides)
    hop = frame_length * int(np.prod(strides))
    if downsample is not None and downsample != hop:
        what = f"strides {list(strides)}" + (f" times frame_length {frame_length}" if frame_length != 1 else "")
        raise ValueError(f"downsample must be the product of {what} ({hop}) or None; received {downsample!r}.")
    return hop, (True if causal is None else bool(causal))


def networks_for(model, data_variance):
    """`(encoder class, decoder class, their shared keyword arguments)` for `model`'s attributes.

    The paper's `Encoder` / `Decoder` when `model.strides` is None, else the
    speech network (`SpeechEncoder` / `SpeechDecoder`) with `signal_rms =
    sqrt(data_variance)`. Both take `code_dim=` / `output_channels=` beside
    these arguments.
    """
    if model.strides is None:
        return Encoder, Decoder, dict(model._stack_config(), rank=model.rank, dtype=model.dtype_policy)
    stack = dict(strides=model.strides, hidden_units=model.hidden_units, num_residual_blocks=model.num_residual_blocks)
    stack.update(causal=model.causal, signal_rms=float(np.sqrt(data_variance)), dtype=model.dtype_policy)
    if getattr(model, "frame_length", 1) != 1:  # VQVAE(frame_length=F); GaussianVAE has no such argument
        stack["frame_length"] = model.frame_length
    return SpeechEncoder, SpeechDecoder, stack


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

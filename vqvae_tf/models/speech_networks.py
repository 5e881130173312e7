"""A waveform encoder and decoder with large strides, for speech codecs.

In the style of SoundStream (Zeghidour et al. 2021, arXiv:2107.03312) and
EnCodec (Defossez et al. 2022, arXiv:2210.13438), smaller. Encoder: a
kernel-7 convolution to `hidden_units` channels, then per stride `s` a stage
of dilated residual units (`num_residual_blocks` of them, dilations 1, 3,
9, ...) and an ELU with a strided convolution of kernel `2 s` that doubles
the channels; an ELU and a kernel-3 projection to `code_dim`. Strides
(2, 4, 5, 8) give one code frame per 320 samples: 50 frames per second at
16 kHz. The decoder mirrors it with nearest-neighbour upsampling followed by
a kernel-`2 s` convolution (no transposed-convolution op in exported
graphs: RESHAPE, BROADCAST_TO and CONV_2D in TFLite), and ends with a
kernel-7 convolution to the output channels, linear.

Trainability (measured on LJ Speech, 16 kHz, batch 16 of 0.5 s crops): with
plain residual units `x + f(x)` the stack could not even overfit one batch
in 200 Adam steps (its output collapsed to near silence); each unit now
scales its branch by a per-channel `gate` that starts at 0 (ReZero, Bachlechner
et al. 2020, arXiv:2003.04887), so training starts from the plain strided
network, which reached 6 dB SNR in 400 steps, and the units grow in. The
waveform is divided by `signal_rms` on the way in and multiplied by it on
the way out (speech sits near 0.06 RMS in [-1, 1]: unit-scale activations
inside), and the last convolution starts small, so the first output is near
silence rather than 10x louder than the input.

`causal=True` pads every convolution on the left only: an output sample
never depends on a later input sample beyond the current code frame, so the
codec can stream with `algorithmic_latency` samples of delay (one hop).
`receptive_field` and `algorithmic_latency` are computed exactly from the
layer list by interval arithmetic (`time_reach`); tests check them against
the networks' actual dependence on perturbed inputs.
"""

import math

import keras

from vqvae_tf.models.speech_layers import FramesToSamples, PaddedConv1D, ResidualUnit1D, Upsample1D
from vqvae_tf.utils.checks import check_bool, check_int, check_number

# The layers are re-exported: they were defined here before speech_layers existed.
__all__ = [
    "DILATION_BASE",
    "FramesToSamples",
    "PaddedConv1D",
    "ResidualUnit1D",
    "SpeechDecoder",
    "SpeechEncoder",
    "Upsample1D",
    "check_strides",
    "time_reach",
]

#: Dilations of the residual units of a stage: 1, 3, 9, ... (SoundStream).
DILATION_BASE = 3


def check_strides(strides):
    """`strides` as a tuple of ints in 2..16; a `ValueError` naming what was received otherwise."""
    if isinstance(strides, (str, bytes)) or not hasattr(strides, "__iter__"):
        raise ValueError(f"strides must be a sequence of ints in 2..16, e.g. (2, 4, 5, 8); received {strides!r}.")
    strides = tuple(strides)
    if not strides:
        raise ValueError("strides must hold at least one stride, e.g. (2, 4, 5, 8); received ().")
    return tuple(check_int("strides", s, minimum=2, maximum=16) for s in strides)


class _SpeechStack(keras.layers.Layer):
    """Arguments, config and time analysis shared by `SpeechEncoder` and `SpeechDecoder`."""

    def __init__(
        self,
        strides=(2, 4, 5, 8),
        hidden_units=16,
        num_residual_blocks=3,
        causal=True,
        signal_rms=1.0,
        frame_length=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.frame_length = check_int("frame_length", frame_length, minimum=1, maximum=4096)
        self.signal_rms = check_number("signal_rms", signal_rms, minimum=0, inclusive_min=False)
        self.strides = check_strides(strides)
        self.hidden_units = check_int("hidden_units", hidden_units, minimum=1)
        self.num_residual_blocks = check_int("num_residual_blocks", num_residual_blocks, minimum=0)
        self.causal = check_bool("causal", causal)
        self.hop = self.frame_length * math.prod(self.strides)
        # (layer index, channels) where `call(..., stage_film=...)` modulates: each decoder stage's input.
        self.film_points = []

    def _units(self, filters, prefix):
        return [
            ResidualUnit1D(filters, DILATION_BASE**j, self.causal, name=f"{prefix}_unit{j}", dtype=self.dtype_policy)
            for j in range(self.num_residual_blocks)
        ]

    def _conv(self, filters, kernel, name, strides=1, **kwargs):
        return PaddedConv1D(filters, kernel, strides, causal=self.causal, name=name, dtype=self.dtype_policy, **kwargs)

    def _check_input(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects inputs shaped (batch, steps, channels); "
                f"received shape {tuple(input_shape)}."
            )

    def build(self, input_shape):
        self._check_input(input_shape)
        shape = tuple(input_shape)
        for layer in self.sequence:
            layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))

    def call(self, inputs, stage_film=None):
        """`stage_film`: None, or one `(scale, shift)` pair of `(batch, channels)` per `film_points` entry.

        With it, the input `x` of each such layer becomes `x * (1 + scale) + shift` (FiLM, Perez et
        al. 2018, arXiv:1709.07871): how `VQVAE(speaker_conditioning="stages")` conditions its decoder.
        """
        x = inputs
        if self.input_gain != 1.0:
            x = x * keras.ops.cast(self.input_gain, x.dtype)
        film = {} if stage_film is None else dict(zip([i for i, _ in self.film_points], stage_film))
        for i, layer in enumerate(self.sequence):
            if i in film:
                scale, shift = (keras.ops.cast(v, x.dtype)[:, None, :] for v in film[i])
                x = x * (1.0 + scale) + shift
            x = layer(keras.ops.elu(x) if i in self.activated else x)
        if self.output_gain != 1.0:
            x = x * keras.ops.cast(self.output_gain, x.dtype)
        return x

    def time_ops(self):
        """The layers' time operations in call order: `("conv", k, s, d, left_pad)` and `("up", s)`."""
        return [layer.time_op() for layer in self.sequence]

    def get_config(self):
        config = super().get_config()
        config.update(
            strides=list(self.strides),
            hidden_units=self.hidden_units,
            num_residual_blocks=self.num_residual_blocks,
            causal=self.causal,
            signal_rms=self.signal_rms,
        )
        if self.frame_length != 1:  # written only when set: earlier configs stay as they were
            config["frame_length"] = self.frame_length
        return config


_SPEECH_ARGS = """
    Args:
        strides: sequence of ints in 2..16, the stride of each stage; their
            product is the hop (samples per code frame). Defaults to
            (2, 4, 5, 8): 320 samples, 50 frames per second at 16 kHz.
        hidden_units: int, channels of the first stage; each stride doubles
            them (16 gives 32, 64, 128, 256). Defaults to 16.
        num_residual_blocks: int, dilated residual units per stage
            (dilations 1, 3, 9, ...). Defaults to 3.
        causal: bool, left-only padding (streamable). Defaults to True.
        signal_rms: float > 0, the typical RMS of the waveform: the encoder
            divides its input by it and the decoder multiplies its output by
            it, so activations are near unit scale. `VQVAE` passes the
            square root of its `data_variance`. Defaults to 1.0.
        frame_length: int >= 1. 1: the stack starts (encoder) and ends
            (decoder) at the sample rate. F > 1: the encoder's first layer
            reads the waveform in frames of F samples, two at a time (a
            convolution of kernel 2F and stride F), the decoder's last
            layer writes two-frame windows that overlap-add
            (`FramesToSamples`), and every other layer runs at the frame
            rate or below: the hop is `F * prod(strides)`. Defaults to 1.
"""


@keras.saving.register_keras_serializable(package="vqvae_tf")
class SpeechEncoder(_SpeechStack):
    __doc__ = (
        """Waveform to `code_dim` vectors, one per `hop` samples.
"""
        + _SPEECH_ARGS
        + """        code_dim: int, channels of the output (the quantizer's D).
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape: `(batch, T, C)` with T divisible by `hop`.
    Output shape: `(batch, T / hop, code_dim)`.

    Example:

    >>> encoder = SpeechEncoder(strides=(4, 5), hidden_units=4, code_dim=8)
    >>> encoder(np.zeros((1, 400, 1), "float32")).shape
    TensorShape([1, 20, 8])
    """
    )

    def __init__(
        self,
        strides=(2, 4, 5, 8),
        hidden_units=16,
        num_residual_blocks=3,
        code_dim=64,
        causal=True,
        signal_rms=1.0,
        frame_length=1,
        **kw,
    ):
        super().__init__(strides, hidden_units, num_residual_blocks, causal, signal_rms, frame_length, **kw)
        self.code_dim = check_int("code_dim", code_dim, minimum=1)
        self.input_gain, self.output_gain = 1.0 / self.signal_rms, 1.0
        width = hidden_units
        if self.frame_length == 1:
            self.sequence = [self._conv(width, 7, "conv_in")]
        else:
            # Two frames per window, one window per frame: the rest runs at the frame rate.
            frame = self.frame_length
            self.sequence = [self._conv(width, 2 * frame, "frames_in", strides=frame)]
        self.activated = set()  # indices of layers whose input goes through an ELU first
        for i, stride in enumerate(self.strides):
            self.sequence += self._units(width, f"stage{i}")
            width *= 2
            self.activated.add(len(self.sequence))
            self.sequence.append(self._conv(width, 2 * stride, f"down{i}", strides=stride))
        self.activated.add(len(self.sequence))
        self.sequence.append(self._conv(code_dim, 3, "project"))

    def compute_output_shape(self, input_shape):
        steps = None if input_shape[1] is None else input_shape[1] // self.hop
        return (input_shape[0], steps, self.code_dim)

    def get_config(self):
        config = super().get_config()
        config["code_dim"] = self.code_dim
        return config


@keras.saving.register_keras_serializable(package="vqvae_tf")
class SpeechDecoder(_SpeechStack):
    __doc__ = (
        """`code_dim` vectors back to a waveform, the mirror of `SpeechEncoder`.
"""
        + _SPEECH_ARGS
        + """        output_channels: int, channels of the waveform. Defaults to 1.
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape: `(batch, t, code_dim)`.
    Output shape: `(batch, t * hop, output_channels)`, linear.

    Example:

    >>> decoder = SpeechDecoder(strides=(4, 5), hidden_units=4)
    >>> decoder(np.zeros((1, 20, 8), "float32")).shape
    TensorShape([1, 400, 1])
    """
    )

    def __init__(
        self,
        strides=(2, 4, 5, 8),
        hidden_units=16,
        num_residual_blocks=3,
        output_channels=1,
        causal=True,
        signal_rms=1.0,
        frame_length=1,
        **kw,
    ):
        super().__init__(strides, hidden_units, num_residual_blocks, causal, signal_rms, frame_length, **kw)
        self.output_channels = check_int("output_channels", output_channels, minimum=1)
        self.input_gain, self.output_gain = 1.0, self.signal_rms
        width = hidden_units * 2 ** len(self.strides)
        self.sequence = [self._conv(width, 7, "conv_in")]
        self.activated = set()
        for i, stride in reversed(list(enumerate(self.strides))):
            self.film_points.append((len(self.sequence), width))
            width //= 2
            self.activated.add(len(self.sequence))
            self.sequence.append(Upsample1D(stride, name=f"repeat{i}", dtype=self.dtype_policy))
            self.sequence.append(self._conv(width, 2 * stride, f"up{i}"))
            self.sequence += self._units(width, f"stage{i}")
        self.activated.add(len(self.sequence))
        # Starts 100x smaller than Glorot: the first output is near silence.
        small = keras.initializers.VarianceScaling(scale=1e-4, mode="fan_avg", distribution="uniform")
        if self.frame_length == 1:
            self.sequence.append(self._conv(output_channels, 7, "conv_out", kernel_initializer=small))
        else:
            # The transposed convolution of kernel 2F, stride F, as a kernel-2 convolution to F samples per
            # frame unfolded by a reshape (cheap at the frame rate, builtins only in TFLite and ONNX).
            frame = self.frame_length
            self.sequence.append(self._conv(output_channels * frame, 2, "frames_out", kernel_initializer=small))
            self.sequence.append(FramesToSamples(frame, name="to_samples", dtype=self.dtype_policy))

    def compute_output_shape(self, input_shape):
        steps = None if input_shape[1] is None else input_shape[1] * self.hop
        return (input_shape[0], steps, self.output_channels)

    def get_config(self):
        config = super().get_config()
        config["output_channels"] = self.output_channels
        return config


def time_reach(encoder_ops, decoder_ops, hop):
    """(receptive_field, algorithmic_latency) in samples of an encoder-decoder pair.

    For each output sample `n` of one hop (far from the clip's edges, where
    every sample behaves the same), walks the decoder and then the encoder
    backwards to the interval `[a(n), b(n)]` of input samples that `n`
    depends on. The receptive field is the widest `b - a + 1`; the
    algorithmic latency is `max(b(n) - n) + 1`: the samples that must have
    arrived, sample `n` included, before output sample `n` can be computed
    (one hop for a causal model, ignoring computation time).
    """
    ops = list(reversed(list(encoder_ops) + list(decoder_ops)))
    widest, latency = 0, 0
    origin = 1000 * hop
    for n in range(origin, origin + hop):
        lo, hi = n, n
        for op in ops:
            if op[0] == "up":
                lo, hi = lo // op[1], hi // op[1]
            else:
                _, kernel, stride, dilation, left = op
                lo, hi = lo * stride - left, hi * stride - left + dilation * (kernel - 1)
        widest, latency = max(widest, hi - lo + 1), max(latency, hi - n + 1)
    return widest, latency

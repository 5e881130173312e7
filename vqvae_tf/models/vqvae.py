"""`VQVAE`: encoder, vector quantizer and decoder as one `keras.Model`."""

import logging

import keras
import numpy as np
import tensorflow as tf

from vqvae_tf.models.audio_losses import AUDIO_LOSSES, audio_loss
from vqvae_tf.models.float32 import float32_copy  # noqa: F401  (public here since 0.1)
from vqvae_tf.models.image_inputs import ImageInputsMixin, networks_for, speech_args
from vqvae_tf.models.metrics import DeadCodes, si_snr
from vqvae_tf.models.speaker import SpeakerInputsMixin
from vqvae_tf.models.speech_networks import check_strides, time_reach
from vqvae_tf.quantizers.registry import QUANTIZERS, get_quantizer
from vqvae_tf.utils import distributed_ops
from vqvae_tf.utils.checks import check_choice, check_int, check_number

logger = logging.getLogger(__name__)

# Batches of encoder outputs used for k-means codebook initialisation.
KMEANS_INIT_BATCHES = 4

#: `reconstruction_loss` choices: "mse" (squared error / data_variance, the
#: paper's), "stft" (that plus multi-resolution STFT, for audio) and
#: "stft_mel" (plus log-mel too; `vqvae_tf.models.audio_losses`).
RECONSTRUCTION_LOSSES = ("mse", "stft", "stft_mel")


@keras.saving.register_keras_serializable(package="vqvae_tf")
class VQVAE(SpeakerInputsMixin, ImageInputsMixin, keras.Model):
    """Vector-quantised variational autoencoder (van den Oord et al. 2017).

    `call(x)` reconstructs `x`; `codes(x)` gives int32 code maps and
    `decode_codes(codes)` reconstructs from them. Training minimises

        ||x - x_hat||^2 / data_variance + codebook loss + beta * commitment loss

    (means over elements) through the straight-through estimator. The loss is
    divided by the number of replicas before the gradient, so training under
    any `tf.distribute` strategy matches one device at the same global batch.

    Args:
        input_channels: int, channels of the data (3 for RGB, 1 for gray).
            Defaults to 3.
        downsample: int in (2, 4, 8, 16), spatial reduction from data to
            code map; with `strides`, their product (None: 4, or the
            product of `strides`). Defaults to None.
        hidden_units: int, channels of the convolutions. Defaults to 256.
        residual_units: int, channels inside residual blocks. Defaults to 256.
        num_residual_blocks: int. Defaults to 2.
        num_codes: int, codebook size K. Defaults to 512.
        code_dim: int, code vector size D. Defaults to 64.
        quantizer: str, a name from `vqvae_tf.quantizers.registry.QUANTIZERS`
            (`"vq"`, `"ema"`, `"residual"`, `"fsq"`, `"gumbel"`). Defaults
            to `"ema"`. Residual quantizers give code maps with a trailing
            stage axis (`quantizer.code_shape`).
        quantizer_config: dict or None, extra arguments of the quantizer
            (`commitment_cost`, `decay`, `kmeans_init`,
            `dead_code_threshold`, `l2_normalize`, `seed`, ...).
        data_variance: float, variance of the training data; the
            reconstruction loss is divided by it, as in the paper. Defaults
            to 1.0 (plain MSE).
        rank: 2 for images (NHWC), 1 for sequences (NWC). Defaults to 2.
        reconstruction_loss: `"mse"` (the squared error divided by
            `data_variance`, as in the paper) or `"stft"` (that term plus a
            multi-resolution log-magnitude STFT loss,
            `vqvae_tf.models.audio_losses.waveform_stft_loss`; rank 1, for
            audio) or `"stft_mel"` (plus log-mel L1 at `sample_rate`, 16
            kHz when None; audio). Defaults to `"mse"`.
        strides: None (the paper's network) or, for rank 1, a sequence of
            strides of the speech network
            (`vqvae_tf.models.speech_networks.SpeechEncoder`): (2, 4, 5, 8)
            is a 320-sample hop, 50 code frames per second at 16 kHz.
            `hidden_units` is then its first stage's width (doubled by each
            stride), `num_residual_blocks` its dilated units per stage;
            `residual_units` is unused. Defaults to None.
        causal: with `strides`: left-only padding, so the model can stream
            (`algorithmic_latency`); None means True. Only None or False
            without `strides` (the paper's network is not causal).
        sample_rate: int or None, the audio rate in Hz, stored with the
            model to give `latency_ms`. Defaults to None.
        frame_length: int, with `strides`: samples per frame of the speech
            network's first and last layers (`SpeechEncoder`); the hop is
            `frame_length * prod(strides)`. Defaults to 1.
        num_speakers: int or None, speakers of a speaker-conditioned
            decoder (`vqvae_tf.models.speaker`): the model then takes
            `(waveform, speaker_id)` inputs and its decoder adds a learned
            vector per speaker to every code frame; `decode_codes(codes,
            speaker=...)` decodes any codes as any speaker (voice
            conversion). None (the default) is the unconditioned model.
        speaker_dim: int or None, the speaker embedding's size (projected
            to `code_dim`); None means `code_dim`. Needs `num_speakers`.
        speaker_conditioning: "input" (the default: the speaker vector is
            added to the decoder's input frames) or "stages" (also a FiLM
            scale and shift per speaker at each decoder stage; speech
            network only).
        **kwargs: base `keras.Model` arguments (`name`, `dtype`).

    Call arguments:
        inputs: float images `(batch, H, W, input_channels)` in [0, 1], H and
            W divisible by `downsample` (or `(batch, T, C)` when rank=1).
        training: bool, whether the quantizer updates its state.

    Input shape: `(batch, H, W, input_channels)`, e.g. `(8, 32, 32, 3)`;
        with `num_speakers`, a pair `(waveform, speaker_id)` with ids
        `(batch,)` int in `[0, num_speakers)` (or a dict with keys
        "waveform" and "speaker"). `fit` reads batches `((x, ids), ...)`
        or `(x, ids)`, as an audio dataset with speaker labels yields them.
    Output shape: same as the input; code maps are
        `(batch, H / downsample, W / downsample)` int32.

    Metrics: `loss`, `reconstruction_loss`, `vq_loss`, `perplexity` (batch),
    `codebook_usage` (fraction of codes used in a batch), `dead_codes`
    (codes not used at all so far in the epoch) and `psnr` (dB, data range
    [0, 1]); rank-1 models add `si_snr` (dB, scale-invariant SNR per clip,
    `vqvae_tf.models.metrics.si_snr`).

    Example:

    >>> model = VQVAE(input_channels=3, downsample=4, hidden_units=32,
    ...               residual_units=16, num_codes=64, code_dim=16)
    >>> model.compile(optimizer=keras.optimizers.Adam(3e-4))
    >>> images = np.random.rand(16, 32, 32, 3).astype("float32")
    >>> history = model.fit(images, batch_size=8, epochs=1, verbose=0)
    >>> codes = model.codes(images[:2])            # (2, 8, 8) int32
    >>> images_back = model.decode_codes(codes)    # (2, 32, 32, 3)

    References:
        van den Oord, Vinyals, Kavukcuoglu. Neural Discrete Representation
        Learning. NeurIPS 2017. arXiv:1711.00937.
    """

    def __init__(
        self,
        input_channels=3,
        downsample=None,
        hidden_units=256,
        residual_units=256,
        num_residual_blocks=2,
        num_codes=512,
        code_dim=64,
        quantizer="ema",
        quantizer_config=None,
        data_variance=1.0,
        rank=2,
        reconstruction_loss="mse",
        strides=None,
        causal=None,
        sample_rate=None,
        num_speakers=None,
        speaker_dim=None,
        speaker_conditioning="input",
        frame_length=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        downsample, causal = speech_args(rank, downsample, strides, causal, sample_rate, frame_length)
        check_int("input_channels", input_channels, minimum=1)
        check_choice("reconstruction_loss", reconstruction_loss, RECONSTRUCTION_LOSSES)
        if reconstruction_loss in AUDIO_LOSSES and rank != 1:
            raise ValueError(f"reconstruction_loss={reconstruction_loss!r} is for audio (rank=1); received {rank=}.")
        if quantizer not in QUANTIZERS:
            raise ValueError(f"Unknown quantizer {quantizer!r}; expected one of {sorted(QUANTIZERS)}.")
        if quantizer_config is not None and not isinstance(quantizer_config, dict):
            raise ValueError(f"`quantizer_config` must be a dict or None; received {quantizer_config!r}.")
        data_variance = check_number("data_variance", data_variance, minimum=0, inclusive_min=False)
        self.input_channels = input_channels
        self.downsample = downsample
        self.hidden_units = hidden_units
        self.residual_units = residual_units
        self.num_residual_blocks = num_residual_blocks
        self.num_codes = num_codes
        self.code_dim = code_dim
        self.quantizer_name = quantizer
        self.quantizer_config = dict(quantizer_config or {})
        self.data_variance = data_variance
        self.rank = rank
        self.reconstruction_loss = reconstruction_loss
        self.strides = None if strides is None else check_strides(strides)
        self.causal = causal
        self.sample_rate = sample_rate
        self.frame_length = int(frame_length)
        encoder, decoder, stack = networks_for(self, data_variance)
        # Encoder, quantizer, decoder, in this order: Keras orders the
        # variables (and a saved optimizer's slots) by attribute assignment,
        # so another order breaks loading `.keras` files saved with their
        # optimizer by earlier versions.
        self.encoder = encoder(code_dim=code_dim, name="encoder", **stack)
        self.quantizer = get_quantizer(
            quantizer, num_codes=num_codes, code_dim=code_dim, name="quantizer", **self.quantizer_config
        )
        self.decoder = decoder(output_channels=input_channels, name="decoder", **stack)
        self._init_speakers(num_speakers, speaker_dim, speaker_conditioning, code_dim)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.vq_loss_tracker = keras.metrics.Mean(name="vq_loss")
        self.perplexity_tracker = keras.metrics.Mean(name="perplexity")
        self.usage_tracker = keras.metrics.Mean(name="codebook_usage")
        self.dead_codes_tracker = DeadCodes(num_codes, name="dead_codes")
        self.psnr_tracker = keras.metrics.Mean(name="psnr")
        self.si_snr_tracker = keras.metrics.Mean(name="si_snr") if rank == 1 else None

    # ---------------------------------------------------------- time reach
    @property
    def receptive_field(self):
        """Input samples that one output sample depends on (speech network; None otherwise)."""
        return self._time_reach()[0]

    @property
    def algorithmic_latency(self):
        """Samples to buffer before an output sample can be computed, it included (speech network; else None).

        One hop (`downsample`) for a causal model; more without `causal`.
        Computed by `vqvae_tf.models.speech_networks.time_reach`.
        """
        return self._time_reach()[1]

    @property
    def latency_ms(self):
        """`algorithmic_latency` in milliseconds at `sample_rate` (None without either)."""
        latency = self.algorithmic_latency
        if latency is None or self.sample_rate is None:
            return None
        return 1000.0 * latency / self.sample_rate

    def _time_reach(self):
        if self.strides is None:
            return None, None
        return time_reach(self.encoder.time_ops(), self.decoder.time_ops(), self.downsample)

    # ------------------------------------------------------------ building
    def build(self, input_shape):
        input_shape = self._waveform_shape(input_shape)
        self._check_shape(input_shape)
        latent_shape = self.encoder.compute_output_shape(input_shape)
        # Sub-layers may already be built by a train_step that ran before
        # the model itself was marked built.
        for layer, shape in ((self.encoder, input_shape), (self.quantizer, latent_shape), (self.decoder, latent_shape)):
            if not layer.built:
                layer.build(shape)
        for layer in (self.speaker_embedding, self.speaker_film):
            if layer is not None and not layer.built:
                layer.build((input_shape[0],))

    def compute_output_shape(self, input_shape):
        return self._waveform_shape(input_shape)

    # ------------------------------------------------------------- presets
    @classmethod
    def list_presets(cls):
        """{name: description dict} of the pretrained VQ-VAEs shipped with the package."""
        from vqvae_tf.models import presets

        return {name: meta for name, meta in presets.list_presets().items() if meta["class_name"] == cls.__name__}

    @classmethod
    def from_preset(cls, preset):
        """A pretrained model: a shipped preset's name (`list_presets()`) or a `save_to_preset` directory."""
        from vqvae_tf.models import presets

        return presets.load_preset(preset, cls)

    def save_to_preset(self, directory, **options):
        """Writes this model as a preset that `from_preset(directory)` loads (options: `presets.save_preset`'s)."""
        from vqvae_tf.models import presets

        return presets.save_preset(self, directory, **options)

    def latent_shape(self, input_shape):
        """Shape of the code map for data of `input_shape` (without channels)."""
        return tuple(self.encoder.compute_output_shape(tuple(input_shape)))[:-1]

    # ------------------------------------------------------------- forward
    def call(self, inputs, training=None):
        reconstruction, _ = self.forward(inputs, training=training)
        return reconstruction

    def forward(self, inputs, training=None):
        """Reconstruction and the quantizer's output dict (see `VectorQuantizer`)."""
        inputs, speaker = self._split_speaker(inputs)
        self._check_inputs(inputs)
        if not self.built:
            # train_step runs forward() without Model.__call__, which would
            # otherwise leave the model unbuilt and unsaveable after fit.
            self.build(tuple(inputs.shape))
        latents = self.encoder(inputs, training=training)
        quantized = self.quantizer(latents, training=training)
        return self._decode(quantized["quantized"], speaker, training=training), quantized

    def codes(self, inputs):
        """int32 code maps `(batch, H / downsample, W / downsample)` for images (of the waveform alone)."""
        inputs = self._waveform_of(inputs)
        self._check_inputs(inputs)
        if not self.built:
            self.build(tuple(inputs.shape))
        return self.quantizer.codes(self.encoder(inputs))

    def decode_codes(self, codes, speaker=None):
        """Reconstructions from int code maps, `(batch, H, W, input_channels)`, as `speaker` if conditioned.

        `speaker`: an int id or `(batch,)` ids; required with `num_speakers`, refused without.
        """
        codes = tf.convert_to_tensor(codes)
        # Quantizers with several codes per position (residual stages) add
        # trailing axes: `quantizer.code_shape`, () for one code per position.
        code_axes = len(getattr(self.quantizer, "code_shape", ()))
        if codes.shape.rank is not None and codes.shape.rank != self.rank + 1 + code_axes:
            extra = f" + {code_axes} code axis" if code_axes else ""
            raise ValueError(
                f"decode_codes expects code maps of rank {self.rank + 1 + code_axes} "
                f"(batch + {self.rank} spatial axes{extra}); received shape {tuple(codes.shape)}."
            )
        vectors = self.quantizer.lookup(codes)
        return self._decode(tf.cast(vectors, self.compute_dtype), speaker)

    # ------------------------------------------------------------ training
    def train_step(self, data):
        inputs = self._unpack(data)
        x = self._waveform_of(inputs)
        with tf.GradientTape() as tape:
            reconstruction, quantized = self.forward(inputs, training=True)
            reconstruction_loss, loss = self._loss_terms(x, reconstruction, quantized)
            # Keras sums gradients over replicas (docs/design.md, fact 5): divide so
            # that the step equals one device's at the same global batch.
            scaled = loss / distributed_ops.num_replicas()
            scaled = self.optimizer.scale_loss(scaled)
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        return self._update_metrics(x, reconstruction, quantized, reconstruction_loss, loss)

    def test_step(self, data):
        inputs = self._unpack(data)
        x = self._waveform_of(inputs)
        reconstruction, quantized = self.forward(inputs, training=False)
        reconstruction_loss, loss = self._loss_terms(x, reconstruction, quantized)
        return self._update_metrics(x, reconstruction, quantized, reconstruction_loss, loss)

    def fit(self, x=None, y=None, **kwargs):
        """`keras.Model.fit`, after k-means codebook initialisation if asked.

        With `quantizer_config={"kmeans_init": True}` the first fit runs the
        encoder on the first batches of `x` and sets the codebook to k-means
        centres of the outputs (outside the replica context, so every replica
        gets the same codebook).
        """
        if getattr(self.quantizer, "kmeans_init", False) and not self._codebook_initialized():
            self.initialize_codebook(x, batch_size=kwargs.get("batch_size"))
        return super().fit(x, y, **kwargs)

    def initialize_codebook(self, data, batch_size=None, num_batches=KMEANS_INIT_BATCHES):
        """k-means initialisation of the codebook from encoder outputs of `data`.

        Args:
            data: a `tf.data.Dataset` of images (or `(images, ...)` tuples),
                or an array of images.
            batch_size: batch size when `data` is an array (default 32).
            num_batches: batches of a dataset to use.
        """
        if isinstance(data, tf.data.Dataset):
            batches = [self._waveform_of(self._unpack(batch)) for batch in data.take(num_batches)]
        elif data is not None:
            array = np.asarray(self._waveform_of(data))
            size = (batch_size or 32) * num_batches
            batches = [array[:size]]
        else:
            batches = []
        if not batches:
            raise ValueError("k-means codebook initialisation needs training data; received no batches.")
        # Variables must be created under the model's strategy, and the
        # codebook assigned in cross-replica context (one value, every replica).
        with self.distribute_strategy.scope():
            if not self.built:
                self.build(tuple(batches[0].shape))
            latents = [tf.reshape(self.encoder(b, training=False), [-1, self.code_dim]) for b in batches]
            self.quantizer.initialize_codebook(tf.concat(latents, axis=0))
        logger.info(
            "Initialised the %d-code codebook by k-means on %d vectors.",
            self.num_codes,
            sum(int(latent.shape[0]) for latent in latents),
        )

    def _codebook_initialized(self):
        return self.built and bool(self.quantizer.initialized.numpy())

    # ------------------------------------------------------------- metrics
    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.reconstruction_tracker,
            self.vq_loss_tracker,
            self.perplexity_tracker,
            self.usage_tracker,
            self.dead_codes_tracker,
            self.psnr_tracker,
        ] + ([self.si_snr_tracker] if self.si_snr_tracker is not None else [])

    def _loss_terms(self, x, reconstruction, quantized):
        # A mean over this replica's batch; train_step divides the total by
        # the replica count (docs/design.md, fact 5), whichever loss it is.
        if self.reconstruction_loss in AUDIO_LOSSES:
            name, variance = self.reconstruction_loss, self.data_variance
            reconstruction_loss = audio_loss(name, x, reconstruction, variance, self.sample_rate)
            return reconstruction_loss, reconstruction_loss + quantized["loss"]
        error = tf.square(tf.cast(x, tf.float32) - tf.cast(reconstruction, tf.float32))
        reconstruction_loss = tf.reduce_mean(error) / self.data_variance
        return reconstruction_loss, reconstruction_loss + quantized["loss"]

    def _update_metrics(self, x, reconstruction, quantized, reconstruction_loss, loss):
        batch = tf.cast(tf.shape(x)[0], tf.float32)
        self.loss_tracker.update_state(loss, sample_weight=batch)
        self.reconstruction_tracker.update_state(reconstruction_loss, sample_weight=batch)
        self.vq_loss_tracker.update_state(quantized["loss"], sample_weight=batch)
        self.perplexity_tracker.update_state(quantized["perplexity"], sample_weight=batch)
        self.usage_tracker.update_state(quantized["usage"], sample_weight=batch)
        self.dead_codes_tracker.update_state(quantized["counts"])
        error = tf.square(tf.cast(x, tf.float32) - tf.cast(reconstruction, tf.float32))
        mse = tf.reduce_mean(tf.reshape(error, [tf.shape(x)[0], -1]), axis=1)
        self.psnr_tracker.update_state(10.0 * tf.math.log(1.0 / tf.maximum(mse, 1e-10)) / tf.math.log(10.0))
        if self.si_snr_tracker is not None:
            self.si_snr_tracker.update_state(si_snr(x, reconstruction))
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        config = super().get_config()
        config.update(
            input_channels=self.input_channels,
            **self._stack_config(),
            num_codes=self.num_codes,
            code_dim=self.code_dim,
            quantizer=self.quantizer_name,
            quantizer_config=self.quantizer_config,
            data_variance=self.data_variance,
            rank=self.rank,
        )
        # Written only when not the default: the configs (and so the model
        # ids, utils.fingerprint) of every "mse" model stay what they were.
        if self.reconstruction_loss != "mse":
            config["reconstruction_loss"] = self.reconstruction_loss
        if self.strides is not None:
            config.update(strides=list(self.strides), causal=self.causal)
        if self.frame_length != 1:
            config["frame_length"] = self.frame_length
        if self.sample_rate is not None:
            config["sample_rate"] = self.sample_rate
        return config | self._speaker_config()

    def _unpack(self, data):
        return self._unpack_speaker(data, super()._unpack)

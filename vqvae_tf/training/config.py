"""`TrainConfig`: every setting of a training run, validated, as JSON.

The defaults are the product's main job: `python train.py` with no arguments
trains the default model on the embedded `photos` dataset within about ten
minutes on two CPU cores, then exports it. They were chosen by measuring the
validation PSNR on the held-out photos (see the README).

A run's workdir keeps its resolved config in `config.json`. Resuming checks
the saved config against the new one: only the fields in `RESUMABLE_FIELDS`
may differ (more epochs, another strategy, export settings, ...); any other
difference (architecture, quantizer, data, batch, learning-rate schedule)
would make the backup describe a different experiment, so it is refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from vqvae_tf.data.audio import validation_list_file
from vqvae_tf.data.wav import MAX_RATE, MIN_RATE
from vqvae_tf.export.api import FORMATS as EXPORT_FORMATS
from vqvae_tf.export.api import QUANTIZATIONS as EXPORT_QUANTIZATIONS
from vqvae_tf.models.audio_losses import AUDIO_LOSSES
from vqvae_tf.models.networks import DOWNSAMPLE_FACTORS as DOWNSAMPLE
from vqvae_tf.models.speech_networks import check_strides
from vqvae_tf.models.vqvae import RECONSTRUCTION_LOSSES
from vqvae_tf.quantizers import QUANTIZERS as _QUANTIZER_REGISTRY
from vqvae_tf.training.distribute import STRATEGIES
from vqvae_tf.utils.atomic import write_bytes
from vqvae_tf.utils.checks import check_choice, check_int, check_known_fields, check_number

# Each list of names comes from the module that implements the names (the
# flags of train.py are these lists); only the config's own choices are here.
QUANTIZERS = tuple(_QUANTIZER_REGISTRY)
LR_SCHEDULES = ("constant", "cosine")
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16", "auto")
#: "auto" resolves to "mse" for images and to `AUDIO_AUTO_LOSS` for audio (docs/training.md).
RECONSTRUCTION_LOSS_CHOICES = ("auto", *RECONSTRUCTION_LOSSES)
#: What `reconstruction_loss="auto"` means for audio: the loss that measured
#: best on held-out LJ Speech at the full training budget (docs/training.md).
AUDIO_AUTO_LOSS = "stft_mel"
#: The dataset scheme whose runs build a rank-1 (waveform) model.
AUDIO_SCHEME = "audio"

#: Fields that may change between a run and its resumption: they change how
#: long or where training runs and what happens afterwards, not what the
#: saved weights and optimizer state mean.
RESUMABLE_FIELDS = frozenset(
    {
        "epochs",
        "max_minutes",
        "validation_steps",
        "strategy",
        "jit_compile",
        "export",
        "export_formats",
        "export_quantizations",
        "num_samples",
        "verbose",
    }
)


class ConfigError(ValueError):
    """A training setting out of range, or a workdir whose run does not match."""


# Fields added after the first release, with the value older config files
# implied (their runs were made without the feature).
# The audio fields (sample_rate, crop_length, validation_list,
# label_pattern) need no entry: their defaults are what image runs, the only
# runs before them, meant. reconstruction_loss was the squared error.
_VALUES_BEFORE_THE_FIELD_EXISTED = {"lookup_dim": 0, "augment": False, "reconstruction_loss": "mse"}


@dataclasses.dataclass
class TrainConfig:
    """Settings of one training run (see `train.py --help` for each flag).

    Attributes:
        dataset: a `vqvae_tf.data.datasets.make_datasets` spec. Defaults to "photos".
        validation_dataset: a separate validation source, `folder:DIR`
            (`make_datasets(validation_spec=...)`), instead of the
            dataset's own split; None (default, and in config files written
            before the field existed) uses the split.
        augment: random rotations, reflections, hue and saturation of the
            training crops (`make_datasets(augment=...)`); None means the
            dataset's default (yes for "photos", no for the others).
            Defaults to None.
        image_size: side of the square training crops. Defaults to 32.
            Ignored for `audio:` datasets (train.py refuses `--image_size`
            with one).
        sample_rate: audio only: the model's rate in Hz (8000-48000); clips
            are resampled to it. Defaults to 16000.
        crop_length: audio only: training crop in samples, a multiple of
            `hop` (`downsample`, or the product of `audio_strides`).
            Defaults to 8192 (0.51 s at 16 kHz).
        audio_strides: audio only: None (the paper's network with
            `downsample`) or the strides of the speech network
            (`VQVAE(strides=...)`), e.g. (2, 4, 5, 8): 320 samples per code
            frame, 50 frames per second at 16 kHz. Defaults to None.
        causal: with `audio_strides`: a causal (streamable) network.
            Defaults to True.
        audio_frame_length: with `audio_strides`: samples per frame of the
            speech network's first and last layers (`VQVAE(frame_length=)`);
            the hop is this times the strides' product. Defaults to 1.
        validation_list: audio only: a file naming the validation clips, or
            the name of a shipped list (`vqvae_tf.data.VALIDATION_LISTS`:
            "ljspeech16k"); None holds out a hash-chosen 20%. Defaults to
            None.
        label_pattern: audio only: regular expression giving each clip's
            class from its file name. Defaults to None.
        reconstruction_loss: "mse", "stft" (plus a multi-resolution
            STFT loss), "stft_mel" (plus a log-mel loss too; audio only,
            `VQVAE(reconstruction_loss=...)`) or "auto": "mse" for images,
            `AUDIO_AUTO_LOSS` for audio (the shipped speech model's loss,
            docs/training.md), resolved when the run starts. Defaults to
            "auto".
        epochs: number of epochs. Defaults to 15.
        max_minutes: wall-clock budget of the training (`fit`) in minutes:
            training stops at the first step that ends after it, in the
            middle of an epoch if need be, and that epoch still validates
            (`vqvae_tf.training.callbacks.TimeLimit`); 0 means no limit.
            The schedule is still the one of `epochs` x `steps_per_epoch`.
            Defaults to 0.
        steps_per_epoch: training steps per epoch. Defaults to 300.
        validation_steps: validation batches per epoch; 0 means the whole
            validation set. Defaults to 0.
        batch_size: global batch size (all replicas). Defaults to 64.
        learning_rate: peak Adam learning rate. Defaults to 1e-3.
        lr_schedule: "constant" or "cosine" (linear warmup, then cosine
            decay to 0 at the last step). Defaults to "cosine".
        warmup_steps: linear warmup steps of the cosine schedule. Defaults
            to 100.
        quantizer: "ema", "vq", "residual" (EMA stages), "fsq" (levels
            chosen from num_codes) or "gumbel" (temperature annealed during
            training). Defaults to "ema".
        commitment_cost, decay, kmeans_init, dead_code_threshold,
            l2_normalize: options of the codebook quantizers ("ema", "vq",
            "residual"; `decay` not for "vq").
        lookup_dim: search the codebook in a learned projection of this
            many dimensions (low-dimension codes; "ema", "vq", "residual");
            0, or a value >= `code_dim`, searches in the `code_dim` space
            itself. Defaults to 8: on the photos and MNIST it lowered the
            test MSE and raised code usage (bench/quantizer_quality.py) and
            raised the default run's validation PSNR by 0.4 dB (README).
        num_stages, quantizer_dropout: residual stages and the probability
            of training a batch with a random prefix of them ("residual").
        num_codes, code_dim, downsample, hidden_units, residual_units,
            num_residual_blocks: the `VQVAE` architecture.
        strategy: a `vqvae_tf.training.distribute.make_strategy` name. Defaults to
            "auto".
        mixed_precision: "none", "mixed_float16", "mixed_bfloat16" or "auto"
            (bfloat16 on CPU and TPU, float16 on GPU). Defaults to "auto".
        jit_compile: XLA-compile the train step. Defaults to False (slower on
            CPU, measured).
        seed: seeds the weights, the data order and the quantizer.
        export: export the final model after training. Defaults to True.
        export_formats: formats for `export.export_model`. Defaults to all.
        export_quantizations: TFLite variants; "int8" is calibrated on
            training images. Defaults to ("float32", "int8").
        num_samples: images in the sample grids. Defaults to 8.
        verbose: Keras `fit` verbosity (1 = progress bar). Defaults to 1.
    """

    dataset: str = "photos"
    validation_dataset: str | None = None
    augment: bool | None = None
    image_size: int = 32
    sample_rate: int = 16000
    crop_length: int = 8192
    audio_strides: tuple | None = None
    causal: bool = True
    audio_frame_length: int = 1
    validation_list: str | None = None
    label_pattern: str | None = None
    reconstruction_loss: str = "auto"
    epochs: int = 15
    max_minutes: float = 0.0
    steps_per_epoch: int = 300
    validation_steps: int = 0
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    warmup_steps: int = 100
    quantizer: str = "ema"
    commitment_cost: float = 0.25
    decay: float = 0.99
    kmeans_init: bool = True
    dead_code_threshold: float = 1.0
    l2_normalize: bool = False
    lookup_dim: int = 8
    num_stages: int = 4
    quantizer_dropout: float = 0.0
    num_codes: int = 512
    code_dim: int = 64
    downsample: int = 4
    hidden_units: int = 128
    residual_units: int = 64
    num_residual_blocks: int = 2
    strategy: str = "auto"
    mixed_precision: str = "auto"
    jit_compile: bool = False
    seed: int = 0
    export: bool = True
    export_formats: tuple = EXPORT_FORMATS
    export_quantizations: tuple = ("float32", "int8")
    num_samples: int = 8
    verbose: int = 1

    def __post_init__(self):
        if self.validation_list is not None and not isinstance(self.validation_list, str):
            self.validation_list = str(self.validation_list)  # a Path; config.json holds text
        if self.audio_strides is not None:
            self.audio_strides = check_strides(self.audio_strides)  # a list in config.json
        self.export_formats = tuple(self.export_formats)
        self.export_quantizations = tuple(self.export_quantizations)
        self.validate()

    # ----------------------------------------------------------- validation
    def validate(self):
        """Raises `ConfigError` naming the first bad field and its value."""
        for name, minimum in (
            ("image_size", 1),
            ("epochs", 1),
            ("steps_per_epoch", 1),
            ("validation_steps", 0),
            ("batch_size", 1),
            ("warmup_steps", 0),
            ("num_codes", 2),
            ("code_dim", 1),
            ("hidden_units", 1),
            ("residual_units", 1),
            ("num_residual_blocks", 0),
            ("seed", 0),
            ("num_samples", 1),
            ("verbose", 0),
            ("num_stages", 1),
            ("lookup_dim", 0),
            ("crop_length", 1),
        ):
            check_int(name, getattr(self, name), minimum, error=ConfigError)
        check_int("sample_rate", self.sample_rate, MIN_RATE, MAX_RATE, error=ConfigError)
        check_number("learning_rate", self.learning_rate, 0, inclusive_min=False, error=ConfigError)
        check_number("max_minutes", self.max_minutes, 0, error=ConfigError)
        for name, maximum in (
            ("commitment_cost", None),
            ("decay", 1),
            ("dead_code_threshold", None),
            ("quantizer_dropout", 1),
        ):
            check_number(name, getattr(self, name), 0, maximum, inclusive_max=False, error=ConfigError)
        for name, choices in (
            ("quantizer", QUANTIZERS),
            ("lr_schedule", LR_SCHEDULES),
            ("mixed_precision", MIXED_PRECISION),
            ("strategy", STRATEGIES),
            ("downsample", DOWNSAMPLE),
            ("reconstruction_loss", RECONSTRUCTION_LOSS_CHOICES),
        ):
            check_choice(name, getattr(self, name), choices, error=ConfigError)
        for name in ("kmeans_init", "l2_normalize", "jit_compile", "export", "causal"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be a bool; received {getattr(self, name)!r}.")
        if self.augment is not None and not isinstance(self.augment, bool):
            raise ConfigError(f"augment must be a bool or None; received {self.augment!r}.")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError(f"dataset must be a non-empty spec such as 'photos'; received {self.dataset!r}.")
        self._validate_audio()
        if self.validation_dataset is not None and not str(self.validation_dataset).startswith("folder:"):
            raise ConfigError(f"validation_dataset must be folder:DIR or None; received {self.validation_dataset!r}.")
        if not self.is_audio and self.image_size % self.downsample:
            raise ConfigError(
                f"image_size must be a multiple of downsample={self.downsample}; received {self.image_size}."
            )
        for name, choices in (("export_formats", EXPORT_FORMATS), ("export_quantizations", EXPORT_QUANTIZATIONS)):
            values = getattr(self, name)
            if any(v not in choices for v in values) or (self.export and not values):
                raise ConfigError(
                    f"{name} must be a non-empty subset of {', '.join(choices)}; received {list(values)!r}."
                )

    @property
    def is_audio(self):
        """Whether the dataset is audio (`audio:DIR`): the run trains a rank-1 waveform model."""
        return self.dataset.partition(":")[0] == AUDIO_SCHEME

    def _validate_audio(self):
        if self.audio_strides is not None and not self.is_audio:
            raise ConfigError(f"audio_strides applies to audio datasets (audio:DIR), not to {self.dataset!r}.")
        if self.audio_frame_length != 1 and self.audio_strides is None:
            raise ConfigError(
                "audio_frame_length applies with audio_strides (the speech network); "
                f"received {self.audio_frame_length}."
            )
        for name in ("validation_list", "label_pattern"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{name} must be a non-empty str or None; received {value!r}.")
            if value is not None and not self.is_audio:
                raise ConfigError(f"{name} applies to audio datasets (audio:DIR), not to {self.dataset!r}.")
        if self.is_audio:
            if self.crop_length % self.hop:
                what = f"downsample={self.downsample}" if self.audio_strides is None else f"the hop {self.hop}"
                raise ConfigError(f"crop_length must be a multiple of {what}; received {self.crop_length}.")
        elif self.reconstruction_loss in AUDIO_LOSSES:
            raise ConfigError(
                f"reconstruction_loss={self.reconstruction_loss!r} applies to audio datasets, not to {self.dataset!r}."
            )

    @property
    def hop(self):
        """Samples (or pixels along a side) per code: `downsample`, or with `audio_strides` the speech hop.

        The speech hop is `audio_frame_length` times the product of `audio_strides`.
        """
        return (
            self.downsample if self.audio_strides is None else self.audio_frame_length * math.prod(self.audio_strides)
        )

    def resolved_reconstruction_loss(self):
        """`reconstruction_loss` with "auto" resolved: "mse" for images, `AUDIO_AUTO_LOSS` for audio."""
        if self.reconstruction_loss != "auto":
            return self.reconstruction_loss
        return AUDIO_AUTO_LOSS if self.is_audio else "mse"

    def validation_list_path(self):
        """The validation list as a path: a shipped list's file for its name, else the path given (or None)."""
        if self.validation_list is None:
            return None
        return validation_list_file(self.validation_list)

    # ------------------------------------------------------------- the model
    def model_kwargs(self, channels, data_variance):
        """Keyword arguments of `VQVAE` for data with `channels` channels."""
        quantizer_config = dict(seed=self.seed)
        if self.quantizer in ("ema", "vq", "residual"):
            quantizer_config.update(
                commitment_cost=self.commitment_cost,
                kmeans_init=self.kmeans_init,
                dead_code_threshold=self.dead_code_threshold,
                l2_normalize=self.l2_normalize,
            )
            if 0 < self.lookup_dim < self.code_dim:
                quantizer_config["lookup_dim"] = self.lookup_dim
        if self.quantizer in ("ema", "residual"):
            quantizer_config["decay"] = self.decay
        if self.quantizer == "residual":
            quantizer_config.update(num_stages=self.num_stages, quantizer_dropout=self.quantizer_dropout)
        speech = {}
        if self.audio_strides is not None:
            speech = dict(strides=list(self.audio_strides), causal=self.causal, sample_rate=self.sample_rate)
            if self.audio_frame_length != 1:
                speech["frame_length"] = self.audio_frame_length
        return dict(
            input_channels=channels,
            downsample=self.hop,
            hidden_units=self.hidden_units,
            residual_units=self.residual_units,
            num_residual_blocks=self.num_residual_blocks,
            num_codes=self.num_codes,
            code_dim=self.code_dim,
            quantizer=self.quantizer,
            quantizer_config=quantizer_config,
            data_variance=float(data_variance),
            **(dict(rank=1, reconstruction_loss=self.resolved_reconstruction_loss()) if self.is_audio else {}),
            **speech,
        )

    # ------------------------------------------------------------------ JSON
    def to_dict(self):
        data = dataclasses.asdict(self)
        data["export_formats"] = list(self.export_formats)
        data["export_quantizations"] = list(self.export_quantizations)
        if self.audio_strides is not None:
            data["audio_strides"] = list(self.audio_strides)
        return data

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ConfigError(f"a training config must be a JSON object; received {type(data).__name__}.")
        check_known_fields("training config", data, {f.name for f in dataclasses.fields(cls)}, error=ConfigError)
        # A config written before a field existed meant that field's old value.
        return cls(**{**_VALUES_BEFORE_THE_FIELD_EXISTED, **data})

    @classmethod
    def from_json(cls, text):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"the training config is not valid JSON: {error}.") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path):
        """Reads a `config.json` written by `save`."""
        return cls.from_json(Path(path).read_text())

    def save(self, path):
        """Writes the config as JSON, atomically."""
        write_bytes(path, self.to_json().encode())

    def incompatible_fields(self, other):
        """Names of fields that differ from `other` and may not change on resume."""
        mine, theirs = self.to_dict(), other.to_dict()
        return sorted(k for k in mine if k not in RESUMABLE_FIELDS and mine[k] != theirs.get(k))

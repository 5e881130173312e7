"""`PriorConfig`: every setting of one prior training run, validated, as JSON.

`train_prior` writes it to `workdir/prior_config.json` before training, so
a prior run's directory says how its prior was made.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from vqvae_tf.training.config import STRATEGIES, ConfigError
from vqvae_tf.utils import atomic
from vqvae_tf.utils.checks import (
    check_bool,
    check_choice,
    check_int,
    check_known_fields,
    check_number,
)

PRIOR_KINDS = ("pixelcnn", "transformer")

# Integer fields and their smallest value.
_INT_MINIMUMS = (
    ("channels", 1),
    ("num_layers", 1),
    ("kernel_size", 3),
    ("embed_dim", 1),
    ("num_heads", 1),
    ("steps", 1),
    ("epochs", 1),
    ("batch_size", 1),
    ("seed", 0),
    ("num_samples", 1),
    ("top_k", 0),
    ("verbose", 0),
)


@dataclasses.dataclass
class PriorConfig:
    """Settings of one prior training run.

    Attributes:
        kind: "pixelcnn" (`GatedPixelCNN`) or "transformer"
            (`TransformerPrior`). Defaults to "pixelcnn".
        conditional: condition on class labels (the dataset must have
            them, e.g. MNIST). Defaults to False.
        channels: PixelCNN width. Defaults to 64.
        num_layers: gated layers / Transformer blocks. Defaults to 4.
        kernel_size: PixelCNN kernel. Defaults to 3.
        embed_dim: Transformer width. Defaults to 128.
        num_heads: Transformer heads. Defaults to 4.
        dropout: Transformer residual dropout. Defaults to 0.0.
        steps: total training steps. Defaults to 2000.
        epochs: `steps` are split into this many Keras epochs (one
            validation pass each). Defaults to 1.
        batch_size: global batch of code maps. Defaults to 64.
        learning_rate: Adam learning rate. Defaults to 3e-4.
        seed: weights, data order and sampling. Defaults to 0.
        strategy: a `vqvae_tf.training.distribute.make_strategy` name. Defaults to
            "auto".
        train_batches: image batches of the VQ-VAE's training pipeline to
            extract codes from; None = one pass over the training images
            when the source knows their number (mnist, digits, arrays),
            else `DEFAULT_TRAIN_BATCHES` of `vqvae_tf.training.code_files`
            (photos: random crops).
        stages: model only the first `stages` codes of each position of a
            residual VQ-VAE (1: its coarse stage, the prior the codec
            codes stage 0 with, the finer stages under static tables);
            None (default) = every stage, as stage tokens
            (`vqvae_tf.priors.stage_tokens`).
        num_samples: samples per row of the grid. Defaults to 8.
        temperature: sampling temperature of the grid. Defaults to 1.0.
        top_k: top-k of the grid's sampling, 0 = off. Defaults to 0.
        verbose: Keras `fit` verbosity. Defaults to 0.
    """

    kind: str = "pixelcnn"
    conditional: bool = False
    channels: int = 64
    num_layers: int = 4
    kernel_size: int = 3
    embed_dim: int = 128
    num_heads: int = 4
    dropout: float = 0.0
    steps: int = 2000
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 3e-4
    seed: int = 0
    strategy: str = "auto"
    train_batches: int | None = None
    stages: int | None = None
    num_samples: int = 8
    temperature: float = 1.0
    top_k: int = 0
    verbose: int = 0

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raises `ConfigError` naming the first bad field, what it expects and its value."""
        check_choice("kind", self.kind, PRIOR_KINDS, error=ConfigError)
        check_choice("strategy", self.strategy, STRATEGIES, error=ConfigError)
        check_bool("conditional", self.conditional, error=ConfigError)
        for name, minimum in _INT_MINIMUMS:
            check_int(name, getattr(self, name), minimum=minimum, error=ConfigError)
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"`kernel_size` must be odd; received {self.kernel_size}.")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads}).")
        if self.steps < self.epochs:
            raise ConfigError(f"steps ({self.steps}) must be >= epochs ({self.epochs}).")
        if self.train_batches is not None:
            check_int("train_batches", self.train_batches, minimum=1, error=ConfigError)
        if self.stages is not None:
            check_int("stages", self.stages, minimum=1, error=ConfigError)
        check_number("learning_rate", self.learning_rate, minimum=0, inclusive_min=False, error=ConfigError)
        check_number("dropout", self.dropout, minimum=0, maximum=1, inclusive_max=False, error=ConfigError)
        check_number("temperature", self.temperature, minimum=0, error=ConfigError)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        check_known_fields("prior config", data, {f.name for f in dataclasses.fields(cls)}, error=ConfigError)
        return cls(**data)

    @classmethod
    def load(cls, path):
        """Reads a `prior_config.json` written by `save`."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path} is not valid JSON: {error}.") from None

    def save(self, path):
        """Writes the config as JSON, atomically."""
        atomic.write_json(path, self.to_dict(), sort_keys=True)

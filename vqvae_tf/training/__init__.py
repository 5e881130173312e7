"""Training: the run configuration, the `fit` loop with its callbacks, strategies, and prior training.

`train_and_evaluate(TrainConfig(...), workdir)` is what `train.py` calls;
`train_prior(PriorConfig(...), vqvae_workdir, workdir)` trains a prior over a
finished run's codes.
"""

from vqvae_tf.training.config import ConfigError, TrainConfig
from vqvae_tf.training.distribute import StrategyError, make_strategy
from vqvae_tf.training.loop import (
    OUTPUTS,
    build_model,
    learning_rate_schedule,
    make_callbacks,
    resolve_mixed_precision,
    train_and_evaluate,
)
from vqvae_tf.training.prior_training import PriorConfig, train_prior

__all__ = [
    "OUTPUTS",
    "ConfigError",
    "PriorConfig",
    "StrategyError",
    "TrainConfig",
    "build_model",
    "learning_rate_schedule",
    "make_callbacks",
    "make_strategy",
    "resolve_mixed_precision",
    "train_and_evaluate",
    "train_prior",
]

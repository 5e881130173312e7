"""train.py can select every registered quantizer type."""

import numpy as np
import pytest

from vqvae_tf.models.vqvae import VQVAE
from vqvae_tf.quantizers.registry import QUANTIZERS
from vqvae_tf.training import config as cfg


@pytest.mark.parametrize("name", cfg.QUANTIZERS)
def test_each_quantizer_builds_a_working_model_from_the_config(name):
    config = cfg.TrainConfig(
        quantizer=name,
        num_codes=64,
        code_dim=8,
        hidden_units=8,
        residual_units=4,
        num_residual_blocks=1,
        image_size=16,
        num_stages=2,
        quantizer_dropout=0.5,
    )
    model = VQVAE(**config.model_kwargs(channels=3, data_variance=0.05))
    assert type(model.quantizer) is QUANTIZERS[name]
    images = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    codes = model.codes(images)
    assert codes.shape[:3] == (2, 4, 4)
    assert model.decode_codes(codes).shape == images.shape


def test_quantizer_options_are_validated():
    with pytest.raises(cfg.ConfigError, match="quantizer_dropout"):
        cfg.TrainConfig(quantizer="residual", quantizer_dropout=1.0)
    with pytest.raises(cfg.ConfigError, match="num_stages"):
        cfg.TrainConfig(quantizer="residual", num_stages=0)

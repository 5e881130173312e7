"""The shared layer contract (tests/test_case.py) on every registered layer."""

import numpy as np
import pytest
import tensorflow as tf

from tests.layer_registry import LAYERS, layer_id
from tests.test_case import run_layer_test
from vqvae_tf.metrics import DeadCodes
from vqvae_tf.networks import Decoder, Encoder


@pytest.mark.parametrize("entry", LAYERS, ids=[layer_id(e) for e in LAYERS])
def test_layer_contract(entry, tmp_path):
    cls, kwargs, in_shape, out_shape, n_train, n_non_train = entry
    run_layer_test(cls, kwargs, in_shape, out_shape, n_train, n_non_train, tmp_path)


@pytest.mark.parametrize("entry", LAYERS, ids=[layer_id(e) for e in LAYERS])
def test_layer_jit_compile_matches_eager(entry):
    cls, kwargs, in_shape = entry[:3]
    layer = cls(**kwargs)
    data = np.random.default_rng(1).standard_normal(in_shape).astype("float32")
    eager = layer(data)
    compiled = tf.function(lambda x: layer(x), jit_compile=True)(tf.constant(data))
    if isinstance(eager, dict):
        np.testing.assert_array_equal(eager["indices"].numpy(), compiled["indices"].numpy())
        eager, compiled = eager["quantized"], compiled["quantized"]
    np.testing.assert_allclose(eager.numpy(), compiled.numpy(), atol=1e-5)


def test_dead_codes_metric_counts_unused_codes_and_round_trips():
    metric = DeadCodes(5)
    metric.update_state([1.0, 0.0, 0.0, 2.0, 0.0])
    metric.update_state([0.0, 0.0, 3.0, 0.0, 0.0])
    assert float(metric.result()) == 2.0  # codes 1 and 4 never used
    metric.reset_state()
    assert float(metric.result()) == 5.0
    clone = DeadCodes.from_config(metric.get_config())
    assert clone.num_codes == 5 and clone.name == "dead_codes"


@pytest.mark.parametrize(
    "cls,kwargs,message",
    [
        (Encoder, dict(downsample=3), "downsample"),
        (Encoder, dict(rank=3), "rank"),
        (Encoder, dict(hidden_units=0), "hidden_units"),
        (Decoder, dict(output_channels=-1), "output_channels"),
    ],
)
def test_network_arguments_are_validated(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_encoder_rejects_wrong_rank_with_shapes_in_message():
    with pytest.raises(ValueError, match=r"\(batch, height, width, channels\).*received shape \(2, 16, 3\)"):
        Encoder(hidden_units=4, residual_units=4, code_dim=2)(np.zeros((2, 16, 3), "float32"))

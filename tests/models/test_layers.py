"""The shared layer contract (tests/test_case.py) on every registered layer."""

import numpy as np
import pytest
import tensorflow as tf

from tests.layer_checks import run_layer_test
from tests.layer_registry import LAYERS, layer_id
from vqvae_tf.models.metrics import DeadCodes
from vqvae_tf.models.networks import Decoder, Encoder


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


# ------------------------------------------------- sub-pixel transposed conv
@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("activation", [None, "relu", "softmax"])
def test_subpixel_conv_transpose_matches_keras(rank, activation):
    import keras

    from vqvae_tf.models.subpixel import subpixel_conv_transpose

    cls = {1: keras.layers.Conv1DTranspose, 2: keras.layers.Conv2DTranspose}[rank]
    rng = np.random.default_rng(rank)
    for channels, filters, spatial in [(5, 3, (7, 6)), (16, 8, (1, 9)), (3, 2, (4, 4))]:
        layer = cls(filters, 4, strides=2, padding="same", activation=activation)
        x = tf.constant(rng.standard_normal((2, *spatial[:rank], channels)).astype("float32"))
        layer(x)
        layer.set_weights([rng.standard_normal(w.shape).astype("float32") for w in layer.weights])
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            expected, got = layer(x), subpixel_conv_transpose(layer, x)
            # A loss that weighs every output position differently, so a
            # misplaced gradient shows.
            weights = tf.constant(rng.standard_normal(expected.shape).astype("float32"))
            expected_loss, got_loss = tf.reduce_sum(expected * weights), tf.reduce_sum(got * weights)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
        for want, have in zip(
            tape.gradient(expected_loss, [x] + layer.weights), tape.gradient(got_loss, [x] + layer.weights)
        ):
            np.testing.assert_allclose(have.numpy(), want.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("downsample", [2, 4, 8, 16])
def test_decoder_equals_transposed_convolutions(rank, downsample, monkeypatch):
    from vqvae_tf.models import networks

    decoder = Decoder(
        downsample=downsample, hidden_units=8, residual_units=4, num_residual_blocks=1, output_channels=3, rank=rank
    )
    codes = np.random.default_rng(downsample).standard_normal((2,) + (3,) * rank + (5,)).astype("float32")
    got = decoder(codes).numpy()
    assert got.shape == (2,) + (3 * downsample,) * rank + (3,)
    # The layers the decoder holds are plain Keras transposed convolutions
    # (so `.keras` files keep their weight paths); calling them directly is
    # the reference.
    assert all(type(layer).__name__ == f"Conv{rank}DTranspose" for layer in decoder.upsampling)
    monkeypatch.setattr(networks, "subpixel_conv_transpose", lambda layer, x: layer(x))
    np.testing.assert_allclose(got, decoder(codes).numpy(), atol=1e-5)


def test_subpixel_conv_transpose_rejects_other_convolutions():
    import keras

    from vqvae_tf.models.subpixel import subpixel_conv_transpose

    x = np.zeros((1, 4, 4, 2), "float32")
    for kwargs in (
        dict(kernel_size=3, strides=2, padding="same"),
        dict(kernel_size=4, strides=1, padding="same"),
        dict(kernel_size=4, strides=2, padding="valid"),
    ):
        with pytest.raises(ValueError, match="received layer"):
            subpixel_conv_transpose(keras.layers.Conv2DTranspose(3, **kwargs), x)

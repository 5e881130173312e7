"""Shared checks that every public layer and model of vqvae_tf must pass.

A small, public replacement for `keras.src.testing` (which is private): a
layer test that round-trips `get_config`, counts weights, runs symbolically,
eagerly and through one `fit` step, and a `.keras` save/load test.
"""

import keras
import numpy as np
import tensorflow as tf


def _outputs_to_tensor(outputs):
    """The main tensor of a layer's output (quantizers return dicts)."""
    if isinstance(outputs, dict):
        return outputs["quantized"]
    return outputs


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_shape,
    expected_output_shape,
    expected_num_trainable_weights,
    expected_num_non_trainable_weights,
    tmp_path,
    input_dtype="float32",
):
    """Runs the layer contract checks; raises AssertionError on any failure."""
    # 1. get_config mirrors __init__ and round-trips.
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    for key, value in init_kwargs.items():
        assert key in config, f"get_config of {layer_cls.__name__} lacks __init__ argument {key!r}"
        assert config[key] == value, f"{key}: config has {config[key]!r}, __init__ got {value!r}"
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config, "from_config(get_config()) changed the config"
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is layer_cls and revived.get_config() == config

    # 2. Symbolic call (None batch) builds the layer with the expected weights.
    symbolic_input = keras.Input(batch_shape=(None,) + tuple(input_shape[1:]), dtype=input_dtype)
    symbolic_out = _outputs_to_tensor(layer(symbolic_input))
    assert tuple(symbolic_out.shape[1:]) == tuple(expected_output_shape[1:])
    assert len(layer.trainable_weights) == expected_num_trainable_weights, [w.path for w in layer.trainable_weights]
    assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, [
        w.path for w in layer.non_trainable_weights
    ]

    # 3. Eager call on concrete data.
    rng = np.random.default_rng(0)
    data = rng.standard_normal(input_shape).astype(input_dtype)
    eager_out = _outputs_to_tensor(layer(data))
    assert tuple(eager_out.shape) == tuple(expected_output_shape)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(eager_out)))

    # 4. One fit step inside a functional model changes the trainable weights.
    model = keras.Model(symbolic_input, symbolic_out)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    target = rng.standard_normal(expected_output_shape).astype("float32")
    before = [w.numpy().copy() for w in layer.trainable_weights]
    model.fit(data, target, batch_size=input_shape[0], epochs=1, verbose=0)
    if before:
        after = [w.numpy() for w in layer.trainable_weights]
        assert any(not np.array_equal(a, b) for a, b in zip(after, before)), "one fit step moved no weight"

    # 5. .keras round trip gives identical outputs.
    path = tmp_path / f"{layer_cls.__name__}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(data)), keras.ops.convert_to_numpy(reloaded(data)))
    return layer


def run_model_saving_test(model, data, tmp_path):
    """`.keras` round trip of a model: identical outputs and identical weights."""
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert reloaded.built and len(reloaded.weights) == len(model.weights) > 0
    for a, b in zip(model.weights, reloaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(data)), keras.ops.convert_to_numpy(reloaded(data)))
    return reloaded


def assert_finite(x):
    x = np.asarray(x)
    assert np.all(np.isfinite(x)), "non-finite values"


def tf_function_call(layer, *args, **kwargs):
    return tf.function(lambda *a: layer(*a, **kwargs))(*args)

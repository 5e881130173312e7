"""Quantizer variants: residual VQ, FSQ, Gumbel, rotation trick, low-dim codes.

Each against a NumPy reference of its forward maths, plus gradients, the
codes/lookup round trip, and one epoch of a VQVAE with each of them. The
shared layer contract runs on their entries in tests/layer_registry.py, the
two-replica checks in tests/test_quantizer_family_mirrored.py.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from vqvae_tf.models.vqvae import VQVAE
from vqvae_tf.quantizers.ema import VectorQuantizerEMA
from vqvae_tf.quantizers.fsq import FiniteScalarQuantizer, levels_for_codes
from vqvae_tf.quantizers.gumbel import GumbelQuantizer, GumbelTemperatureSchedule
from vqvae_tf.quantizers.registry import QUANTIZERS, get_quantizer
from vqvae_tf.quantizers.residual import ResidualVectorQuantizer
from vqvae_tf.quantizers.rotation import rotate_to_codes
from vqvae_tf.quantizers.vector_quantizer import VectorQuantizer


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def np_nearest(x, codebook):
    return ((x[:, None, :] - codebook[None]) ** 2).sum(-1).argmin(1)


def np_rotation_gradient(e, q, g):
    """lambda R^T g with the paper's explicit D x D rotation R, row by row."""
    e, q, g = (np.asarray(a, np.float64) for a in (e, q, g))
    out = np.zeros_like(e)
    for i in range(len(e)):
        e_hat, q_hat = e[i] / np.linalg.norm(e[i]), q[i] / np.linalg.norm(q[i])
        r = (e_hat + q_hat) / np.linalg.norm(e_hat + q_hat)
        rotation = np.eye(len(e_hat)) - 2 * np.outer(r, r) + 2 * np.outer(q_hat, e_hat)
        np.testing.assert_allclose(rotation @ e_hat, q_hat, atol=1e-10)  # R rotates e^ onto q^
        out[i] = np.linalg.norm(q[i]) / np.linalg.norm(e[i]) * rotation.T @ g[i]
    return out


def test_registry_names_resolve_to_the_new_layers():
    assert {"vq", "ema", "residual", "fsq", "gumbel"} <= set(QUANTIZERS)
    assert QUANTIZERS["residual"] is ResidualVectorQuantizer
    assert QUANTIZERS["fsq"] is FiniteScalarQuantizer
    assert QUANTIZERS["gumbel"] is GumbelQuantizer
    # VQVAE passes num_codes and code_dim to every quantizer.
    for kind in QUANTIZERS:
        layer = get_quantizer(kind, num_codes=64, code_dim=8)
        assert layer.num_codes == 64 and layer.code_dim == 8


# ------------------------------------------------------------ rotation trick
def test_rotation_trick_value_is_the_code_and_gradient_matches_numpy(rng):
    e = rng.standard_normal((6, 5))
    q = rng.standard_normal((6, 5))
    g = rng.standard_normal((6, 5))
    e_var = tf.Variable(e.astype("float32"))
    with tf.GradientTape() as tape:
        out = rotate_to_codes(e_var, tf.constant(q, tf.float32))
        loss = tf.reduce_sum(out * g.astype("float32"))
    np.testing.assert_array_equal(out.numpy(), q.astype("float32"))
    np.testing.assert_allclose(tape.gradient(loss, e_var).numpy(), np_rotation_gradient(e, q, g), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [VectorQuantizer, VectorQuantizerEMA])
def test_rotation_trick_in_the_vq_layers(cls, rng):
    vq = cls(num_codes=16, code_dim=4, rotation_trick=True, seed=0)
    z = tf.Variable(rng.standard_normal((3, 5, 4)).astype("float32"))
    g = rng.standard_normal((3, 5, 4)).astype("float32")
    with tf.GradientTape() as tape:
        out = vq(z)
        loss = tf.reduce_sum(out["quantized"] * g)
    codes = tf.gather(vq.codebook, out["indices"]).numpy()
    np.testing.assert_array_equal(out["quantized"].numpy(), codes)  # exactly the code
    expected = np_rotation_gradient(z.numpy().reshape(-1, 4).astype(np.float64), codes.reshape(-1, 4), g.reshape(-1, 4))
    np.testing.assert_allclose(tape.gradient(loss, z).numpy().reshape(-1, 4), expected, rtol=1e-4, atol=1e-5)
    # Not the straight-through copy of g: the rotation changes it.
    assert np.abs(expected - g.reshape(-1, 4)).max() > 0.1


# --------------------------------------------------------- low-dim lookups
def test_lookup_dim_projects_searches_and_projects_back(rng):
    vq = VectorQuantizer(num_codes=12, code_dim=6, lookup_dim=2, commitment_cost=0.5, seed=1)
    x = rng.standard_normal((4, 3, 6)).astype("float32")
    z = tf.Variable(x)
    with tf.GradientTape() as tape:
        out = vq(z)
        loss = tf.reduce_sum(out["quantized"]) + out["loss"]
    w_in, b_in, w_out, b_out = (v.numpy() for v in (vq.in_kernel, vq.in_bias, vq.out_kernel, vq.out_bias))
    codebook = vq.codebook.numpy()
    assert codebook.shape == (12, 2)
    latent = x.reshape(-1, 6) @ w_in + b_in
    idx = np_nearest(latent, codebook)
    np.testing.assert_array_equal(out["indices"].numpy().reshape(-1), idx)
    np.testing.assert_allclose(
        out["quantized"].numpy().reshape(-1, 6), codebook[idx] @ w_out + b_out, rtol=1e-5, atol=1e-5
    )
    mse = ((latent - codebook[idx]) ** 2).mean()  # losses live in the lookup space
    np.testing.assert_allclose(float(out["commitment_loss"]), mse, rtol=1e-5)
    np.testing.assert_allclose(float(out["loss"]), 1.5 * mse, rtol=1e-5)
    np.testing.assert_array_equal(vq.codes(x).numpy(), out["indices"].numpy())
    np.testing.assert_allclose(vq.lookup(out["indices"]).numpy(), out["quantized"].numpy(), atol=1e-5)
    grads = tape.gradient(loss, [z, vq.in_kernel, vq.out_kernel, vq.codebook])
    assert all(g is not None and np.abs(tf.convert_to_tensor(g).numpy()).max() > 0 for g in grads)


def test_lookup_dim_ema_averages_in_the_lookup_space_and_kmeans_inits_there(rng):
    vq = VectorQuantizerEMA(num_codes=8, code_dim=5, lookup_dim=2, decay=0.5, kmeans_init=True, seed=2)
    x = rng.standard_normal((400, 5)).astype("float32")
    vq.initialize_codebook(x)
    assert vq.ema_dw.shape == (8, 2) and bool(vq.initialized.numpy())
    assert float(vq(x)["usage"]) == 1.0
    before = vq.codebook.numpy().copy()
    vq(x, training=True)
    assert not np.array_equal(before, vq.codebook.numpy())
    with pytest.raises(ValueError, match="lookup_dim` must be an int >= 1; received 0"):
        VectorQuantizer(num_codes=8, code_dim=4, lookup_dim=0)


# ------------------------------------------------------------- residual VQ
def test_residual_forward_matches_numpy_stage_by_stage(rng):
    rvq = ResidualVectorQuantizer(
        num_codes=8, code_dim=3, num_stages=3, stage_quantizer="vq", commitment_cost=0.3, seed=0
    )
    x = rng.standard_normal((4, 5, 3)).astype("float32")
    out = rvq(x)
    residual, total, idx_all, loss = x.reshape(-1, 3).astype(np.float64), 0.0, [], 0.0
    for stage in rvq.stages:
        codebook = stage.codebook.numpy()
        idx = np_nearest(residual, codebook)
        mse = ((residual - codebook[idx]) ** 2).mean()
        loss += 1.3 * mse
        total = total + codebook[idx]
        residual = residual - codebook[idx]
        idx_all.append(idx)
    np.testing.assert_array_equal(out["indices"].numpy().reshape(-1, 3), np.stack(idx_all, -1))
    assert out["indices"].shape == (4, 5, 3) and out["indices"].dtype == tf.int32
    np.testing.assert_allclose(out["quantized"].numpy().reshape(-1, 3), total, atol=1e-5)
    np.testing.assert_allclose(float(out["loss"]), loss, rtol=1e-5)
    np.testing.assert_array_equal(rvq.codes(x).numpy(), out["indices"].numpy())
    np.testing.assert_allclose(rvq.lookup(out["indices"]).numpy(), out["quantized"].numpy(), atol=1e-5)
    counts = sum(np.bincount(i, minlength=8) for i in idx_all)
    np.testing.assert_array_equal(out["counts"].numpy(), counts)


def test_residual_straight_through_gradient_is_the_identity(rng):
    rvq = ResidualVectorQuantizer(num_codes=8, code_dim=3, num_stages=3, seed=1)
    z = tf.Variable(rng.standard_normal((10, 3)).astype("float32"))
    g = rng.standard_normal((10, 3)).astype("float32")
    with tf.GradientTape() as tape:
        decoder_side = tf.reduce_sum(rvq(z)["quantized"] * g)
    np.testing.assert_allclose(tape.gradient(decoder_side, z).numpy(), g)


@pytest.mark.parametrize("shared", [False, True])
def test_residual_more_stages_lower_error_after_kmeans(shared, rng):
    rvq = ResidualVectorQuantizer(
        num_codes=16, code_dim=4, num_stages=4, shared_codebook=shared, kmeans_init=True, seed=2
    )
    x = rng.standard_normal((2000, 4)).astype("float32")
    rvq.initialize_codebook(x)
    assert bool(rvq.initialized.numpy())
    codes = rvq.codes(x)
    errors = [float(np.mean((rvq.lookup(codes[:, :n]).numpy() - x) ** 2)) for n in range(1, 5)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.5 * errors[0], errors


def test_residual_quantizer_dropout_decodes_with_the_first_n_stages(rng):
    # "vq" stages: their codebooks stay put between the call and the lookup.
    rvq = ResidualVectorQuantizer(
        num_codes=8, code_dim=3, num_stages=4, quantizer_dropout=1.0, stage_quantizer="vq", seed=3
    )
    x = rng.standard_normal((30, 3)).astype("float32")
    seen = set()
    for _ in range(12):
        out = rvq(x, training=True)
        quantized = out["quantized"].numpy()
        matches = [
            n for n in range(1, 5) if np.allclose(rvq.lookup(out["indices"][:, :n]).numpy(), quantized, atol=1e-5)
        ]
        assert len(matches) == 1, matches
        seen.add(matches[0])
    assert len(seen) >= 3, seen  # several bit rates are trained
    # Without training every stage counts.
    np.testing.assert_allclose(rvq(x)["quantized"].numpy(), rvq.lookup(rvq.codes(x)).numpy(), atol=1e-5)


def test_residual_shared_codebook_updates_once_from_every_stage(rng):
    rvq = ResidualVectorQuantizer(num_codes=8, code_dim=3, num_stages=3, shared_codebook=True, decay=0.5, seed=4)
    x = rng.standard_normal((50, 3)).astype("float32")
    rvq(x, training=True)
    stage = rvq.stages[0]
    assert len(rvq.stages) == 1 and int(stage.steps.numpy()) == 1
    np.testing.assert_allclose(stage.ema_cluster_size.numpy().sum() / 0.5, 50 * 3, rtol=1e-5)


def test_residual_lookup_dim_projects_once_around_the_stack(rng):
    rvq = ResidualVectorQuantizer(
        num_codes=8, code_dim=6, num_stages=2, lookup_dim=3, stage_quantizer="vq", commitment_cost=0.5, seed=5
    )
    x = rng.standard_normal((4, 5, 6)).astype("float32")
    z = tf.Variable(x)
    with tf.GradientTape() as tape:
        out = rvq(z)
        decoder_side = tf.reduce_sum(out["quantized"] ** 2)
    w_in, b_in, w_out, b_out = (v.numpy() for v in (rvq.in_kernel, rvq.in_bias, rvq.out_kernel, rvq.out_bias))
    residual = x.reshape(-1, 6) @ w_in + b_in
    total, idx_all, loss = 0.0, [], 0.0
    for stage in rvq.stages:
        codebook = stage.codebook.numpy()
        assert codebook.shape == (8, 3)  # the stages live in the projection
        idx = np_nearest(residual, codebook)
        loss += 1.5 * ((residual - codebook[idx]) ** 2).mean()
        total, residual = total + codebook[idx], residual - codebook[idx]
        idx_all.append(idx)
    np.testing.assert_array_equal(out["indices"].numpy().reshape(-1, 2), np.stack(idx_all, -1))
    np.testing.assert_allclose(out["quantized"].numpy().reshape(-1, 6), total @ w_out + b_out, atol=1e-5)
    np.testing.assert_allclose(float(out["loss"]), loss, rtol=1e-5)
    np.testing.assert_array_equal(rvq.codes(x).numpy(), out["indices"].numpy())
    np.testing.assert_allclose(rvq.lookup(out["indices"]).numpy(), out["quantized"].numpy(), atol=1e-5)
    # The decoder's gradient reaches both maps: the map back learns from the
    # reconstruction (before, each stage's map back got no gradient at all).
    grads = tape.gradient(decoder_side, [z, rvq.in_kernel, rvq.out_kernel])
    assert all(g is not None and np.abs(g.numpy()).max() > 0 for g in grads)


def test_residual_lookup_dim_learns_to_reconstruct(rng):
    # Regression: with a projection per stage, each stage's map back never
    # learned, and a photo model's vq_loss rose to ~190 in its first epoch.
    # Here that version ends at 2x the data variance; trained on its own
    # reconstruction, the stack must now fit the data closely.
    # Points a + b (4 coarse and 4 fine 4-D centres, so two stages of codes
    # fit them) embedded in 12-D, so a 4-D projection loses nothing.
    coarse, fine = 3.0 * rng.standard_normal((4, 4)), 0.5 * rng.standard_normal((4, 4))
    latent = coarse[rng.integers(0, 4, 2048)] + fine[rng.integers(0, 4, 2048)]
    x = (latent @ rng.standard_normal((4, 12)) / 2 + 0.02 * rng.standard_normal((2048, 12))).astype("float32")
    rvq = ResidualVectorQuantizer(num_codes=8, code_dim=12, num_stages=2, lookup_dim=4, kmeans_init=True, seed=0)
    rvq.initialize_codebook(x)
    optimizer = keras.optimizers.Adam(0.01)
    for _ in range(150):
        with tf.GradientTape() as tape:
            out = rvq(x, training=True)
            loss = tf.reduce_mean((out["quantized"] - x) ** 2) + out["loss"]
        optimizer.apply_gradients(zip(tape.gradient(loss, rvq.trainable_weights), rvq.trainable_weights))
    error = float(np.mean((rvq.lookup(rvq.codes(x)).numpy() - x) ** 2))
    assert error < 0.05 * float(np.var(x)), (error, float(np.var(x)))


def test_residual_arguments_and_lookup_shapes_are_validated():
    with pytest.raises(ValueError, match="stage_quantizer` must be one of \\['ema', 'vq'\\]; received 'pq'"):
        ResidualVectorQuantizer(num_codes=8, code_dim=3, stage_quantizer="pq")
    with pytest.raises(ValueError, match="quantizer_dropout` must be a finite number >= 0 and <= 1"):
        ResidualVectorQuantizer(num_codes=8, code_dim=3, quantizer_dropout=2.0)
    rvq = ResidualVectorQuantizer(num_codes=8, code_dim=3, num_stages=2)
    with pytest.raises(ValueError, match=r"1 <= n <= num_stages=2; received shape \(4, 3\)"):
        rvq.lookup(np.zeros((4, 3), "int32"))
    with pytest.raises(ValueError, match=r"indices in \[0, 8\) or 8 \(an absent stage\); received values in \[0, 9\]"):
        rvq.lookup(np.array([[0, 9]], "int32"))
    # Code 8 (absent_code) is a stage left out: the first stage alone, with a static shape.
    codes = np.array([[3, 5], [1, 7]], "int32")
    padded = np.array([[3, 8], [1, 8]], "int32")
    np.testing.assert_allclose(rvq.lookup(padded).numpy(), rvq.lookup(codes[:, :1]).numpy(), atol=1e-7)
    assert not np.allclose(rvq.lookup(codes).numpy(), rvq.lookup(padded).numpy())
    np.testing.assert_array_equal(rvq.lookup(np.full((2, 2), 8, "int32")).numpy(), np.zeros((2, 3)))


# --------------------------------------------------------------------- FSQ
def np_fsq(z, levels):
    levels = np.asarray(levels, np.float64)
    half_l = (levels - 1) * (1 + 1e-3) / 2
    offset = np.where(levels % 2 == 0, 0.5, 0.0)
    shift = np.arctanh(offset / half_l)
    bounded = np.tanh(z + shift) * half_l - offset
    rounded = np.round(bounded)
    half_width = levels // 2
    digits = (rounded + half_width).astype(np.int64)
    basis = np.cumprod([1] + list(levels[:-1].astype(np.int64)))
    slope = (1 - np.tanh(z + shift) ** 2) * half_l / half_width  # d(quantized)/dz straight through
    return rounded / half_width, (digits * basis).sum(-1), slope


def test_fsq_forward_and_gradient_match_numpy(rng):
    levels = (8, 5, 2)
    fsq = FiniteScalarQuantizer(levels=levels)
    x = (2 * rng.standard_normal((6, 7, 3))).astype("float32")
    z = tf.Variable(x)
    with tf.GradientTape() as tape:
        out = fsq(z)
        total = tf.reduce_sum(out["quantized"])
    expected, indices, slope = np_fsq(x.astype(np.float64), levels)
    np.testing.assert_allclose(out["quantized"].numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(out["indices"].numpy(), indices)
    np.testing.assert_allclose(tape.gradient(total, z).numpy(), slope, rtol=1e-4, atol=1e-6)
    assert float(out["loss"]) == 0.0 and fsq.num_codes == 80
    np.testing.assert_array_equal(fsq.lookup(out["indices"]).numpy(), out["quantized"].numpy())
    np.testing.assert_array_equal(fsq.codes(x).numpy(), indices)
    # Even levels take the asymmetric grid -L/2 .. L/2 - 1, odd ones are symmetric.
    big = fsq(np.linspace(-20, 20, 301)[:, None].repeat(3, 1).astype("float32"))["quantized"].numpy()
    np.testing.assert_allclose(np.unique(big[:, 0]) * 4, np.arange(-4, 4))
    np.testing.assert_allclose(np.unique(big[:, 1]) * 2, np.arange(-2, 3))
    np.testing.assert_allclose(np.unique(big[:, 2]), np.arange(-1, 1))


def test_fsq_integer_digit_bijection_over_every_code():
    fsq = FiniteScalarQuantizer(levels=(3, 4, 2, 5))
    every = np.arange(fsq.num_codes, dtype=np.int32)
    digits = fsq.indices_to_digits(every).numpy()
    assert len({tuple(d) for d in digits}) == fsq.num_codes == 120
    assert (digits >= 0).all() and (digits < np.array([3, 4, 2, 5])).all()
    np.testing.assert_array_equal(fsq.digits_to_indices(digits).numpy(), every)
    vectors = fsq.lookup(every).numpy()
    assert len({tuple(v) for v in vectors}) == 120 and np.abs(vectors).max() <= 1.0


def test_fsq_projection_and_levels_from_num_codes(rng):
    assert levels_for_codes(1000) == (8, 5, 5, 5) and levels_for_codes(512) == (8, 8, 8)
    fsq = FiniteScalarQuantizer(num_codes=64, code_dim=10, seed=0)
    assert fsq.levels == (8, 8) and len(fsq.trainable_weights) == 0
    out = fsq(rng.standard_normal((2, 4, 10)).astype("float32"))
    assert out["quantized"].shape == (2, 4, 10) and len(fsq.trainable_weights) == 4
    np.testing.assert_allclose(fsq.lookup(out["indices"]).numpy(), out["quantized"].numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(levels=(8, 5), num_codes=64), r"num_codes` must equal prod\(levels\) = 40"),
        (dict(levels=(8, 1)), "levels` must be an int >= 2; received 1"),
        (dict(levels=()), "non-empty sequence"),
        (dict(levels=(4, 4), l2_normalize=True), "does not support `l2_normalize=True`"),
        (dict(levels=(1 << 13, 1 << 12)), "at most 16777216 codes"),
    ],
)
def test_fsq_arguments_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FiniteScalarQuantizer(**kwargs)


# ------------------------------------------------------------------ Gumbel
def test_gumbel_inference_is_argmax_of_the_logits_with_kl_to_uniform(rng):
    gq = GumbelQuantizer(num_codes=10, code_dim=4, kl_weight=0.2, seed=0)
    x = rng.standard_normal((3, 5, 4)).astype("float32")
    out = gq(x)
    logits = x.reshape(-1, 4) @ gq.kernel.numpy() + gq.bias.numpy()
    idx = logits.argmax(-1)
    np.testing.assert_array_equal(out["indices"].numpy().reshape(-1), idx)
    np.testing.assert_array_equal(gq.codes(x).numpy().reshape(-1), idx)
    np.testing.assert_array_equal(out["quantized"].numpy().reshape(-1, 4), gq.codebook.numpy()[idx])
    np.testing.assert_array_equal(gq.lookup(out["indices"]).numpy(), out["quantized"].numpy())
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    kl = (p * np.log(p * 10)).sum(-1).mean()
    np.testing.assert_allclose(float(out["kl"]), kl, rtol=1e-4)
    np.testing.assert_allclose(float(out["loss"]), 0.2 * kl, rtol=1e-4)


@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_training_samples_are_seeded_and_pass_gradients(hard, rng):
    x = rng.standard_normal((40, 4)).astype("float32")

    def run():
        gq = GumbelQuantizer(num_codes=6, code_dim=4, hard=hard, temperature=0.7, seed=1)
        z = tf.Variable(x)
        with tf.GradientTape() as tape:
            out = gq(z, training=True)
            loss = tf.reduce_sum(out["quantized"] * np.linspace(-1, 1, 4).astype("float32"))
        return gq, out, tape.gradient(loss, [z, gq.kernel, gq.codebook])

    gq, first, grads = run()
    _, again, _ = run()
    np.testing.assert_array_equal(first["quantized"].numpy(), again["quantized"].numpy())  # (seed, step)-keyed
    assert int(gq.steps.numpy()) == 1
    second = gq(x, training=True)  # the next step draws new noise
    assert not np.array_equal(first["quantized"].numpy(), second["quantized"].numpy())
    assert all(np.abs(tf.convert_to_tensor(g).numpy()).max() > 0 for g in grads)
    codebook = gq.codebook.numpy()
    if hard:  # forward value is the one-hot code
        np.testing.assert_allclose(first["quantized"].numpy(), codebook[first["indices"].numpy()], atol=1e-5)
    else:  # a convex mixture of codes
        assert not np.allclose(first["quantized"].numpy(), codebook[first["indices"].numpy()], atol=1e-3)


def test_gumbel_temperature_schedule_moves_the_variable_during_fit(rng):
    keras.utils.set_random_seed(0)
    gq = GumbelQuantizer(num_codes=8, code_dim=4, seed=2)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, gq(inputs)["quantized"])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    schedule = GumbelTemperatureSchedule(initial_temperature=1.0, min_temperature=0.3, decay_rate=0.2)
    x = rng.standard_normal((32, 4)).astype("float32")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(gq.temperature.numpy()))

    model.fit(x, x, batch_size=4, epochs=1, verbose=0, callbacks=[schedule, Record()])
    np.testing.assert_allclose(seen, [max(0.3, np.exp(-0.2 * t)) for t in range(8)], rtol=1e-6)
    assert seen[-1] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="found no GumbelQuantizer"):
        plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
        plain.compile(optimizer="sgd", loss="mse")
        plain.fit(x, x, epochs=1, verbose=0, callbacks=[GumbelTemperatureSchedule()])


# ----------------------------------------------------------- in the model
@pytest.mark.parametrize(
    "kind,config",
    [
        ("vq", dict(rotation_trick=True, lookup_dim=4)),
        ("ema", dict(rotation_trick=True, kmeans_init=True, seed=1)),
        ("residual", dict(num_stages=2, quantizer_dropout=0.5, kmeans_init=True, seed=2)),
        ("fsq", dict()),
        ("gumbel", dict(hard=True, seed=3)),
    ],
)
def test_vqvae_fits_one_epoch_with_each_quantizer(kind, config, rng, tmp_path):
    keras.utils.set_random_seed(0)
    model = VQVAE(
        input_channels=1,
        downsample=2,
        hidden_units=8,
        residual_units=4,
        num_residual_blocks=1,
        num_codes=16,
        code_dim=4,
        quantizer=kind,
        quantizer_config=config,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = rng.random((16, 8, 8, 1)).astype("float32")
    history = model.fit(images, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    codes = model.codes(images[:2])
    assert codes.dtype == tf.int32
    assert tuple(codes.shape) == (2, 4, 4) + tuple(model.quantizer.code_shape)
    assert model.decode_codes(codes).shape == (2, 8, 8, 1)
    if kind == "residual":  # the coarse decode takes the first stage only
        assert model.decode_codes(codes[..., :1]).shape == (2, 8, 8, 1)
    reloaded = keras.models.load_model(_save(model, tmp_path))
    np.testing.assert_array_equal(reloaded.codes(images[:2]).numpy(), codes.numpy())


def _save(model, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    return path


def test_vqvae_decode_codes_checks_the_stage_axis():
    model = VQVAE(
        input_channels=1,
        downsample=2,
        hidden_units=8,
        residual_units=4,
        num_residual_blocks=0,
        num_codes=8,
        code_dim=4,
        quantizer="residual",
        quantizer_config=dict(num_stages=3),
    )
    model(np.zeros((1, 4, 4, 1), "float32"))
    with pytest.raises(
        ValueError, match=r"rank 4 \(batch \+ 2 spatial axes \+ 1 code axis\); received shape \(1, 2, 2\)"
    ):
        model.decode_codes(np.zeros((1, 2, 2), "int32"))

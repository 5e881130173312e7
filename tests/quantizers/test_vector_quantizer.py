"""Quantizer maths against NumPy references, state rules, and bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from vqvae_tf.quantizers.ema import VectorQuantizerEMA
from vqvae_tf.quantizers.vector_quantizer import VectorQuantizer


def np_nearest(x, codebook):
    d = ((x[:, None, :] - codebook[None, :, :]) ** 2).sum(-1)
    return d.argmin(1)


def np_perplexity(idx, k):
    p = np.bincount(idx, minlength=k) / len(idx)
    return np.exp(-(p * np.log(p + 1e-10)).sum())


def np_ema_run(batches, codebook, decay, eps):
    """The zero-debiased EMA update of the docstring, written out in NumPy."""
    k, d = codebook.shape
    cs_h, dw_h = np.zeros(k), np.zeros((k, d))
    for t, x in enumerate(batches, start=1):
        idx = np_nearest(x, codebook)
        counts = np.bincount(idx, minlength=k).astype(np.float64)
        sums = np.zeros((k, d))
        np.add.at(sums, idx, x)
        cs_h = decay * cs_h + (1 - decay) * counts
        dw_h = decay * dw_h + (1 - decay) * sums
        bias = 1 - decay**t
        cs, dw = cs_h / bias, dw_h / bias
        n = cs.sum()
        codebook = dw / ((cs + eps) / (n + k * eps) * n)[:, None]
    return codebook


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_straight_through_gradient_reaches_encoder_exactly(rng):
    vq = VectorQuantizer(num_codes=8, code_dim=3)
    z = tf.Variable(rng.standard_normal((2, 4, 4, 3)).astype("float32"))
    upstream = tf.constant(rng.standard_normal((2, 4, 4, 3)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        out = vq(z)
        decoder_side = tf.reduce_sum(out["quantized"] * upstream)
    # d(decoder loss)/dz == d(decoder loss)/d(quantized): the identity.
    np.testing.assert_array_equal(tape.gradient(decoder_side, z).numpy(), upstream.numpy())
    # ...and the quantized values are exactly the chosen codes.
    chosen = tf.gather(vq.codebook, out["indices"]).numpy()
    np.testing.assert_allclose(out["quantized"].numpy(), chosen, atol=1e-6)


@pytest.mark.parametrize("cls", [VectorQuantizer, VectorQuantizerEMA])
def test_codes_losses_and_perplexity_match_numpy(cls, rng):
    vq = cls(num_codes=32, code_dim=6, commitment_cost=0.3)
    x = rng.standard_normal((5, 7, 6)).astype("float32")
    out = vq(x)
    codebook = vq.codebook.numpy()
    flat = x.reshape(-1, 6)
    idx = np_nearest(flat, codebook)
    np.testing.assert_array_equal(out["indices"].numpy().reshape(-1), idx)
    assert out["indices"].dtype == tf.int32 and out["indices"].shape == (5, 7)
    mse = ((flat - codebook[idx]) ** 2).mean()
    np.testing.assert_allclose(float(out["commitment_loss"]), mse, rtol=1e-5)
    expected_codebook_loss = mse if cls is VectorQuantizer else 0.0
    np.testing.assert_allclose(float(out["codebook_loss"]), expected_codebook_loss, rtol=1e-5)
    np.testing.assert_allclose(float(out["loss"]), expected_codebook_loss + 0.3 * mse, rtol=1e-5)
    np.testing.assert_allclose(float(out["perplexity"]), np_perplexity(idx, 32), rtol=1e-5)
    np.testing.assert_allclose(float(out["usage"]), len(set(idx)) / 32)
    np.testing.assert_array_equal(out["counts"].numpy(), np.bincount(idx, minlength=32))
    np.testing.assert_array_equal(vq.codes(x).numpy(), out["indices"].numpy())
    np.testing.assert_allclose(vq.lookup(out["indices"]).numpy(), codebook[idx].reshape(5, 7, 6))


def test_codebook_gradient_moves_codes_toward_inputs(rng):
    vq = VectorQuantizer(num_codes=4, code_dim=2)
    x = rng.standard_normal((64, 2)).astype("float32")
    with tf.GradientTape() as tape:
        loss = vq(x)["codebook_loss"]
    grad = tf.convert_to_tensor(tape.gradient(loss, vq.codebook)).numpy()
    codebook = vq.codebook.numpy()
    idx = np_nearest(x, codebook)
    expected = np.zeros_like(codebook)
    np.add.at(expected, idx, 2 * (codebook[idx] - x) / x.size)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-7)


def test_loss_gradients_follow_the_stop_gradients(rng):
    # loss = ||sg(z) - e||^2 + beta ||z - sg(e)||^2: the encoder gets only
    # beta's share and the codebook only the codebook term's.
    vq = VectorQuantizer(num_codes=4, code_dim=3, commitment_cost=0.25)
    z = tf.Variable(rng.standard_normal((50, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = vq(z)["loss"]
    grad_z, grad_codebook = tape.gradient(loss, [z, vq.codebook])
    x, codebook = z.numpy(), vq.codebook.numpy()
    idx = np_nearest(x, codebook)
    diff = x - codebook[idx]
    np.testing.assert_allclose(grad_z.numpy(), 0.25 * 2 * diff / x.size, rtol=1e-5, atol=1e-8)
    expected = np.zeros_like(codebook)
    np.add.at(expected, idx, -2 * diff / x.size)
    np.testing.assert_allclose(tf.convert_to_tensor(grad_codebook).numpy(), expected, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_picks_the_float32_codes(policy, rng):
    # Values this large overflow float16 distances (|x|^2 ~ 6e4): a quantizer
    # that searched in the compute dtype would pick wrong codes.
    x = (30 * rng.standard_normal((256, 64))).astype("float32")
    reference = VectorQuantizer(num_codes=128, code_dim=64, seed=7)
    keras.mixed_precision.set_global_policy(policy)
    vq = VectorQuantizer(num_codes=128, code_dim=64, seed=7)
    low = tf.cast(x, vq.compute_dtype)
    out = vq(low)
    keras.mixed_precision.set_global_policy("float32")
    reference.build((None, 64))
    reference.codebook.assign(vq.codebook.numpy())
    expected = reference.codes(tf.cast(low, tf.float32)).numpy()
    np.testing.assert_array_equal(out["indices"].numpy(), expected)
    assert out["quantized"].dtype == low.dtype
    assert vq.codebook.dtype == "float32"


def test_ema_codebook_follows_the_numpy_formula(rng):
    vq = VectorQuantizerEMA(num_codes=16, code_dim=3, decay=0.9, epsilon=1e-5)
    centers = rng.standard_normal((16, 3)) * 2
    batches = [
        (centers[rng.integers(0, 16, 200)] + 0.1 * rng.standard_normal((200, 3))).astype("float32") for _ in range(5)
    ]
    vq.build((None, 3))
    start = vq.codebook.numpy().astype(np.float64)
    step = tf.function(lambda x: vq(x, training=True))
    for batch in batches:
        step(batch)
    expected = np_ema_run([b.astype(np.float64) for b in batches], start, 0.9, 1e-5)
    np.testing.assert_allclose(vq.codebook.numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [VectorQuantizer, VectorQuantizerEMA])
def test_state_does_not_move_without_training(cls, rng):
    vq = cls(num_codes=8, code_dim=2, dead_code_threshold=5.0)
    x = rng.standard_normal((40, 2)).astype("float32")
    vq.build((None, 2))
    before = [w.numpy().copy() for w in vq.weights]
    vq(x)
    vq(x, training=False)
    tf.function(lambda v: vq(v, training=False))(x)
    for w, b in zip(vq.weights, before):
        np.testing.assert_array_equal(w.numpy(), b, err_msg=w.path)
    vq(x, training=True)
    assert any(not np.array_equal(w.numpy(), b) for w, b in zip(vq.non_trainable_weights, before[1:]))


def test_dead_code_restart_revives_codes_and_resets_their_ema_state(rng):
    vq = VectorQuantizerEMA(num_codes=8, code_dim=2, decay=0.9, dead_code_threshold=1.0, seed=3)
    vq.build((None, 2))
    # Codes 0..3 sit on the data; codes 4..7 are far away and never chosen.
    data_centers = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], "float32")
    vq.codebook.assign(np.concatenate([data_centers, 100 + data_centers]))
    x = (data_centers[rng.integers(0, 4, 256)] + 0.05 * rng.standard_normal((256, 2))).astype("float32")
    vq(x, training=True)
    codebook = vq.codebook.numpy()
    # The far codes were replaced by vectors of the batch...
    for row in codebook[4:]:
        assert np.min(np.abs(x - row).sum(axis=1)) < 1e-6, row
    # ...and their EMA state now describes that vector: dw / cluster_size == code.
    bias = 1 - 0.9 ** int(vq.steps.numpy())
    cluster = vq.ema_cluster_size.numpy()[4:] / bias
    np.testing.assert_allclose(cluster, 1.0, rtol=1e-6)
    np.testing.assert_allclose(vq.ema_dw.numpy()[4:] / bias / cluster[:, None], codebook[4:], rtol=1e-5)
    # The next update keeps the revived codes near the data instead of
    # snapping them back to their old averages.
    vq(x, training=True)
    assert np.abs(vq.codebook.numpy()[4:]).max() < 2.0


def test_kmeans_init_uses_most_codes_on_clustered_data(rng):
    k = 32
    centers = rng.uniform(-5, 5, (k, 4))
    x = (centers[rng.integers(0, k, 4000)] + 0.05 * rng.standard_normal((4000, 4))).astype("float32")
    random_init = VectorQuantizer(num_codes=k, code_dim=4, seed=0)
    random_usage = float(random_init(x)["usage"])
    vq = VectorQuantizer(num_codes=k, code_dim=4, kmeans_init=True, seed=0)
    vq.initialize_codebook(x)
    out = vq(x)
    assert bool(vq.initialized.numpy())
    assert float(out["usage"]) >= 0.9, float(out["usage"])
    assert float(out["usage"]) > random_usage
    # Every k-means centre sits on one of the true clusters.
    nearest = np.sqrt(((vq.codebook.numpy()[:, None] - centers[None]) ** 2).sum(-1)).min(1)
    assert np.median(nearest) < 0.1


def test_l2_normalize_gives_unit_codes(rng):
    vq = VectorQuantizer(num_codes=8, code_dim=3, l2_normalize=True)
    out = vq(rng.standard_normal((10, 3)).astype("float32") * 7)
    np.testing.assert_allclose(np.linalg.norm(out["quantized"].numpy(), axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "inputs,error,message",
    [
        (np.zeros((4, 5), "float32"), ValueError, r"last axis code_dim=3, .*received shape \(4, 5\)"),
        (np.zeros((4,), "float32"), ValueError, r"rank >= 2.*received shape \(4,\)"),
        (np.zeros((4, 3), "int32"), TypeError, "floating-point inputs; received dtype int32"),
        (np.full((4, 3), np.nan, "float32"), ValueError, r"non-finite values \(NaN or Inf\)"),
    ],
)
def test_bad_inputs_get_clear_errors(inputs, error, message):
    with pytest.raises(error, match=message):
        VectorQuantizer(num_codes=8, code_dim=3)(inputs)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(num_codes=1, code_dim=3), "num_codes` must be an int >= 2; received 1"),
        (dict(num_codes=8, code_dim=0), "code_dim` must be an int >= 1"),
        (dict(num_codes=8, code_dim=3, commitment_cost=-1), "commitment_cost"),
        (dict(num_codes=8, code_dim=3, decay=1.0), "decay` must be a finite number >= 0 and < 1; received 1.0"),
        (dict(num_codes=8, code_dim=3, epsilon=0.0), "epsilon` must be a finite number > 0; received 0.0"),
        (dict(num_codes=8.5, code_dim=3), "num_codes` must be an int"),
    ],
)
def test_bad_arguments_get_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VectorQuantizerEMA(**kwargs)


def test_lookup_rejects_out_of_range_and_float_indices():
    vq = VectorQuantizer(num_codes=8, code_dim=3)
    vq.build((None, 3))
    with pytest.raises(ValueError, match=r"indices in \[0, 8\); received values in \[0, 9\]"):
        vq.lookup(np.array([0, 9]))
    with pytest.raises(TypeError, match="integer code indices"):
        vq.lookup(np.array([0.0, 1.0]))

"""Tests of the autoregressive priors (GatedPixelCNN, TransformerPrior) and
their likelihood helpers and unigram baseline."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from vqvae_tf.priors.likelihood import bits_per_dim, nll_per_code, vqvae_bits_per_dim
from vqvae_tf.priors.pixelcnn import GatedPixelCNN
from vqvae_tf.priors.transformer import TransformerPrior
from vqvae_tf.priors.unigram import UnigramPrior

K = 16
H = W = 6


def make_pixelcnn(num_classes=0, **kwargs):
    kwargs = {"channels": 16, "num_layers": 2, "map_shape": (H, W)} | kwargs
    return GatedPixelCNN(K, num_classes=num_classes, **kwargs)


def make_transformer(num_classes=0, **kwargs):
    kwargs = {"embed_dim": 32, "num_heads": 2, "num_layers": 2} | kwargs
    return TransformerPrior(K, (H, W), num_classes=num_classes, **kwargs)


MAKERS = {"pixelcnn": make_pixelcnn, "transformer": make_transformer}


def random_codes(n, seed=0):
    return np.random.default_rng(seed).integers(0, K, (n, H, W)).astype(np.int32)


def striped_codes(n, seed=0):
    """Maps whose rows are constant with a random code per row: each code
    after the first of its row is its left neighbour (about ln(K) / W nats
    per code for an autoregressive model), while every position's marginal is
    uniform (ln(K) nats for the per-position unigram)."""
    rows = np.random.default_rng(seed).integers(0, K, (n, H, 1))
    return np.repeat(rows, W, axis=2).astype(np.int32)


def built(model):
    labels = np.zeros(2, np.int32) if model.num_classes else None
    model(random_codes(2), labels)
    return model


# ----------------------------------------------------------------------------
# Causality


def _gradient_per_position(model, position, labels=None):
    embeddings = model.embed(tf.constant(random_codes(1, seed=position)))
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        logits = model.logits_from_embeddings(embeddings, labels)
        row, col = divmod(position, W)
        # A random projection so no logit direction hides a dependency.
        weights = tf.random.stateless_normal((K,), seed=(position, 1))
        target = tf.reduce_sum(logits[0, row, col] * weights)
    gradient = tape.gradient(target, embeddings)
    return tf.reduce_sum(tf.abs(gradient[0]), axis=-1).numpy().reshape(-1)


# Row starts and ends are where blind-spot and row-wrapping bugs show.
POSITIONS = [0, 1, W - 1, W, W + 1, 2 * W - 1, 3 * W + 2, H * W - W, H * W - 1]


@pytest.mark.parametrize("num_classes", [0, 3])
@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_logits_depend_only_on_earlier_positions(kind, num_classes):
    model = built(MAKERS[kind](num_classes))
    labels = tf.constant([1]) if num_classes else None
    for position in POSITIONS:
        magnitude = _gradient_per_position(model, position, labels)
        assert np.all(magnitude[position:] == 0.0), (kind, position, magnitude)
        if position == 0:
            continue
        row, col = divmod(position, W)
        if kind == "transformer":
            assert np.all(magnitude[:position] > 0), (kind, position, magnitude)
            continue
        # A convolution's field is local: the end of the previous row is out
        # of reach of a row start, but the left neighbour is always in it.
        if col > 0:
            assert magnitude[position - 1] > 0, (kind, position)
        if row > 0:
            # Directly above, and above-right: the original PixelCNN's blind
            # spot is up and to the right of the current position.
            assert magnitude[position - W] > 0, (kind, position)
            if col < W - 1:
                assert magnitude[position - W + 1] > 0, (kind, position)


# ----------------------------------------------------------------------------
# Likelihood


def _zero_output_layer(model):
    layer = model.head_logits if isinstance(model, GatedPixelCNN) else model.head
    for weight in layer.weights:
        weight.assign(tf.zeros_like(weight))


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_uniform_logits_cost_log2_k_bits_per_code(kind):
    model = built(MAKERS[kind]())
    _zero_output_layer(model)
    codes = random_codes(5)
    nats = nll_per_code(model, codes)
    assert nats == pytest.approx(math.log(K), rel=1e-6)
    assert bits_per_dim(nats * H * W, H * W) == pytest.approx(math.log2(K), rel=1e-6)
    model.compile(keras.optimizers.Adam(0.0))
    metrics = model.evaluate(codes, batch_size=5, verbose=0, return_dict=True)
    assert metrics["bits_per_code"] == pytest.approx(4.0, rel=1e-5)
    assert metrics["nll"] == pytest.approx(math.log(K), rel=1e-5)
    np.testing.assert_allclose(model.log_prob(codes), -H * W * math.log(K), rtol=1e-5)


def test_bits_per_dim_hand_worked():
    # An 8x8 RGB image (192 dims) at 192 * ln 2 nats is exactly 1 bit/dim.
    assert bits_per_dim(192 * math.log(2), 192) == pytest.approx(1.0)
    assert bits_per_dim(100.0, 50) == pytest.approx(2.0 / math.log(2))
    # 32x32x3 image at 2 bits/dim for the decoder, plus a uniform prior over an
    # 8x8 map with K=512 (9 bits per code): (6144 + 576) / 3072 bits/dim.
    recon = 2 * 3072 * math.log(2)
    prior = 64 * math.log(512)
    assert vqvae_bits_per_dim(recon, prior, 3072) == pytest.approx(2.1875)
    with pytest.raises(ValueError, match="num_dims"):
        bits_per_dim(1.0, 0)


def test_unigram_counts_with_laplace_smoothing():
    codes = np.zeros((3, H, W), np.int32)
    codes[:, 0, 0] = [1, 1, 2]
    unigram = UnigramPrior(K, (H, W), alpha=1.0).fit(codes)
    # p(code 1 at (0, 0)) = (2 + 1) / (3 + 16 * 1).
    log_p = unigram.logits(codes[:1])[0, 0, 0].numpy()
    assert math.exp(log_p[1]) == pytest.approx(3 / 19)
    assert math.exp(log_p[5]) == pytest.approx(1 / 19)
    assert math.exp(unigram.logits(codes[:1])[0, 1, 1, 0]) == pytest.approx(4 / 19)


# ----------------------------------------------------------------------------
# Sampling


@pytest.mark.parametrize("num_classes", [0, 3])
@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_sampling_contract(kind, num_classes):
    model = built(MAKERS[kind](num_classes))
    labels = np.array([0, 1, 2, 0]) if num_classes else None
    samples = model.sample(4, labels=labels, seed=7)
    assert samples.dtype == tf.int32
    assert samples.shape == (4, H, W)
    assert samples.numpy().min() >= 0 and samples.numpy().max() < K
    np.testing.assert_array_equal(samples, model.sample(4, labels=labels, seed=7))
    assert not np.array_equal(samples, model.sample(4, labels=labels, seed=8))

    greedy = model.sample(4, labels=labels, temperature=0.0, seed=1)
    np.testing.assert_array_equal(greedy, model.sample(4, labels=labels, temperature=0.0, seed=2))
    np.testing.assert_array_equal(greedy, model.sample(4, labels=labels, top_k=1, seed=3))
    # A greedy map is its own argmax at every position: checks that the
    # decoding loop writes each code where the model predicts it.
    logits = model.logits(greedy, labels)
    np.testing.assert_array_equal(greedy, tf.argmax(logits, axis=-1, output_type=tf.int32))

    top3 = model.sample(4, labels=labels, top_k=3, seed=5).numpy()
    logits = model.logits(top3, labels).numpy()
    third_best = np.sort(logits, axis=-1)[..., -3]
    chosen = np.take_along_axis(logits, top3[..., None], axis=-1)[..., 0]
    assert np.all(chosen >= third_best)


@pytest.mark.parametrize("num_classes, options", [(0, {"temperature": 1.0}), (3, {"temperature": 0.7, "top_k": 4})])
def test_transformer_cache_and_no_cache_draw_identical_samples(num_classes, options):
    model = built(make_transformer(num_classes))
    labels = np.array([2, 0, 1]) if num_classes else None
    cached = model.sample(3, labels=labels, seed=11, use_cache=True, **options)
    uncached = model.sample(3, labels=labels, seed=11, use_cache=False, **options)
    np.testing.assert_array_equal(cached, uncached)


# ----------------------------------------------------------------------------
# Training


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_fit_learns_structure_and_beats_unigram(kind):
    train, test = striped_codes(256, seed=1), striped_codes(64, seed=2)
    model = built(MAKERS[kind]())
    before = nll_per_code(model, test)
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=False)
    dataset = tf.data.Dataset.from_tensor_slices(train).shuffle(256, seed=0).batch(32).repeat()
    history = model.fit(dataset, steps_per_epoch=60, epochs=1, verbose=0)
    after = nll_per_code(model, test)
    unigram = nll_per_code(UnigramPrior(K, (H, W)).fit(train), test)
    assert set(history.history) >= {"loss", "nll", "bits_per_code"}
    assert after < 0.5 * before
    assert after < 0.8 * unigram, (after, unigram)


@pytest.mark.slow
def test_conditional_fit_uses_labels():
    # Class 0: horizontal stripes; class 1: vertical stripes.
    codes = striped_codes(128, seed=3)
    labels = np.arange(128) % 2
    codes[labels == 1] = np.transpose(codes[labels == 1], (0, 2, 1))
    model = built(make_pixelcnn(num_classes=2))
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=False)
    dataset = tf.data.Dataset.from_tensor_slices((codes, labels)).batch(32).repeat()
    history = model.fit(dataset, steps_per_epoch=40, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    right = nll_per_code(model, codes, labels)
    wrong = nll_per_code(model, codes, 1 - labels)
    assert right < wrong


# ----------------------------------------------------------------------------
# Serialization


@pytest.mark.parametrize("num_classes", [0, 3])
@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_keras_file_round_trip_gives_identical_logits(kind, num_classes, tmp_path):
    model = built(MAKERS[kind](num_classes))
    model.compile(keras.optimizers.Adam(1e-3))
    codes = random_codes(3)
    labels = np.array([0, 2, 1]) if num_classes else None
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert type(restored) is type(model)
    np.testing.assert_array_equal(model.logits(codes, labels), restored.logits(codes, labels))
    assert restored.get_config() == model.get_config()
    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config()


# ----------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_bad_codes_raise_clear_errors(kind):
    model = built(MAKERS[kind]())
    with pytest.raises(ValueError, match="integer.*received dtype float32"):
        model.logits(np.zeros((1, H, W), np.float32))
    with pytest.raises(ValueError, match=r"rank 3.*received shape \(6, 6\)"):
        model.logits(np.zeros((H, W), np.int32))
    with pytest.raises(ValueError, match=r"\[0, 16\).*received values in \[16, 16\]"):
        model.logits(np.full((1, H, W), K, np.int32))
    with pytest.raises(ValueError, match=r"received values in \[-1, 0\]"):
        model.logits(-np.eye(H, dtype=np.int32)[None])
    with pytest.raises(ValueError, match=r"size \(6, 6\).*received shape \(1, 5, 6\)"):
        model.logits(np.zeros((1, 5, W), np.int32))
    with pytest.raises(ValueError, match="unconditional.*received `labels`"):
        model.logits(random_codes(2), labels=np.array([0, 1]))
    with pytest.raises(ValueError, match="unconditional"):
        nll_per_code(model, random_codes(2), labels=[0, 1])
    with pytest.raises(ValueError, match="temperature.*received -1"):
        model.sample(2, temperature=-1.0)
    with pytest.raises(ValueError, match=r"top_k.*>= 1 and <= 16; received 0"):
        model.sample(2, top_k=0)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_conditional_model_needs_valid_labels(kind):
    model = built(MAKERS[kind](num_classes=3))
    with pytest.raises(ValueError, match="class-conditional.*received None"):
        model.logits(random_codes(2))
    with pytest.raises(ValueError, match="class-conditional"):
        model.sample(2)
    with pytest.raises(ValueError, match=r"one label per code map \(2\); received 3"):
        model.logits(random_codes(2), labels=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\[0, 3\); received values in \[0, 3\]"):
        model.logits(random_codes(2), labels=np.array([0, 3]))


def test_model_arguments_are_validated():
    with pytest.raises(ValueError, match="map_shape.*required"):
        TransformerPrior(K, None)
    with pytest.raises(ValueError, match="num_codes.*received 1"):
        GatedPixelCNN(1)
    with pytest.raises(ValueError, match="kernel_size.*received 4"):
        GatedPixelCNN(K, kernel_size=4)
    with pytest.raises(ValueError, match="`num_classes` must be an int >= 0; received True"):
        GatedPixelCNN(K, num_classes=True)
    with pytest.raises(ValueError, match="`alpha` must be a finite number > 0; received 0.0"):
        UnigramPrior(K, (H, W), alpha=0.0)
    with pytest.raises(ValueError, match="divisible"):
        TransformerPrior(K, (H, W), embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="map_shape=None"):
        GatedPixelCNN(K).sample(1)
    with pytest.raises(ValueError, match=r"samples maps of size \(6, 6\)"):
        make_transformer().sample(1, map_shape=(4, 4))

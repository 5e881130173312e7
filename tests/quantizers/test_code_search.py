"""Nearest-code search: exactness of the memory-bounded (blocked) search."""

import numpy as np
import pytest
import tensorflow as tf

from vqvae_tf.quantizers.code_search import (
    MIN_CHUNK_CODES,
    MIN_CHUNK_ROWS,
    nearest_codes,
    plan_search,
)
from vqvae_tf.quantizers.ema import VectorQuantizerEMA
from vqvae_tf.quantizers.vector_quantizer import VectorQuantizer

# Two 256 x 256 float32 blocks: the smallest budget, which splits codes too.
TINY_BUDGET = 2 * MIN_CHUNK_ROWS * MIN_CHUNK_CODES * 4


def _data(num_vectors, code_dim, num_codes, seed=0):
    """Random vectors and codebook with exact ties planted across code blocks.

    Codes 1, 300 and 599 are copies of code 1 (so blocks 0, 1 and 2 of a
    256-code split hold the same vector), code 513 copies 5; the first rows
    are copies of those codes, whose nearest code is an exact tie that must
    go to the lowest index.
    """
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((num_vectors, code_dim)).astype(np.float32)
    codebook = rng.standard_normal((num_codes, code_dim)).astype(np.float32)
    codebook[[300, 599]] = codebook[1]
    codebook[513] = codebook[5]
    vectors[:40] = codebook[[599, 300, 513, 1] * 10]
    return vectors, codebook


def _numpy_nearest(vectors, codebook):
    """float64 argmin of squared distances, and the gap to the runner-up."""
    x, e = vectors.astype(np.float64), codebook.astype(np.float64)
    dist = (x**2).sum(1)[:, None] - 2 * x @ e.T + (e**2).sum(1)[None, :]
    order = np.sort(dist, axis=1)
    return dist.argmin(axis=1), order[:, 1] - order[:, 0]


def _assert_matches_numpy(codes, vectors, codebook):
    reference, gap = _numpy_nearest(vectors, codebook)
    # Where float32 rounding cannot swap the two nearest codes the answer is
    # unique; exact ties (gap 0) must go to the lowest index, as argmin does.
    decided = (gap > 1e-3) | (gap == 0)
    assert decided.mean() > 0.95
    np.testing.assert_array_equal(np.asarray(codes)[decided], reference[decided])


def test_plan_small_search_is_one_piece():
    plan = plan_search(1000, 512)
    assert not plan.chunked
    assert (plan.num_row_chunks, plan.num_code_chunks) == (1, 1)


def test_plan_splits_rows_then_codes():
    # 256 MiB: blocks of 2048 x 16384 (two of them fit), 32 blocks.
    plan = plan_search(65536, 16384, 256 * 2**20)
    assert (plan.rows_per_chunk, plan.codes_per_chunk) == (2048, 16384)
    assert (plan.num_row_chunks, plan.num_code_chunks) == (32, 1)
    assert 2 * plan.score_block_bytes <= 256 * 2**20
    # K = 65,536 codes never materialise the 16 GiB matrix.
    plan = plan_search(65536, 65536, 256 * 2**20)
    assert plan.score_block_bytes <= 128 * 2**20 and plan.num_row_chunks == 128
    # The tiny budget forces the minimum blocks: 4 row blocks (1000 rows,
    # the last one padded) times 3 code blocks (600 codes).
    plan = plan_search(1000, 600, TINY_BUDGET)
    assert (plan.rows_per_chunk, plan.codes_per_chunk) == (MIN_CHUNK_ROWS, MIN_CHUNK_CODES)
    assert (plan.num_row_chunks, plan.num_code_chunks) == (4, 3)
    assert plan_search(None, 600, TINY_BUDGET).num_row_chunks is None


@pytest.mark.parametrize("budget", [0, TINY_BUDGET - 1, 1.5e9, True, "1GB"])
def test_plan_rejects_bad_budgets(budget):
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        plan_search(1000, 600, budget)


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same width"):
        nearest_codes(tf.zeros((4, 3)), tf.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        nearest_codes(tf.zeros((4,)), tf.zeros((5, 2)))


@pytest.mark.parametrize(
    "num_vectors,budget,num_codes",
    [
        (1000, TINY_BUDGET, 600),  # rows and codes split, last row block padded
        (1000, 2 * 256 * 300 * 4, 600),  # codes split 2 ways (300 + 300 padded)
        (1000, 2 * 300 * 600 * 4, 600),  # rows split only: 300 + 300 + 300 + 100
        (600, 10 * 2**20, 600),  # fits: one piece
        (100, TINY_BUDGET, 2000),  # one short row block, 8 code blocks (the last 208)
    ],
)
def test_blocked_equals_one_shot_exactly(num_vectors, budget, num_codes):
    vectors, codebook = _data(num_vectors, 16, num_codes)
    one_shot = nearest_codes(vectors, codebook, memory_budget_bytes=None).numpy()
    blocked = nearest_codes(vectors, codebook, memory_budget_bytes=budget).numpy()
    np.testing.assert_array_equal(blocked, one_shot)
    # Ties across code blocks go to the lowest index.
    np.testing.assert_array_equal(blocked[:4], [1, 1, 5, 1])
    _assert_matches_numpy(blocked, vectors, codebook)


@pytest.mark.parametrize("budget", [TINY_BUDGET, 2 * 300 * 600 * 4])
def test_blocked_search_makes_no_copy_of_the_vectors(budget):
    """Blocks are taken inside the loop: outside it, no op makes a tensor of
    the vectors' size (padding all of them to whole blocks, or unstacking
    them into a list of blocks, costs N * D * 4 bytes each)."""
    vectors, codebook = _data(1000, 16, 600)
    graph = (
        tf.function(lambda x: nearest_codes(x, codebook, memory_budget_bytes=budget))
        .get_concrete_function(tf.TensorSpec(vectors.shape, tf.float32))
        .graph
    )
    kinds = {op.type for op in graph.get_operations()}
    assert kinds & {"While", "StatelessWhile"}
    # These forward the input buffer (a while loop passes the tensors it
    # captures through as loop variables).
    forwarding = {"Placeholder", "Identity", "StopGradient", "While", "StatelessWhile"}
    copies = [
        (op.type, out.shape)
        for op in graph.get_operations()
        if op.type not in forwarding
        for out in op.outputs
        if out.dtype == tf.float32 and out.shape.is_fully_defined() and out.shape.num_elements() >= vectors.size
    ]
    assert not copies


def test_dynamic_number_of_vectors_under_tf_function():
    vectors, codebook = _data(1000, 16, 600)
    search = tf.function(
        lambda x: nearest_codes(x, codebook, memory_budget_bytes=TINY_BUDGET),
        input_signature=[tf.TensorSpec([None, 16], tf.float32)],
    )
    one_shot = nearest_codes(vectors, codebook, memory_budget_bytes=None).numpy()
    for rows in (1000, 513, 40):  # blocked, blocked with padding, one piece
        np.testing.assert_array_equal(search(vectors[:rows]).numpy(), one_shot[:rows])


def test_jit_compile_blocked_equals_jit_one_shot():
    vectors, codebook = _data(700, 8, 600)
    signature = [tf.TensorSpec([None, 8], tf.float32)]
    blocked = tf.function(
        lambda x: nearest_codes(x, codebook, memory_budget_bytes=TINY_BUDGET),
        input_signature=signature,
        jit_compile=True,
    )(vectors).numpy()
    one_shot = tf.function(lambda x: nearest_codes(x, codebook, memory_budget_bytes=None), jit_compile=True)(
        vectors
    ).numpy()
    np.testing.assert_array_equal(blocked, one_shot)
    _assert_matches_numpy(blocked, vectors, codebook)


def test_static_small_search_graph_is_matmul_and_argmax():
    """Exporters look for the one-shot pattern (matmul feeding an argmax)."""
    codebook = tf.random.normal((64, 8))
    graph = (
        tf.function(lambda x: nearest_codes(x, codebook))
        .get_concrete_function(tf.TensorSpec([49, 8], tf.float32))
        .graph
    )
    kinds = {op.type for op in graph.get_operations()}
    assert {"MatMul", "ArgMax"} <= kinds
    assert not kinds & {"While", "StatelessWhile", "If", "StatelessIf"}


@pytest.mark.parametrize("cls", [VectorQuantizer, VectorQuantizerEMA])
def test_quantizer_gradients_are_straight_through(cls):
    """The search is outside the gradient: inputs get the upstream gradient as is."""
    layer = cls(num_codes=600, code_dim=16, seed=0, commitment_cost=0.0)
    inputs = tf.constant(_data(300, 16, 600)[0].reshape(3, 100, 16))
    upstream = tf.random.stateless_normal(inputs.shape, seed=(1, 2))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        out = layer(inputs, training=False)
    grad = tape.gradient(out["quantized"], inputs, output_gradients=upstream)
    np.testing.assert_allclose(grad.numpy(), upstream.numpy(), rtol=0, atol=1e-6)


def test_auto_budget_chunks_static_shapes_only():
    codebook = tf.random.normal((MIN_CHUNK_CODES, 4))

    def graph_ops(batch):
        fn = tf.function(lambda x: nearest_codes(x, codebook))
        return {
            op.type for op in fn.get_concrete_function(tf.TensorSpec([batch, 4], tf.float32)).graph.get_operations()
        }

    # 2**19 rows x 256 codes x 4 bytes = 512 MiB > the 256 MiB default.
    assert "While" in graph_ops(2**19) or "StatelessWhile" in graph_ops(2**19)
    assert not graph_ops(None) & {"While", "StatelessWhile", "If", "StatelessIf"}
    with pytest.raises(ValueError, match="auto"):
        nearest_codes(tf.zeros((4, 4)), codebook, memory_budget_bytes="big")

"""Nearest-code search and code-histogram statistics, shared by every quantizer.

The search scores every (vector, code) pair, so its one large temporary is the
`(N, K)` float32 score matrix: 128 MiB for N = 65,536 vectors and K = 512
codes, 16 GiB for K = 65,536. `nearest_codes` keeps that matrix under a memory
budget by searching blocks of rows (and, for very large codebooks, blocks of
codes with a running best), and returns exactly the codes of the one-shot
search: same scores bit for bit, same tie-breaking (lowest index).
"""

import dataclasses
import math

import tensorflow as tf

from vqvae_tf.utils.checks import check_int, is_int

#: Default bound on the bytes of the float32 score block held at once.
DEFAULT_MEMORY_BUDGET_BYTES = 256 * 2**20

# Blocks are never smaller than this. Exactness needs the blocked matmul to
# give every score the same bits as the one-shot matmul; oneDNN uses another
# kernel (another summation order) for matrices of a handful of rows or of one
# column, so blocks stay well clear of those shapes.
MIN_CHUNK_ROWS = 256
MIN_CHUNK_CODES = 256

_SCORE_BYTES = 4  # float32
# A blocked search can hold two score-sized temporaries at once (a block's
# scores while the previous block's are being released): with blocks of
# 32 MiB and 128 MiB, bench/chunked_search.py measured a resident-memory rise
# of 1.4 and 1.5 blocks, so a block gets half the budget. A one-shot search
# holds one (the bias-add is in place).
_BLOCKS_PER_BUDGET = 2


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    """How `nearest_codes` splits a search to keep its score block in budget.

    Attributes:
        rows_per_chunk: vectors searched together (the last row block is
            filled up to this size with copies of its last row, so every
            block has the same shape).
        codes_per_chunk: codes scored together; equals the number of codes
            unless one row block of all codes exceeds the budget.
        num_row_chunks: number of row blocks, or None when the number of
            vectors is only known at run time.
        num_code_chunks: number of code blocks.
        score_block_bytes: bytes of one float32 score block, the peak size of
            the search's temporaries.
    """

    rows_per_chunk: int
    codes_per_chunk: int
    num_row_chunks: object
    num_code_chunks: int
    score_block_bytes: int

    @property
    def chunked(self):
        """Whether the search runs block by block (False: one matmul)."""
        return self.num_row_chunks != 1 or self.num_code_chunks != 1


def plan_search(num_vectors, num_codes, memory_budget_bytes=DEFAULT_MEMORY_BUDGET_BYTES):
    """Block sizes for searching `num_vectors` vectors among `num_codes` codes.

    A search whose whole `(num_vectors, num_codes)` float32 score matrix fits
    in the budget runs in one piece. Otherwise it runs over blocks of
    `rows_per_chunk` vectors, as many as half the budget allows with all
    codes (a blocked search can hold two blocks' scores at once); when even
    `MIN_CHUNK_ROWS` vectors against all codes exceed that, the codes are
    split too.

    Args:
        num_vectors: int, or None when only known at run time (the plan then
            gives block sizes and leaves `num_row_chunks` as None).
        num_codes: int, codebook size K.
        memory_budget_bytes: int, bound on the bytes of the search's score
            temporaries, or None for no bound (one piece). Defaults to
            256 MiB. At least two `MIN_CHUNK_ROWS x MIN_CHUNK_CODES` float32
            blocks (512 KiB). Not counted: inputs, outputs, the per-block
            copies of one row block and one code block (`rows * D` and
            `codes * D` floats; the vectors as a whole are never copied),
            and what TensorFlow keeps after the first search of a shape
            (about 11 MiB, whatever N: a second search adds under 1 MiB).
            So small budgets are exceeded by about that much: at K = 16,384
            and N = 65,536, resident memory rose 15 MiB under a 4 MiB
            budget and 21 MiB under 16 MiB (bench/chunked_search.py).

    Returns:
        A `SearchPlan`.

    Example:

    >>> plan = plan_search(65536, 16384, 256 * 2**20)
    >>> plan.rows_per_chunk, plan.codes_per_chunk, plan.num_row_chunks, plan.num_code_chunks
    (2048, 16384, 32, 1)
    >>> plan.score_block_bytes
    134217728
    """
    num_codes = check_int("num_codes", num_codes, minimum=1)
    if num_vectors is not None:
        num_vectors = check_int("num_vectors", num_vectors, minimum=0)
    if memory_budget_bytes is None:
        return _one_piece(num_vectors, num_codes)
    smallest = _BLOCKS_PER_BUDGET * MIN_CHUNK_ROWS * MIN_CHUNK_CODES * _SCORE_BYTES
    if not is_int(memory_budget_bytes) or memory_budget_bytes < smallest:
        raise ValueError(
            f"`memory_budget_bytes` must be None or an int >= {smallest} ({_BLOCKS_PER_BUDGET} float32 "
            f"score blocks of {MIN_CHUNK_ROWS} x {MIN_CHUNK_CODES}); received {memory_budget_bytes!r}."
        )
    if num_vectors is not None and num_vectors * num_codes * _SCORE_BYTES <= memory_budget_bytes:
        return _one_piece(num_vectors, num_codes)
    budget_scores = int(memory_budget_bytes) // (_BLOCKS_PER_BUDGET * _SCORE_BYTES)
    if budget_scores // num_codes >= MIN_CHUNK_ROWS:
        rows, codes = budget_scores // num_codes, num_codes
    else:
        rows, codes = MIN_CHUNK_ROWS, budget_scores // MIN_CHUNK_ROWS
    num_row_chunks = None if num_vectors is None else max(1, math.ceil(num_vectors / rows))
    return SearchPlan(
        rows_per_chunk=rows,
        codes_per_chunk=codes,
        num_row_chunks=num_row_chunks,
        num_code_chunks=math.ceil(num_codes / codes),
        score_block_bytes=rows * codes * _SCORE_BYTES,
    )


def nearest_codes(vectors, codebook, *, memory_budget_bytes="auto"):
    """Index of the nearest codebook row for each vector (squared L2).

    `argmin ||x - e||^2 = argmax (x.e - ||e||^2 / 2)`: the `||x||^2` term is
    the same for every code, and the bias-add fuses into the matmul on CPU
    (oneDNN `_FusedMatMul`) and into FULLY_CONNECTED in TFLite, so the
    `(N, K)` score matrix is written once and read once by ARG_MAX.
    `tf.argmax` with int32 output converts to the TFLite ARG_MAX builtin,
    unlike `keras.ops.argmin` on floats (docs/design.md, fact 1).

    A search whose score matrix exceeds `memory_budget_bytes` runs block by
    block (see `plan_search`) and returns the same codes. With a static
    number of vectors the choice is made when tracing, so a search that fits
    is the one-shot graph above and nothing else (what the TFLite exporter
    looks for). With an explicit budget and a number of vectors known only at
    run time, the choice is made at run time (`tf.cond`, which exports as
    IF / WHILE ops); the default `"auto"` keeps such graphs one-shot.

    Args:
        vectors: float32 `(N, D)`; N may be unknown (None) when traced.
        codebook: float32 `(K, D)` with static K.
        memory_budget_bytes: int, None or `"auto"`, keyword-only; bound on
            the bytes of the score temporaries (see `plan_search`). None
            searches in one piece whatever the size. `"auto"` (default) means
            `DEFAULT_MEMORY_BUDGET_BYTES` (256 MiB) when N is static and one
            piece when N is only known at run time (serving signatures with
            a dynamic batch keep a plain matmul + argmax graph).

    Returns:
        int32 `(N,)`; ties go to the lowest index.
    """
    vectors = tf.stop_gradient(tf.convert_to_tensor(vectors))
    codebook = tf.stop_gradient(tf.convert_to_tensor(codebook))
    if vectors.shape.rank != 2 or codebook.shape.rank != 2:
        raise ValueError(
            "nearest_codes expects vectors (N, D) and codebook (K, D); received shapes "
            f"{vectors.shape} and {codebook.shape}."
        )
    if vectors.shape[1] is not None and codebook.shape[1] is not None and vectors.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"nearest_codes expects vectors and codebook of the same width D; received {vectors.shape} "
            f"and {codebook.shape}."
        )
    num_codes = codebook.shape[0]
    if isinstance(memory_budget_bytes, str):
        if memory_budget_bytes != "auto":
            raise ValueError(f"`memory_budget_bytes` must be an int, None or 'auto'; received {memory_budget_bytes!r}.")
        memory_budget_bytes = DEFAULT_MEMORY_BUDGET_BYTES if vectors.shape[0] is not None else None
    if memory_budget_bytes is None or num_codes is None:
        return _search(vectors, codebook)
    plan = plan_search(vectors.shape[0], num_codes, memory_budget_bytes)
    if vectors.shape[0] is not None:
        return _chunked_search(vectors, codebook, plan) if plan.chunked else _search(vectors, codebook)
    # int64: N * K overflows int32 at the sizes this is for.
    fits = tf.cast(tf.shape(vectors)[0], tf.int64) * num_codes <= int(memory_budget_bytes) // _SCORE_BYTES
    return tf.cond(fits, lambda: _search(vectors, codebook), lambda: _chunked_search(vectors, codebook, plan))


def _half_sq_norms(codebook):
    return 0.5 * tf.reduce_sum(tf.square(codebook), axis=1)


def _scores(vectors, codebook, half_sq_norms):
    return tf.nn.bias_add(tf.matmul(vectors, codebook, transpose_b=True), -half_sq_norms)


def _search(vectors, codebook):
    return tf.argmax(_scores(vectors, codebook, _half_sq_norms(codebook)), axis=-1, output_type=tf.int32)


def _chunked_search(vectors, codebook, plan):
    rows, codes = plan.rows_per_chunk, plan.codes_per_chunk
    num_codes = codebook.shape[0]
    num_vectors = tf.shape(vectors)[0]
    num_blocks = (num_vectors + rows - 1) // rows
    half_sq_norms = _half_sq_norms(codebook)
    if codes >= num_codes:

        def search_rows(block):
            return tf.argmax(_scores(block, codebook, half_sq_norms), axis=-1, output_type=tf.int32)
    else:
        search_rows = _code_blocked_search(codebook, half_sq_norms, codes, plan.num_code_chunks)

    def search_block(i):
        # Each block is taken from the vectors inside the loop, so no copy of
        # all the vectors is made (padding them all to whole blocks, or
        # unstacking them into blocks, would cost N * D * 4 bytes each).
        block, _ = _block(vectors, i * rows, rows, num_vectors)
        return search_rows(block)

    # One block at a time (parallel_iterations=1) is what bounds the memory.
    found = tf.map_fn(search_block, tf.range(num_blocks), fn_output_signature=tf.int32, parallel_iterations=1)
    return tf.reshape(found, [-1])[:num_vectors]


def _block(tensor, start, size, length):
    """Rows `[start, start + size)` of `tensor` (`length` rows), and which are real.

    Only the last block is short; it is filled up to `size` with copies of
    the last row, so every block has the same static shape: the blocked
    matmul runs the one-shot search's kernel (same bits; each score depends
    only on its own row and code) and XLA / TFLite see static shapes. A
    gather rather than a slice because XLA rejects slices of run-time size.
    """
    positions = start + tf.range(size)
    return tf.gather(tensor, tf.minimum(positions, length - 1)), positions < length


def _code_blocked_search(codebook, half_sq_norms, codes, num_code_chunks):
    """Search of one row block over blocks of codes with a running best."""
    num_codes = codebook.shape[0]

    def search_block(block):
        def step(j, best_score, best_index):
            start = j * codes
            code_block, real = _block(codebook, start, codes, num_codes)
            norms, _ = _block(half_sq_norms, start, codes, num_codes)
            # Padding codes score -inf (infinite norm), so they never win.
            norms = tf.where(real, norms, float("inf"))
            scores = _scores(block, code_block, norms)
            index = tf.argmax(scores, axis=-1, output_type=tf.int32)
            score = tf.gather(scores, index, batch_dims=1)
            # Strictly greater: on a tie the earlier block (lower index) stays.
            better = score > best_score
            return (
                j + 1,
                tf.where(better, score, best_score),
                tf.where(better, index + start, best_index),
            )

        rows = tf.shape(block)[0]
        start = (tf.constant(0), tf.fill([rows], float("-inf")), tf.zeros([rows], tf.int32))
        _, _, best_index = tf.while_loop(lambda j, *_: j < num_code_chunks, step, start, parallel_iterations=1)
        return best_index

    return search_block


def _one_piece(num_vectors, num_codes):
    rows = num_vectors if num_vectors is not None else 0
    return SearchPlan(
        rows_per_chunk=rows,
        codes_per_chunk=num_codes,
        num_row_chunks=1,
        num_code_chunks=1,
        score_block_bytes=rows * num_codes * _SCORE_BYTES,
    )


def perplexity_from_counts(counts):
    """`exp(entropy)` of the code histogram; K when usage is uniform."""
    probs = counts / tf.maximum(tf.reduce_sum(counts), 1.0)
    entropy = -tf.reduce_sum(probs * tf.math.log(probs + 1e-10))
    return tf.exp(entropy)

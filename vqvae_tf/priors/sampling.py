"""Seeded sampling of codes from logits, shared by every autoregressive prior.

A prior draws its map one raster position at a time; the draw at position
`t` uses the seed folded with `t` (`sample_at`), so the samples are a pure
function of `(model, seed)` whichever decoding loop produced them (the
Transformer's cached and uncached loops give the same maps).
"""

import numpy as np
import tensorflow as tf

from vqvae_tf.utils.checks import check_int, check_number, is_int


def check_sampling_args(num_samples, temperature, top_k, num_codes):
    """Raises ValueError for a bad `sample()` argument, naming it and what it received."""
    check_int("num_samples", num_samples, minimum=1)
    check_number("temperature", temperature, minimum=0)
    if top_k is not None:
        check_int("top_k", top_k, minimum=1, maximum=num_codes)


def seed_tensor(seed):
    """An int or an (a, b) pair -> the shape-[2] seed of stateless RNG ops."""
    if is_int(seed):
        seed = (int(seed), 0)
    seed = np.asarray(seed)
    if seed.shape != (2,) or not np.issubdtype(seed.dtype, np.integer):
        raise ValueError(f"`seed` must be an int or a pair of ints; received {seed!r}.")
    return tf.constant(seed, tf.int64)


def sample_from_logits(logits, seed, temperature=1.0, top_k=None):
    """Draws one code per row of `logits` with temperature and top-k.

    Uses the Gumbel-max trick with stateless uniform noise, so the draw is a
    pure function of `(logits, seed)`: the same seed gives the same codes,
    in or out of a `tf.function`. `temperature=0` is the argmax (greedy).

    Args:
        logits: float tensor `(n, K)`.
        seed: int64 tensor of shape `(2,)` (stateless RNG seed).
        temperature: Python float >= 0. Defaults to 1.0.
        top_k: Python int or None; keep only the `top_k` largest logits.
            Defaults to None (all codes).

    Returns:
        int32 tensor `(n,)` with values in `[0, K)`.
    """
    logits = tf.cast(logits, tf.float32)
    if top_k is not None:
        # Keep exactly k codes (ties go to the lower index, as in argmax), so
        # top_k=1 is the greedy choice even when logits tie.
        top = tf.math.top_k(logits, k=top_k).indices
        keep = tf.reduce_max(tf.one_hot(top, tf.shape(logits)[-1]), axis=1) > 0
        logits = tf.where(keep, logits, tf.constant(-np.inf, logits.dtype))
    if temperature == 0:
        return tf.argmax(logits, axis=-1, output_type=tf.int32)
    uniform = tf.random.stateless_uniform(tf.shape(logits), seed=seed, minval=np.finfo(np.float32).tiny, maxval=1.0)
    gumbel = -tf.math.log(-tf.math.log(uniform))
    return tf.argmax(logits / temperature + gumbel, axis=-1, output_type=tf.int32)


def sample_at(logits, seed, position, temperature, top_k):
    """`sample_from_logits` for raster position `position` (an int scalar tensor).

    Every decoding loop derives the position's seed here, so two loops over
    the same model and seed draw the same codes.
    """
    return sample_from_logits(logits, tf.random.experimental.stateless_fold_in(seed, position), temperature, top_k)

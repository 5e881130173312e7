"""Data-driven codebook initialisation: k-means++ seeding then Lloyd steps.

Random codebooks start far from the encoder outputs, so most codes are never
picked and die (codebook collapse). Starting from k-means centres of real
encoder outputs puts every code where the data is.
"""

import tensorflow as tf

from vqvae_tf.quantizers.code_search import nearest_codes

# k-means++ seeding is sequential in K; seeding on a subsample of this many
# points per code keeps it fast without changing the result much.
_SEED_POINTS_PER_CODE = 32


@tf.function(reduce_retracing=True)
def _kmeans_plus_plus(vectors, num_codes, seed):
    """k-means++ seeding (Arthur & Vassilvitskii 2007), deterministic in `seed`."""
    n = tf.shape(vectors)[0]
    first = tf.random.stateless_uniform([], seed=tf.stack([seed, 0]), maxval=n, dtype=tf.int32)
    centers = tf.TensorArray(tf.float32, size=num_codes, element_shape=vectors.shape[1:])
    centers = centers.write(0, vectors[first])
    min_dist = tf.reduce_sum(tf.square(vectors - vectors[first]), axis=1)

    def body(i, centers, min_dist):
        # Sample the next centre with probability proportional to D(x)^2.
        logits = tf.math.log(tf.maximum(min_dist, 1e-30))[None, :]
        pick = tf.random.stateless_categorical(logits, 1, seed=tf.stack([seed, tf.cast(i, tf.int64)]), dtype=tf.int32)[
            0, 0
        ]
        center = vectors[pick]
        min_dist = tf.minimum(min_dist, tf.reduce_sum(tf.square(vectors - center), axis=1))
        return i + 1, centers.write(i, center), min_dist

    _, centers, _ = tf.while_loop(lambda i, *_: i < num_codes, body, (tf.constant(1), centers, min_dist))
    return centers.stack()


@tf.function(reduce_retracing=True)
def _lloyd(vectors, centers, iterations):
    num_codes = tf.shape(centers)[0]

    def statistics(centers):
        idx = nearest_codes(vectors, centers)
        counts = tf.math.unsorted_segment_sum(tf.ones_like(idx, tf.float32), idx, num_codes)
        sums = tf.math.unsorted_segment_sum(vectors, idx, num_codes)
        return counts, sums

    def body(i, centers):
        counts, sums = statistics(centers)
        # An empty cluster keeps its centre rather than collapsing to zero.
        means = sums / tf.maximum(counts, 1.0)[:, None]
        return i + 1, tf.where(counts[:, None] > 0, means, centers)

    _, centers = tf.while_loop(lambda i, _: i < iterations, body, (tf.constant(0), centers))
    counts, sums = statistics(centers)
    return centers, counts, sums


def kmeans(vectors, num_codes, iterations=10, seed=0):
    """k-means++ seeding and `iterations` Lloyd steps.

    Args:
        vectors: float32 `(N, D)` data points.
        num_codes: number of centres K.
        iterations: Lloyd iterations after seeding.
        seed: int, makes the result deterministic.

    Returns:
        `(centers, counts, sums)`: float32 `(K, D)` centres, and the number
        and sum of the points assigned to each centre by a last assignment.

    Raises:
        ValueError: if there are no vectors or they are not finite.
    """
    vectors = tf.convert_to_tensor(vectors, tf.float32)
    n = int(vectors.shape[0])
    if n == 0:
        raise ValueError("k-means initialisation received no vectors; expected at least one batch of data.")
    if not bool(tf.reduce_all(tf.math.is_finite(vectors))):
        raise ValueError("k-means initialisation received non-finite vectors (NaN or Inf).")
    seed = tf.constant(int(seed), tf.int64)
    sample = vectors
    limit = num_codes * _SEED_POINTS_PER_CODE
    if n > limit:
        perm = tf.random.experimental.stateless_shuffle(tf.range(n), seed=tf.stack([seed, tf.constant(-1, tf.int64)]))
        sample = tf.gather(vectors, perm[:limit])
    centers = _kmeans_plus_plus(sample, tf.constant(num_codes), seed)
    return _lloyd(vectors, centers, tf.constant(int(iterations)))

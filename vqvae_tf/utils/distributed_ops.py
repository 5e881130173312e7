"""Cross-replica helpers for layers that keep state under `tf.distribute`.

Stateful quantizer pieces (EMA statistics, k-means initialisation, dead-code
restarts) must reach the same result on every replica and the same result as
one device at the same global batch. These helpers sum per-replica statistics
in replica context and are identity functions everywhere else (eager calls,
the default strategy, export tracing), so a layer can call them
unconditionally.
"""

import tensorflow as tf


def replica_context():
    """Returns the replica context when more than one replica is in sync."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync <= 1:
        return None
    return ctx


def num_replicas():
    """Number of replicas in sync (1 outside any strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def all_reduce_sum(*values):
    """Sums tensors over replicas; returns them unchanged on one replica."""
    ctx = replica_context()
    if ctx is None:
        return values if len(values) > 1 else values[0]
    reduced = ctx.all_reduce(tf.distribute.ReduceOp.SUM, list(values))
    return tuple(reduced) if len(values) > 1 else reduced[0]


def global_row_offset(local_rows):
    """Position of this replica's first row in the global (concatenated) batch.

    MirroredStrategy splits a global batch into consecutive shards, replica 0
    first, so replica `r` starts after the rows of replicas `0..r-1`. Shards
    can differ in size on a last partial batch, so the sizes are exchanged
    (one small all-reduce) instead of assumed.

    Returns:
        `(offset, global_rows)` as int32 scalars.
    """
    local_rows = tf.cast(local_rows, tf.int32)
    ctx = replica_context()
    if ctx is None:
        return tf.constant(0, tf.int32), local_rows
    replica_id = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
    sizes = tf.one_hot(replica_id, ctx.num_replicas_in_sync, dtype=tf.float32)
    sizes = ctx.all_reduce(tf.distribute.ReduceOp.SUM, sizes * tf.cast(local_rows, tf.float32))
    sizes = tf.cast(tf.round(sizes), tf.int32)
    offset = tf.reduce_sum(sizes[:replica_id])
    return offset, tf.reduce_sum(sizes)


def gather_global_rows(local_rows, global_indices):
    """Gathers rows of the global batch by global index, on every replica.

    Each replica contributes the requested rows it holds and zeros elsewhere;
    one all-reduce sum then gives every replica the same `(len(indices), D)`
    matrix, equal to gathering from the whole batch on one device. This costs
    one all-reduce of the result's size instead of an all-gather of the batch.

    Args:
        local_rows: `(n_local, D)` float tensor, this replica's shard.
        global_indices: int32 `(M,)` indices into the global batch.
    """
    offset, _ = global_row_offset(tf.shape(local_rows)[0])
    local_index = global_indices - offset
    n_local = tf.shape(local_rows)[0]
    mine = tf.logical_and(local_index >= 0, local_index < n_local)
    safe = tf.clip_by_value(local_index, 0, tf.maximum(n_local - 1, 0))
    picked = tf.gather(local_rows, safe)
    picked = tf.where(mine[:, None], picked, tf.zeros_like(picked))
    return all_reduce_sum(picked)

"""Child process: the stateful quantizer variants under MirroredStrategy.

Logical devices must be configured before TensorFlow initialises, so this
runs in its own process (tests/test_quantizer_family_mirrored.py). Each
stateful configuration trains a few steps on one device and on two replicas
at the same global batch; the JSON report holds the final weights, the
outputs of every step (replica shards concatenated) and whether the replica
copies of each variable agree.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

from tests.children.mirrored_model import run_model  # noqa: E402
from vqvae_tf.quantizers.ema import VectorQuantizerEMA  # noqa: E402
from vqvae_tf.quantizers.gumbel import GumbelQuantizer, GumbelTemperatureSchedule  # noqa: E402
from vqvae_tf.quantizers.residual import ResidualVectorQuantizer  # noqa: E402

CONFIGS = {
    "residual_ema_dropout_restart": (
        ResidualVectorQuantizer,
        dict(num_stages=3, decay=0.8, quantizer_dropout=0.7, dead_code_threshold=2.0, seed=5),
    ),
    "residual_shared_ema": (ResidualVectorQuantizer, dict(num_stages=3, shared_codebook=True, decay=0.8, seed=6)),
    "ema_lookup_dim_rotation": (VectorQuantizerEMA, dict(lookup_dim=2, decay=0.8, rotation_trick=True, seed=7)),
    "gumbel_hard": (GumbelQuantizer, dict(hard=True, seed=8)),
}
GLOBAL_BATCH, STEPS, NUM_CODES, CODE_DIM = 16, 4, 12, 4


def batches():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((6, CODE_DIM)) * 3
    shape = (GLOBAL_BATCH, 5, CODE_DIM)
    return [
        (centers[rng.integers(0, 6, shape[:2])] + 0.3 * rng.standard_normal(shape)).astype("float32")
        for _ in range(STEPS)
    ]


def shard(strategy, x):
    def per_replica(ctx):
        size = GLOBAL_BATCH // ctx.num_replicas_in_sync
        return x[ctx.replica_id_in_sync_group * size : (ctx.replica_id_in_sync_group + 1) * size]

    return strategy.experimental_distribute_values_from_function(per_replica)


def run_layer(cls, kwargs, strategy, start):
    with strategy.scope():
        layer = cls(num_codes=NUM_CODES, code_dim=CODE_DIM, name="quantizer", **kwargs)
        layer.build((None, 5, CODE_DIM))
        if start is None:  # one-device run: random start, recorded for the other run
            rng = np.random.default_rng(1)
            start = {w.path: rng.standard_normal(w.shape).astype("float32") for w in layer.trainable_weights}
            for w in layer.weights:
                if w.path.endswith("codebook") and not w.trainable:
                    start[w.path] = rng.standard_normal(w.shape).astype("float32")
        for w in layer.weights:
            if w.path in start:
                w.assign(start[w.path])

    @tf.function
    def step(x):
        def replica_fn(x):
            out = layer(x, training=True)
            return out["quantized"], out["indices"], out["perplexity"]

        return strategy.run(replica_fn, args=(x,))

    outputs = []
    for t, x in enumerate(batches()):
        if isinstance(layer, GumbelQuantizer):
            layer.temperature.assign(0.8**t)  # cross-replica, as the schedule callback does
        quantized, indices, perplexity = step(shard(strategy, x))
        local = strategy.experimental_local_results
        outputs.append(
            dict(
                quantized=np.concatenate([q.numpy() for q in local(quantized)]).tolist(),
                indices=np.concatenate([i.numpy() for i in local(indices)]).tolist(),
                perplexity=float(local(perplexity)[0]),
            )
        )
    copies_equal = True
    for w in layer.weights:
        backing = getattr(w, "_value", w)
        copies = [np.asarray(v.numpy()) for v in getattr(backing, "values", [backing])]
        copies_equal &= all(np.array_equal(copies[0], c) for c in copies[1:])
    state = {w.path: np.asarray(w.numpy(), np.float64).tolist() for w in layer.weights}
    return state, outputs, copies_equal, start


def report(one=None, two=None):
    # One MirroredStrategy per process: two of them reuse collective instance keys.
    one = one or tf.distribute.OneDeviceStrategy("/cpu:0")
    two = two or tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert two.num_replicas_in_sync == 2
    report = {}
    for name, (cls, kwargs) in CONFIGS.items():
        single, single_out, _, start = run_layer(cls, kwargs, one, None)
        mirrored, mirrored_out, copies_equal, _ = run_layer(cls, kwargs, two, start)
        report[name] = dict(
            single=single,
            mirrored=mirrored,
            single_outputs=single_out,
            mirrored_outputs=mirrored_out,
            replica_copies_equal=bool(copies_equal),
        )
    models = {
        # lookup_dim: the stack's projection pair is trained by all-reduced gradients.
        "model_residual": (
            "residual",
            dict(num_stages=2, quantizer_dropout=0.5, kmeans_init=True, lookup_dim=2, seed=4),
            (),
        ),
        "model_gumbel": (
            "gumbel",
            dict(hard=True, seed=5),
            (GumbelTemperatureSchedule(decay_rate=0.3, min_temperature=0.5),),
        ),
    }
    for name, (kind, config, callbacks) in models.items():
        single, single_history = run_model(
            kind, config, one, callbacks, num_codes=NUM_CODES, code_dim=CODE_DIM, global_batch=GLOBAL_BATCH
        )
        mirrored, mirrored_history = run_model(
            kind, config, two, callbacks, num_codes=NUM_CODES, code_dim=CODE_DIM, global_batch=GLOBAL_BATCH
        )
        report[name] = dict(
            single=single, mirrored=mirrored, single_history=single_history, mirrored_history=mirrored_history
        )
    return report


if __name__ == "__main__":
    print("REPORT " + json.dumps(report()))

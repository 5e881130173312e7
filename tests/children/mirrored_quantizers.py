"""Child process: quantizer state under MirroredStrategy on two logical CPUs.

Logical devices must be configured before TensorFlow initialises, so this
runs in its own process. It trains each stateful quantizer configuration for
a few steps on one device and under MirroredStrategy at the same global
batch, and prints a JSON report for tests/test_mirrored_quantizers.py.
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

from tests.children import mirrored_model  # noqa: E402
from vqvae_tf.quantizers.ema import VectorQuantizerEMA  # noqa: E402
from vqvae_tf.quantizers.vector_quantizer import VectorQuantizer  # noqa: E402

CONFIGS = {
    "ema": (VectorQuantizerEMA, dict(decay=0.8)),
    "ema_restart": (VectorQuantizerEMA, dict(decay=0.8, dead_code_threshold=3.0, seed=5)),
    "vq_restart_cosine": (VectorQuantizer, dict(dead_code_threshold=3.0, l2_normalize=True, seed=6)),
}
GLOBAL_BATCH, STEPS = 16, 4


def batches():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((6, 4)) * 3
    return [
        (centers[rng.integers(0, 6, (GLOBAL_BATCH, 5))] + 0.3 * rng.standard_normal((GLOBAL_BATCH, 5, 4))).astype(
            "float32"
        )
        for _ in range(STEPS)
    ]


def run_layer(cls, kwargs, strategy):
    data = batches()
    with strategy.scope():
        layer = cls(num_codes=24, code_dim=4, name="quantizer", **kwargs)
        layer.build((None, 5, 4))
        layer.codebook.assign(np.random.default_rng(1).standard_normal((24, 4)).astype("float32"))
        variable = layer.codebook

    @tf.function
    def step(x):
        def replica_fn(x):
            out = layer(x, training=True)
            return out["perplexity"], out["usage"]

        return strategy.run(replica_fn, args=(x,))

    metrics = []
    for x in data:
        dist = strategy.experimental_distribute_values_from_function(
            lambda ctx, x=x: x[
                ctx.replica_id_in_sync_group * (GLOBAL_BATCH // ctx.num_replicas_in_sync) : (
                    ctx.replica_id_in_sync_group + 1
                )
                * (GLOBAL_BATCH // ctx.num_replicas_in_sync)
            ]
        )
        perplexity, usage = step(dist)
        metrics.append(
            [
                float(strategy.experimental_local_results(perplexity)[0]),
                float(strategy.experimental_local_results(usage)[0]),
            ]
        )
    # The Keras variable wraps a tf.distribute MirroredVariable: one copy per replica.
    backing = getattr(variable, "_value", variable)
    copies = [np.asarray(v.numpy()) for v in getattr(backing, "values", [backing])]
    state = {w.path: np.asarray(w.numpy()).tolist() for w in layer.weights}
    return state, metrics, copies


def run_model(strategy):
    """A tiny VQVAE with the default EMA quantizer, k-means init and restarts, fit under `strategy`."""
    config = dict(kmeans_init=True, dead_code_threshold=1.0, seed=4)
    return mirrored_model.run_model("ema", config, strategy, num_codes=16, global_batch=GLOBAL_BATCH)


def report(one=None, two=None):
    # One MirroredStrategy per process: two of them reuse collective instance keys.
    one = one or tf.distribute.OneDeviceStrategy("/cpu:0")
    two = two or tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    report = {}
    for name, (cls, kwargs) in CONFIGS.items():
        single_state, single_metrics, _ = run_layer(cls, kwargs, one)
        mirrored_state, mirrored_metrics, copies = run_layer(cls, kwargs, two)
        report[name] = dict(
            single=single_state,
            mirrored=mirrored_state,
            single_metrics=single_metrics,
            mirrored_metrics=mirrored_metrics,
            replica_copies_equal=all(np.array_equal(copies[0], c) for c in copies[1:]),
            num_copies=len(copies),
        )
    single_weights, single_history = run_model(one)
    mirrored_weights, mirrored_history = run_model(two)
    report["model"] = dict(
        single=single_weights,
        mirrored=mirrored_weights,
        single_metrics=single_history,
        mirrored_metrics=mirrored_history,
    )
    return report


if __name__ == "__main__":
    print("REPORT " + json.dumps(report()))

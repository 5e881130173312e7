"""Subprocess body for tests/test_distribute.py (one fresh TensorFlow per run).

Usage:
    python multiworker_child.py mirrored OUT_JSON
        Two logical CPUs, MirroredStrategy vs the default strategy.
    python multiworker_child.py worker OUT_DIR   (with TF_CONFIG set)
        One MultiWorkerMirroredStrategy worker; the chief also trains the
        single-process reference.

Results go to files (weights as .npz, facts as .json) for the test to compare.
"""

import json
import os
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

# Run as a script: make the checkout importable. Importing TensorFlow does
# not initialise its devices, so logical CPUs can still be configured later.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vqvae_tf.models.vqvae import VQVAE  # noqa: E402
from vqvae_tf.training import distribute  # noqa: E402

GLOBAL_BATCH = 8
IMAGE_SHAPE = (8, 8, 1)


def model_kwargs(dead_code_threshold):
    return dict(
        input_channels=1,
        downsample=2,
        hidden_units=8,
        residual_units=8,
        num_residual_blocks=1,
        num_codes=16,
        code_dim=4,
        quantizer="ema",
        quantizer_config=dict(seed=1, dead_code_threshold=dead_code_threshold),
    )


def images(n, seed):
    return np.random.RandomState(seed).rand(n, *IMAGE_SHAPE).astype("float32")


def new_model(strategy, dead_code_threshold, initial=None):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = VQVAE(**model_kwargs(dead_code_threshold))
        model.build((None, *IMAGE_SHAPE))
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.5))
    if initial is not None:
        model.set_weights(initial)
    return model


def dataset(x):
    return tf.data.Dataset.from_tensor_slices(x).batch(GLOBAL_BATCH)


def weight_dict(model):
    # Keyed without the model's own (auto-numbered) name.
    return {f"{i}:{v.path.split('/', 1)[-1]}": v.numpy() for i, v in enumerate(model.weights)}


def replica_spread(strategy, model):
    """Largest difference between replicas' copies of any model/optimizer variable."""
    spread = 0.0
    for variable in list(model.weights) + list(model.optimizer.variables):
        copies = [np.asarray(c) for c in strategy.experimental_local_results(variable.value)]
        for copy in copies[1:]:
            spread = max(spread, float(np.max(np.abs(copy.astype("float64") - copies[0]))))
    return spread, len(strategy.experimental_local_results(model.weights[0].value))


def max_difference(a, b):
    return max(float(np.max(np.abs(a[k].astype("float64") - b[k]))) for k in a)


def run_mirrored(out_json):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    default = distribute.make_strategy("default")
    x = images(48, seed=0)
    results = {"replicas": mirrored.num_replicas_in_sync}
    for threshold in (0.0, 1.0):
        initial = new_model(default, threshold).get_weights()
        trained = {}
        for name, strategy in (("mirrored", mirrored), ("single", default)):
            model = new_model(strategy, threshold, initial)
            distribute.fit(model, dataset(x), epochs=2, verbose=0, strategy=strategy)
            trained[name] = weight_dict(model)
            if name == "mirrored":
                spread, copies = replica_spread(strategy, model)
                results[f"spread_{threshold}"] = spread
                results[f"copies_{threshold}"] = copies
        results[f"vs_single_{threshold}"] = max_difference(trained["mirrored"], trained["single"])
        # Training must have moved the weights, or the equality is vacuous.
        results[f"moved_{threshold}"] = max(
            float(np.max(np.abs(trained["single"][k] - start)))
            for k, start in zip(trained["single"], initial)
            if "codebook" in k or "kernel" in k
        )
        results[f"codebook_vs_single_{threshold}"] = max(
            max_difference({k: v}, {k: trained["single"][k]})
            for k, v in trained["mirrored"].items()
            if "codebook" in k or "ema_" in k
        )
        results[f"codebook_{threshold}"] = trained["single"][
            next(k for k in trained["single"] if "codebook" in k)
        ].tolist()
    # Dead-code restarts must actually have happened in the threshold run.
    results["restarts_changed_codebook"] = float(
        np.max(np.abs(np.subtract(results.pop("codebook_0.0"), results.pop("codebook_1.0"))))
    )
    Path(out_json).write_text(json.dumps(results))


class Recorder(keras.callbacks.Callback):
    """Records the hooks it sees, with their logs; may stop training."""

    def __init__(self, stop_after_batch=None):
        super().__init__()
        self.stop_after_batch = stop_after_batch
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch, float(logs["loss"])))
        if self.stop_after_batch is not None and batch >= self.stop_after_batch:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, sorted(logs)))


def run_worker(out_dir):
    out = Path(out_dir)
    strategy = distribute.make_strategy("multi_worker")
    index = strategy.cluster_resolver.task_id
    facts = {"replicas": strategy.num_replicas_in_sync, "chief": distribute.is_chief(strategy)}
    x, x_val = images(32, seed=0), images(16, seed=1)
    threshold = 1.0

    # Plain model.fit under MWMS: the upstream failure that `fit` works around.
    throwaway = new_model(strategy, threshold)
    try:
        throwaway.fit(dataset(x), epochs=1, verbose=0)
        facts["plain_fit_error"] = None
    except Exception as error:  # noqa: BLE001 - the error itself is the result
        facts["plain_fit_error"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"

    model = new_model(strategy, threshold)
    initial = model.get_weights()
    checkpoints = distribute.worker_dir(out / "checkpoints", strategy)
    facts["checkpoint_dir"] = checkpoints
    recorder = Recorder()
    callbacks = [
        recorder,
        keras.callbacks.TensorBoard(distribute.worker_dir(out / "tensorboard", strategy), write_graph=False),
        keras.callbacks.ModelCheckpoint(os.path.join(checkpoints, "epoch{epoch}.weights.h5"), save_weights_only=True),
        distribute.backup_and_restore(out / "backup", strategy, delete_checkpoint=False),
        keras.callbacks.CSVLogger(os.path.join(distribute.worker_dir(out / "logs", strategy), "log.csv")),
    ]
    history = distribute.fit(
        model,
        dataset(x),
        epochs=2,
        validation_data=dataset(x_val),
        validation_steps=2,
        callbacks=callbacks,
        verbose=0,
        strategy=strategy,
    )
    facts["history_keys"] = sorted(history.history)
    facts["epochs_run"] = len(history.history["loss"])
    facts["recorded"] = recorder.events
    trained = weight_dict(model)
    scores = distribute.evaluate(model, dataset(x_val), steps=2, verbose=0, return_dict=True)
    facts["evaluate"] = {k: float(v) for k, v in scores.items()}
    np.savez(out / f"worker{index}.npz", **trained)

    # A fresh model restores the finished run from the chief's backup on
    # every worker, so no epoch runs and all replicas hold the trained weights.
    restored = new_model(strategy, threshold)
    again = distribute.fit(
        restored,
        dataset(x),
        epochs=2,
        callbacks=[distribute.backup_and_restore(out / "backup", strategy)],
        verbose=0,
    )
    facts["restored_epochs_run"] = len(again.history.get("loss", []))
    facts["restored_vs_trained"] = max_difference(weight_dict(restored), trained)

    # A callback that stops training (the same step on every worker).
    stopper = Recorder(stop_after_batch=1)
    stopped = distribute.fit(new_model(strategy, threshold), dataset(x), epochs=3, callbacks=[stopper], verbose=0)
    facts["stopped_epochs_run"] = len(stopped.history["loss"])
    facts["stopped_batches"] = [e for e in stopper.events if e[0] == "batch_end"]

    if facts["chief"]:
        reference = new_model(tf.distribute.get_strategy(), threshold, initial)
        reference.fit(dataset(x), epochs=2, verbose=0)
        np.savez(out / "single.npz", **weight_dict(reference))
    (out / f"worker{index}.json").write_text(json.dumps(facts))


if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    {"mirrored": run_mirrored, "worker": run_worker}[mode](target)

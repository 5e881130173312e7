"""Distribution strategies, per-worker output directories and a multi-worker `fit`.

`make_strategy(name)` builds a `tf.distribute.Strategy` by short name
(`auto`, `default`, `one_device`, `mirrored`, `multi_worker`, `tpu`) and
fails with one clear line on bad input: an unknown name, a TPU requested
where none resolves, a missing or malformed `TF_CONFIG`. `is_chief`,
`worker_dir` and `backup_and_restore` implement the usual Keras multi-worker
file pattern: every worker runs the same callbacks (saving reads variables
through collectives, so all workers must save in lockstep), the chief writes
to the real directory and the other workers to a temporary one that is
deleted when their process exits.

Why `fit` exists (docs/design.md, fact 6): in keras 3.15.1 / TF 2.21,
`model.fit` under `MultiWorkerMirroredStrategy` fails when the train function
is traced. `keras.src.backend.tensorflow.trainer.reduce_per_replica` reduces
the step logs with `strategy.reduce("MEAN", value, axis=0)` in multi-worker
mode, which asks for a reduction over axis 0 of every *scalar* metric
(`ValueError: Invalid reduction dimension 0 for input with 0 dimensions`,
keras-team/keras#20585, tensorflow#72388). The single-machine branch of the
same function means "mean over replicas", which for a multi-worker strategy
is `strategy.reduce("MEAN", value, axis=None)`. `fit` and `evaluate` below
swap in that one-line fix for the duration of the call (under a lock, and only
under a multi-worker strategy) and otherwise call `model.fit` unchanged, so
the model's own `train_step` / `test_step`, Keras's data adapters, callbacks,
progress bar, validation and `History` all keep working. The other failure
reported upstream, in `_maybe_symbolic_build` (a `MEAN` reduce of a
`PerReplica` batch), only concerns several devices per worker: with one
device per worker (the only multi-worker layout a CPU machine runs, and the
tested one) the batch is a plain tensor and that code path is not taken, so
it was not reproduced here and is not patched. `tests/test_distribute.py`
shows plain `model.fit` failing on two loopback workers and `fit` matching a
single-process run.

Example (`workdir` and `dataset` are the caller's):

    strategy = make_strategy("auto")
    per_replica = check_global_batch(64, strategy)
    with strategy.scope():
        model = VQVAE(input_channels=3)
        model.build((None, 32, 32, 3))
        model.compile(optimizer=keras.optimizers.Adam(3e-4))
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            os.path.join(worker_dir(workdir, strategy), "ckpt.weights.h5"),
            save_weights_only=True),
        backup_and_restore(os.path.join(workdir, "backup"), strategy),
    ]
    history = fit(model, dataset, epochs=10, callbacks=callbacks)
"""

import atexit
import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading

import keras
import tensorflow as tf

from vqvae_tf.utils.checks import check_choice, check_int, is_int

logger = logging.getLogger(__name__)

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")


class StrategyError(ValueError):
    """A distribution strategy cannot be built from the given settings."""


# ------------------------------------------------------------------ factory
def make_strategy(name="auto", *, tpu=None):
    """Builds a `tf.distribute.Strategy` by short name.

    Args:
        name: one of `STRATEGIES`:
            - `"auto"`: TPUStrategy when a TPU resolves (from `tpu` or the
              `TPU_NAME` environment variable), MirroredStrategy with two or
              more GPUs, otherwise the default strategy.
            - `"default"`: `tf.distribute.get_strategy()` (no distribution).
            - `"one_device"`: OneDeviceStrategy on the first GPU, else the CPU.
            - `"mirrored"`: MirroredStrategy over all local GPUs (the CPU
              when there are none).
            - `"multi_worker"`: MultiWorkerMirroredStrategy from `TF_CONFIG`;
              build it before any other TensorFlow op.
            - `"tpu"`: TPUStrategy; fails when no TPU resolves.
            Defaults to `"auto"`.
        tpu: str or None, TPU name or `grpc://` address for the resolver
            (`"local"` on a TPU VM). None reads `TPU_NAME`.

    Returns:
        The strategy. Its choice and `num_replicas_in_sync` are logged.

    Raises:
        StrategyError: unknown name, no TPU, or a missing/malformed `TF_CONFIG`.
    """
    check_choice("strategy", name, STRATEGIES, error=StrategyError)
    if name == "auto":
        strategy = _tpu_strategy(tpu, required=False) or _local_strategy()
    elif name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        strategy = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    elif name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    elif name == "multi_worker":
        strategy = _multi_worker_strategy()
    else:
        strategy = _tpu_strategy(tpu, required=True)
    logger.info(
        "Strategy %r -> %s with %d replica(s) in sync.",
        name,
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
    )
    return strategy


def _local_strategy():
    if len(tf.config.list_physical_devices("GPU")) >= 2:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _tpu_strategy(tpu, required):
    """TPUStrategy, or None (auto) / StrategyError (required) without a TPU."""
    try:
        # Without a name or TPU_NAME this raises at once, with no network call.
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    except (ValueError, RuntimeError) as error:
        if not required:
            logger.debug("No TPU resolved (%s).", error)
            return None
        raise StrategyError(
            f"Strategy 'tpu' requested but no TPU resolves (tpu={tpu!r}, "
            f"TPU_NAME={os.environ.get('TPU_NAME')!r}): {error}"
        ) from None
    try:
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (tf.errors.OpError, ValueError, RuntimeError) as error:
        if not required:
            logger.debug("TPU %r resolved but did not initialise (%s).", tpu, error)
            return None
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StrategyError(f"Strategy 'tpu' requested but TPU {tpu!r} did not initialise: {first_line}") from None
    return tf.distribute.TPUStrategy(resolver)


def _multi_worker_strategy():
    parse_tf_config(os.environ.get("TF_CONFIG"))
    return tf.distribute.MultiWorkerMirroredStrategy()


def parse_tf_config(text):
    """Validates a `TF_CONFIG` JSON string and returns it as a dict.

    Expected: `{"cluster": {"worker": ["host:port", ...], ...},
    "task": {"type": "worker", "index": 0}}` with the task's type a job of
    the cluster and its index within that job.

    Raises:
        StrategyError: naming what was received and what was expected.
    """
    example = '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
    if not text:
        raise StrategyError(f"Strategy 'multi_worker' needs the TF_CONFIG environment variable, e.g. {example}.")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise StrategyError(
            f"TF_CONFIG is not valid JSON ({error}); received {text!r}, expected e.g. {example}."
        ) from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise StrategyError(
            f"TF_CONFIG needs a non-empty 'cluster' object; received {text!r}, expected e.g. {example}."
        )
    for job, addresses in cluster.items():
        if not (isinstance(addresses, list) and addresses and all(_is_address(a) for a in addresses)):
            raise StrategyError(
                f"TF_CONFIG cluster job {job!r} must be a non-empty list of 'host:port' strings; "
                f"received {addresses!r}."
            )
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise StrategyError(
            f"TF_CONFIG 'task' must be {{'type': one of {sorted(cluster)}, 'index': int}}; received {task!r}."
        )
    index = task.get("index")
    if not is_int(index) or not 0 <= index < len(cluster[task["type"]]):
        raise StrategyError(
            f"TF_CONFIG task index must be an int in [0, {len(cluster[task['type']])}) for job "
            f"{task['type']!r}; received {index!r}."
        )
    return config


def _is_address(address):
    if not isinstance(address, str):
        return False
    host, _, port = address.rpartition(":")
    return bool(host) and port.isdigit()


# ------------------------------------------------------- workers and files
def _task(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or isinstance(strategy, tf.distribute.TPUStrategy):
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy=None):
    """Whether this process is the chief (the one that writes outputs).

    True for task type `chief`, for worker 0 of a cluster without a chief,
    and for any single-process strategy. `strategy` defaults to the current.
    """
    strategy = strategy or tf.distribute.get_strategy()
    task_type, task_id = _task(strategy)
    if task_type is None or task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


_worker_temp_dirs = []


def worker_dir(base, strategy=None):
    """Where this process writes files that every worker writes alike.

    The chief gets `base`; any other worker gets a fresh temporary directory
    (same last path component), deleted when its process exits, so workers
    never write the same files. Use it for `ModelCheckpoint`, `TensorBoard`,
    `CSVLogger` paths; use `backup_and_restore` for `BackupAndRestore`.

    Args:
        base: str or path-like, the chief's directory.
        strategy: defaults to the current strategy.

    Returns:
        str, an existing directory path (created if needed).
    """
    base = os.fspath(base)
    strategy = strategy or tf.distribute.get_strategy()
    if is_chief(strategy):
        # gfile also creates remote (gs://) directories.
        tf.io.gfile.makedirs(base)
        return base
    task_type, task_id = _task(strategy)
    temp = tempfile.mkdtemp(prefix=f"vqvae_tf_{task_type}{task_id}_")
    _worker_temp_dirs.append(temp)
    path = os.path.join(temp, os.path.basename(os.path.normpath(base)) or "output")
    os.makedirs(path, exist_ok=True)
    return path


@atexit.register
def _remove_worker_dirs():
    while _worker_temp_dirs:
        shutil.rmtree(_worker_temp_dirs.pop(), ignore_errors=True)


class _MultiWorkerBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Writes backups to `backup_dir`, restores from `restore_dir`, then waits.

    The barrier after restoring keeps the chief from deleting its backup at
    the end of an already finished run (zero epochs left, no collective in
    between) before the other workers have read it.
    """

    def __init__(self, backup_dir, restore_dir, strategy, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self._restore = keras.callbacks.BackupAndRestore(restore_dir, **kwargs)
        self._strategy = strategy

    def on_train_begin(self, logs=None):
        self._restore.set_model(self.model)
        self._restore.on_train_begin(logs)
        _barrier(self._strategy)


def _barrier(strategy):
    """Returns once every worker got here (one tiny all-reduce)."""
    ones = strategy.run(lambda: tf.constant(1.0))
    strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)


def backup_and_restore(backup_dir, strategy=None, **kwargs):
    """A `keras.callbacks.BackupAndRestore` that is correct on every worker.

    Plain `BackupAndRestore(worker_dir(...))` would restore only the chief
    (the others find their empty temporary directory) and the replicas would
    silently diverge. Under a multi-worker strategy every worker here
    restores from the chief's `backup_dir` (a shared file system, as for any
    multi-worker Keras job), writes its backups to
    `worker_dir(backup_dir)`, and all workers wait for each other after
    restoring. Otherwise this is a plain `BackupAndRestore(backup_dir)`. The
    model must be built before `fit` (a `BackupAndRestore` requirement).

    Args:
        backup_dir: the chief's backup directory (shared by all workers).
        strategy: defaults to the current strategy.
        **kwargs: `BackupAndRestore` arguments (`save_freq`,
            `delete_checkpoint`, ...).
    """
    backup_dir = os.fspath(backup_dir)
    strategy = strategy or tf.distribute.get_strategy()
    if not _is_multi_worker(strategy):
        return keras.callbacks.BackupAndRestore(backup_dir, **kwargs)
    return _MultiWorkerBackupAndRestore(worker_dir(backup_dir, strategy), backup_dir, strategy, **kwargs)


def check_global_batch(global_batch, strategy=None):
    """Checks that a global batch splits evenly over the replicas.

    Returns:
        int, the per-replica batch size.

    Raises:
        ValueError: when `global_batch` is not a positive int divisible by
            `strategy.num_replicas_in_sync`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    global_batch = check_int("global_batch", global_batch, 1)
    if global_batch % replicas:
        raise ValueError(
            f"The global batch size {global_batch} is not divisible by the {replicas} replicas in sync "
            f"of {type(strategy).__name__}; use a multiple of {replicas}."
        )
    return global_batch // replicas


# --------------------------------------------------------------- training
def _is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


_patch_lock = threading.RLock()


@contextlib.contextmanager
def _multi_worker_log_reduction():
    """Fixes Keras's reduction of step logs under MultiWorkerMirroredStrategy.

    See the module docstring: the mean over replicas is `axis=None`, not
    `axis=0` (keras-team/keras#20585, tensorflow#72388).
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = getattr(tf_trainer, "reduce_per_replica", None)
    if original is None:
        logger.warning("keras internals changed (no reduce_per_replica); running model.fit unpatched.")
        yield
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and _is_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    with _patch_lock:
        tf_trainer.reduce_per_replica = reduce_per_replica
        try:
            yield
        finally:
            tf_trainer.reduce_per_replica = original


def _prepare(model, x, strategy, batch_size):
    if not isinstance(model, keras.Model):
        raise TypeError(f"fit expects a keras.Model; received {type(model).__name__}.")
    model_strategy = model.distribute_strategy
    if strategy is not None and strategy is not model_strategy:
        raise ValueError(
            f"The model was created under {type(model_strategy).__name__}, not the given "
            f"{type(strategy).__name__}; create and compile the model inside `strategy.scope()`."
        )
    if batch_size is not None:
        check_global_batch(batch_size, model_strategy)
    elif isinstance(x, tf.data.Dataset):
        batch = tf.nest.flatten(x.element_spec)[0].shape
        if batch.rank and batch[0] is not None:
            check_global_batch(int(batch[0]), model_strategy)
    multi_worker = _is_multi_worker(model_strategy)
    if multi_worker:
        # Functions traced by an earlier unpatched call must be retraced.
        model.train_function = model.test_function = None
    return multi_worker


def fit(model, x=None, *, strategy=None, **fit_kwargs):
    """`model.fit(x, **fit_kwargs)` that also works under multi-worker training.

    Under `MultiWorkerMirroredStrategy` the Keras log reduction is fixed for
    the duration of the call (see the module docstring); everything else is
    `model.fit` itself, with the model's own `train_step`. A batch size
    (`batch_size=`, or the static batch of a `tf.data.Dataset`) is checked
    against the replica count first.

    Args:
        model: a compiled `keras.Model` created under the strategy's scope.
        x: training data, as for `model.fit`.
        strategy: optional; when given it must be `model.distribute_strategy`.
        **fit_kwargs: any `model.fit` argument (`epochs`, `steps_per_epoch`,
            `validation_data`, `validation_steps`, `initial_epoch`,
            `callbacks`, `verbose`, ...).

    Returns:
        The `keras.callbacks.History` of `model.fit`.
    """
    if _prepare(model, x, strategy, fit_kwargs.get("batch_size")):
        with _multi_worker_log_reduction():
            return model.fit(x, **fit_kwargs)
    return model.fit(x, **fit_kwargs)


def evaluate(model, x=None, *, strategy=None, **evaluate_kwargs):
    """`model.evaluate` with the same multi-worker fix as `fit`."""
    if _prepare(model, x, strategy, evaluate_kwargs.get("batch_size")):
        with _multi_worker_log_reduction():
            return model.evaluate(x, **evaluate_kwargs)
    return model.evaluate(x, **evaluate_kwargs)

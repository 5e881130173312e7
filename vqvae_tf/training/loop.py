"""`train_and_evaluate(config, workdir)`: one training run, resumable.

The core of `train.py`, callable from tests with a tiny config. It resolves
the strategy and the mixed-precision policy, checks the workdir (a run there
must have a compatible `config.json`), builds the data and the `VQVAE`,
trains through `vqvae_tf.training.distribute.fit` and, on the chief, writes:

    workdir/config.json        resolved config (atomic)
    workdir/model.keras        final model (atomic)
    workdir/best.keras         best by val_loss (atomic, never a NaN model)
    workdir/backup/            BackupAndRestore state: weights, optimizer,
                               EMA codebooks, epoch counter (atomic)
    workdir/history.csv        one row per epoch (appended on resume)
    workdir/tensorboard/       scalars, reconstructions, code-usage histograms
    workdir/samples/           epoch_XXX.png and latest.png grids; for audio,
                               epoch_XXX_clipK_{input,reconstruction}.wav
    workdir/export/            SavedModel / TFLite / ONNX when config.export

Killed at any moment, the same call resumes from the last completed epoch.
Temp files a killed run left behind are removed on the next start
(`vqvae_tf.training.workdir`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from vqvae_tf.training import callbacks as cb
from vqvae_tf.training.config import TrainConfig
from vqvae_tf.training.workdir import (
    OUTPUTS,
    best_so_far,
    check_writable,
    prepare_workdir,
    read_history,
    truncate_history,
)
from vqvae_tf.utils.keras_files import ModelFileError, load_keras_file, load_weights_file

logger = logging.getLogger(__name__)

__all__ = [
    "OUTPUTS",
    "build_model",
    "learning_rate_schedule",
    "make_callbacks",
    "resolve_mixed_precision",
    "train_and_evaluate",
]


def train_and_evaluate(config: TrainConfig, workdir, *, overwrite: bool = False) -> dict:
    """Trains (or resumes, or finds finished) the run in `workdir`.

    Args:
        config: a `TrainConfig`.
        workdir: directory of the run's outputs (created if missing).
        overwrite: delete the outputs of a previous run in `workdir` first.
            Default False: resume a compatible run, refuse an incompatible
            one.

    Returns:
        A dict with `history` (per-epoch metric lists of the whole run, read
        back from history.csv on the chief), `final` (the last epoch's
        metrics), `epochs_run` (epochs trained by this call),
        `initial_epoch`, `workdir`, `config` (the resolved `TrainConfig`),
        `status` ("trained" or "already_finished") and `export_dir` (or
        None).

    Raises:
        ConfigError: bad config, or `workdir` holds a run whose config
            differs in a field outside `RESUMABLE_FIELDS`.
        vqvae_tf.data.DatasetError, vqvae_tf.training.distribute.StrategyError,
        export.ExportError: bad data, strategy or export settings.
        OSError: `workdir` cannot be written.
        NonFiniteLossError: the loss became NaN or infinite.
    """
    from vqvae_tf.training import distribute  # the strategy factory imports more of TF

    config, strategy = _resolve(config)
    workdir = Path(workdir)
    chief = distribute.is_chief(strategy)
    outdir = _open_workdir(workdir, config, strategy, overwrite)
    initial_epoch = cb.read_backup_epoch(workdir / "backup")
    if initial_epoch >= config.epochs and (workdir / "model.keras").exists():
        return _finished(workdir, config, initial_epoch, chief)
    if initial_epoch:
        logger.info("Resuming %s from epoch %d of %d.", workdir, initial_epoch, config.epochs)
    bundle = _datasets(config)
    logger.info("Data: %s", bundle.description)
    with _global_policy(config.mixed_precision):
        keras.utils.set_random_seed(config.seed)
        model = _build_or_restore(config, bundle, strategy, workdir / "backup", initial_epoch)
        history = _fit(model, config, bundle, strategy, outdir, workdir / "backup", initial_epoch)
        cb.save_model(model, outdir / "model.keras")
        export_dir = None
        if chief and config.export:
            export_dir = _export(model, workdir / "export", config, calibration=bundle.train)
    epochs_run = len(next(iter(history.history.values()), [])) if history is not None else 0
    return _result(
        workdir, config, "trained", initial_epoch, epochs_run, export_dir, history=None if chief else history.history
    )


def _resolve(config):
    """`(config, strategy)`: the checked config with its mixed-precision policy resolved, and its strategy."""
    from vqvae_tf.training import distribute

    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; received {type(config).__name__}.")
    config.validate()
    strategy = distribute.make_strategy(config.strategy)
    distribute.check_global_batch(config.batch_size, strategy)
    config = dataclasses.replace(
        config,
        mixed_precision=resolve_mixed_precision(config.mixed_precision, strategy),
        reconstruction_loss=config.resolved_reconstruction_loss(),
    )
    return config, strategy


def _open_workdir(workdir, config, strategy, overwrite):
    """Checks and prepares the run's directories; returns this worker's output directory.

    Under multi-worker training every worker runs the same callbacks and
    saves in lockstep (saving reads variables through collectives); the
    chief writes to `workdir`, the others to throwaway directories.
    """
    from vqvae_tf.training import distribute

    chief = distribute.is_chief(strategy)
    if chief:
        check_writable(workdir)
    outdir = Path(distribute.worker_dir(workdir, strategy))
    prepare_workdir(outdir, config, overwrite if chief else False)
    return outdir


def _finished(workdir, config, initial_epoch, chief):
    """The result of a run that has trained every epoch; finishes its export if a kill cut it short."""
    export_dir = None
    if chief and config.export and not _export_is_current(workdir):
        # Killed during the export: the training is done, the export is not.
        export_dir = _export(load_keras_file(workdir / "model.keras", what="VQ-VAE"), workdir / "export", config)
    logger.info("%s already finished %d of %d epochs; nothing to do.", workdir, initial_epoch, config.epochs)
    return _result(workdir, config, "already_finished", initial_epoch, 0, export_dir)


def _datasets(config):
    """The `DatasetBundle` of the run (the same for training and for re-export calibration)."""
    from vqvae_tf.data.datasets import make_datasets

    if not config.is_audio:
        return make_datasets(
            config.dataset,
            image_size=config.image_size,
            batch_size=config.batch_size,
            seed=config.seed,
            augment=config.augment,
            validation_spec=config.validation_dataset,
        )
    from vqvae_tf.training.audio_samples import fit_lengths

    # TrainConfig.image_size does not apply to audio (see its docstring).
    bundle = make_datasets(
        config.dataset,
        batch_size=config.batch_size,
        seed=config.seed,
        augment=config.augment,
        crop_length=config.crop_length,
        sample_rate=config.sample_rate,
        validation_list=config.validation_list_path(),
        label_pattern=config.label_pattern,
        validation_spec=config.validation_dataset,
    )
    # Whole validation clips of any length, trimmed for the rank-1 model.
    return dataclasses.replace(bundle, validation=fit_lengths(bundle.validation, config.hop))


@contextlib.contextmanager
def _global_policy(mixed_precision):
    """Keras's global dtype policy set to `mixed_precision` ("none": float32), restored on exit."""
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32" if mixed_precision == "none" else mixed_precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _build_or_restore(config, bundle, strategy, backup_dir, initial_epoch):
    """The model in `strategy`'s scope, with the backup's weights and optimizer when resuming."""
    with strategy.scope():
        model = build_model(config, bundle.channels, bundle.data_variance)
        if initial_epoch:
            # Restoring before fit skips the k-means initialisation that
            # fit would otherwise run (and BackupAndRestore overwrite).
            model.optimizer.build(model.trainable_variables)
            _restore_backup(model, backup_dir)
    return model


def _restore_backup(model, backup_dir):
    """Loads the backup's weights, or says how to recover from a damaged backup (left as it is)."""
    try:
        load_weights_file(model, backup_dir / "latest.weights.h5", what="training backup")
    except ModelFileError as error:
        raise ModelFileError(
            f"{error}. The run cannot resume from it; --overwrite restarts the run from epoch 0 "
            f"(best.keras and model.keras, if any, are the last complete checkpoints)"
        ) from None


def _fit(model, config, bundle, strategy, outdir, backup_dir, initial_epoch):
    """Trains from `initial_epoch` to `config.epochs`; returns the Keras `History`."""
    from vqvae_tf.training import distribute

    truncate_history(outdir / "history.csv", initial_epoch)
    callbacks = make_callbacks(config, outdir, bundle, strategy, backup_dir=backup_dir)
    limit = cb.TimeLimit(60.0 * config.max_minutes) if config.max_minutes else None
    # The same stream as an uninterrupted run: skip the batches of the
    # epochs already trained.
    train = bundle.train.skip(initial_epoch * config.steps_per_epoch) if initial_epoch else bundle.train
    history = distribute.fit(
        model,
        train,
        strategy=strategy,
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        validation_data=bundle.validation,
        validation_steps=config.validation_steps or None,
        callbacks=callbacks + ([limit] if limit else []),
        verbose=config.verbose,
    )
    if limit is not None and limit.stopped:
        logger.info("Stopped by max_minutes=%g after %d training steps in this run.", config.max_minutes, limit.steps)
    return history


def build_model(config, channels, data_variance):
    """A compiled, built `VQVAE` for `config` (call inside `strategy.scope()`)."""
    from vqvae_tf.models.vqvae import VQVAE

    model = VQVAE(**config.model_kwargs(channels, data_variance))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate_schedule(config)), jit_compile=config.jit_compile)
    # BackupAndRestore needs a built model (docs/design.md, fact 7).
    if config.is_audio:
        model.build((None, config.crop_length, channels))
    else:
        model.build((None, config.image_size, config.image_size, channels))
    return model


def learning_rate_schedule(config):
    """A constant rate, or linear warmup then cosine decay to 0 at the last step."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    total = config.epochs * config.steps_per_epoch
    warmup = min(config.warmup_steps, total - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else config.learning_rate,
        decay_steps=max(total - warmup, 1),
        warmup_target=config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def resolve_mixed_precision(name, strategy=None):
    """The concrete policy for `name`; "auto" picks the fastest correct one.

    "auto": bfloat16 on TPU; float16 on GPU; on CPU bfloat16 when the CPU
    has native bfloat16 instructions (AVX512-BF16 or AMX: measured 1.46x
    the float32 speed for the default model here), else float32, because
    emulated bfloat16 is slower than float32. The quantizer computes in
    float32 under every policy.
    """
    if name != "auto":
        return name
    if strategy is not None and isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    if tf.config.list_logical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if _cpu_has_bfloat16() else "none"


def _cpu_has_bfloat16():
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def make_callbacks(config, workdir, bundle, strategy=None, backup_dir=None):
    """The callback list; the order matters (see `NaNGuard`, `truncate_history`).

    Every worker gets the same list; `workdir` is the worker's own output
    directory (see `vqvae_tf.training.distribute.worker_dir`), `backup_dir` the
    chief's backup, which every worker restores from (default
    `workdir/backup`).
    """
    from vqvae_tf.training import distribute

    history_path = workdir / "history.csv"
    extra = []
    if config.quantizer == "gumbel":
        from vqvae_tf.quantizers.gumbel import GumbelTemperatureSchedule

        extra.append(GumbelTemperatureSchedule())
    return extra + [
        cb.NaNGuard(),
        # Before the backup: a kill between the two repeats the epoch,
        # and truncate_history drops the row of the repeated epoch.
        keras.callbacks.CSVLogger(str(history_path), append=True),
        cb.AtomicModelCheckpoint(
            str(workdir / "best.keras"),
            monitor="val_loss",
            save_best_only=True,
            initial_value_threshold=best_so_far(history_path),
        ),
        keras.callbacks.TensorBoard(str(workdir / "tensorboard"), write_graph=False, update_freq="epoch"),
        _samples(config, bundle, workdir),
        cb.CodeUsageHistogram(workdir / "tensorboard" / "code_usage"),
        _backup(backup_dir or workdir / "backup", strategy, distribute),
    ]


def _backup(backup_dir, strategy, distribute):
    if strategy is None or distribute.is_chief(strategy):
        return cb.AtomicBackupAndRestore(str(backup_dir))
    # A non-chief worker restores from the chief's backup and writes its own
    # throwaway copy.
    return distribute.backup_and_restore(str(backup_dir), strategy)


def _samples(config, bundle, workdir):
    """The per-epoch samples callback: WAV files for audio, PNG grids for images."""
    log_dir = workdir / "tensorboard" / "samples"
    if config.is_audio:
        from vqvae_tf.training.audio_samples import AudioSamples, sample_clips

        clips = sample_clips(bundle.validation, config.num_samples, config.hop, config.sample_rate)
        return AudioSamples(clips, workdir / "samples", config.sample_rate, log_dir=log_dir)
    samples = _sample_images(bundle.validation, config.num_samples)
    return cb.ReconstructionSamples(samples, workdir / "samples", log_dir=log_dir)


def _sample_images(validation, count):
    """`count` validation images spread over the first validation batch."""
    batch = next(iter(validation))
    batch = np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch)
    step = max(1, len(batch) // count)
    return batch[::step][:count]


def _export(model, out_dir, config, calibration=None):
    """Exports `model`; int8 TFLite is calibrated on training images.

    `calibration` is the training dataset; without it (re-exporting a
    finished run) the data are rebuilt from the config.
    """
    from vqvae_tf import export

    logger.info(
        "Exporting %s (TFLite: %s) to %s.",
        ", ".join(config.export_formats),
        ", ".join(config.export_quantizations),
        out_dir,
    )
    representative = None
    if "int8" in config.export_quantizations and "tflite" in config.export_formats:
        if calibration is None:
            calibration = _datasets(config).train
        representative = calibration.take(max(1, 256 // config.batch_size))
    return export.export_model(
        model,
        out_dir,
        formats=config.export_formats,
        quantizations=config.export_quantizations,
        representative_data=representative,
        overwrite=True,
    )


def _export_is_current(workdir):
    manifest, model = workdir / "export" / "export.json", workdir / "model.keras"
    return manifest.exists() and manifest.stat().st_mtime >= model.stat().st_mtime


def _result(workdir, config, status, initial_epoch, epochs_run, export_dir, history=None):
    if history is None:
        rows = read_history(workdir / "history.csv")
        history = {k: [r[k] for r in rows] for k in (rows[0] if rows else {}) if k != "epoch"}
    final = {k: v[-1] for k, v in history.items() if v}
    return dict(
        history=history,
        final=final,
        epochs_run=epochs_run,
        initial_epoch=initial_epoch,
        workdir=workdir,
        config=config,
        status=status,
        export_dir=export_dir
        if export_dir is not None
        else (workdir / "export" if config.export and (workdir / "export").exists() else None),
    )

"""A run's directory: what it holds, the resume check, and `history.csv`.

`train_and_evaluate` (vqvae_tf.training.loop) writes every output of a run
into its workdir (listed in `OUTPUTS`). Before a run starts, `prepare_workdir`
removes what a killed run left half-written and refuses a workdir whose saved
`config.json` describes another experiment; the history helpers read and cut
back the `CSVLogger` file so a resumed run's history matches its backup.
"""

import csv
import logging
import math
import shutil

from vqvae_tf.training.config import RESUMABLE_FIELDS, ConfigError, TrainConfig
from vqvae_tf.utils.atomic import atomic_output, remove_partial_files

logger = logging.getLogger(__name__)

#: Outputs of a run in its workdir; `overwrite=True` deletes exactly these.
OUTPUTS = ("config.json", "model.keras", "best.keras", "backup", "history.csv", "tensorboard", "samples", "export")


def check_writable(workdir):
    """Creates `workdir` if needed; `OSError` naming it unless a file can be written there."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        with atomic_output(workdir / ".write-check") as temp:
            temp.write_bytes(b"")
        (workdir / ".write-check").unlink()
    except OSError as error:
        raise OSError(error.errno, f"workdir {workdir} is not writable: {error.strerror or error}") from None


def prepare_workdir(workdir, config, overwrite):
    """Readies `workdir` for a run of `config`: cleans up, checks a saved config, saves this one.

    Raises:
        ConfigError: `workdir` holds a run whose config differs in a field
            outside `RESUMABLE_FIELDS`, or outputs without a config.
    """
    check_writable(workdir)
    if overwrite:
        for name in OUTPUTS:
            path = workdir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    leftovers = remove_partial_files(workdir)
    # The exporter stages in `.export.tmp-*` (and parks the old export in
    # `.export.old-*`) next to `export/`; a kill can leave those behind.
    for staging in list(workdir.glob(".export.tmp-*")) + list(workdir.glob(".export.old-*")):
        shutil.rmtree(staging, ignore_errors=True)
        leftovers.append(staging)
    for temp in leftovers:
        logger.info("Removed %s, left behind by an interrupted run.", temp)
    config_path = workdir / "config.json"
    if config_path.exists():
        try:
            saved = TrainConfig.load(config_path)
        except (ConfigError, TypeError) as error:
            raise ConfigError(
                f"{config_path} is not a config this version can resume ({error}); use overwrite or another workdir."
            ) from None
        differing = saved.incompatible_fields(config)
        if differing:
            details = ", ".join(
                f"{k}: saved {getattr(saved, k)!r}, requested {getattr(config, k)!r}" for k in differing
            )
            raise ConfigError(
                f"workdir {workdir} holds a run with a different configuration ({details}); only "
                f"{', '.join(sorted(RESUMABLE_FIELDS))} may change on resume. Use overwrite or another workdir."
            )
    elif any((workdir / name).exists() for name in ("backup", "model.keras")):
        raise ConfigError(
            f"workdir {workdir} holds training outputs but no config.json; use overwrite or another workdir."
        )
    config.save(config_path)


def read_history(path):
    """The complete rows of `history.csv` (epoch int, metrics float); [] without the file."""
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    good = []
    for row in rows:
        try:
            good.append({k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()})
        except (TypeError, ValueError):
            continue  # a row cut short by a kill
    return good


def truncate_history(path, initial_epoch):
    """Keeps the rows of the epochs the backup holds (0-based epoch < initial_epoch)."""
    if not path.exists():
        return
    rows = [r for r in read_history(path) if r["epoch"] < initial_epoch]
    if not rows:
        path.unlink()
        return
    with atomic_output(path) as temp, open(temp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def best_so_far(path):
    """The lowest finite `val_loss` in `history.csv`, or None."""
    losses = [r["val_loss"] for r in read_history(path) if math.isfinite(r.get("val_loss", math.nan))]
    return min(losses) if losses else None

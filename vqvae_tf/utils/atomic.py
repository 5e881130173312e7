"""Atomic file output: a file on disk is either the old one or the whole new one.

Every writer in the project (configs, checkpoints, backups, PNG grids,
compressed files, caches, benchmark results) writes to a temporary file in
the target's directory and renames it onto the target: a kill at any moment
leaves no half-written file. Directories made as a whole (codec models) are
staged the same way (`atomic_directory`). Pure Python, so device-side modules can use it
without TensorFlow.
"""

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path

# Temp files of `atomic_output` carry this marker, so a run can remove the
# ones a killed run left behind (`remove_partial_files`).
PARTIAL_MARKER = ".partial-"


@contextlib.contextmanager
def atomic_output(path):
    """Yields a temp path next to `path`; moves it onto `path` on success.

    The temp name keeps the suffix of `path` (Keras picks the format from
    it) and carries `PARTIAL_MARKER`; on an exception the temp file is
    removed, and a killed process's leftovers are removed by
    `remove_partial_files`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".weights.h5") else path.suffix
    temp = path.with_name(f".{path.stem}{PARTIAL_MARKER}{secrets.token_hex(4)}{suffix}")
    try:
        yield temp
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def remove_partial_files(directory):
    """Deletes the temp files of `atomic_output` under `directory`; returns them."""
    removed = []
    for temp in Path(directory).rglob(f".*{PARTIAL_MARKER}*"):
        if temp.is_file():
            temp.unlink()
            removed.append(temp)
    return removed


def write_bytes(path, data, *, make_parents=True):
    """Writes `data` to `path` atomically, flushed to disk before the rename.

    Args:
        path: the file to write.
        data: bytes.
        make_parents: create missing parent directories. With False a
            missing directory raises `FileNotFoundError` (a mistyped output
            path of a command should not create directories). Defaults to True.

    Raises:
        IsADirectoryError: `path` is a directory.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a directory; expected a file path")
    if not make_parents and not path.parent.is_dir():
        raise FileNotFoundError(f"output directory {path.parent} does not exist")
    with atomic_output(path) as temp:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def write_json(path, value, *, indent=2, sort_keys=False, default=None):
    """Writes `value` as JSON (and a final newline) to `path` atomically."""
    write_bytes(path, (json.dumps(value, indent=indent, sort_keys=sort_keys, default=default) + "\n").encode())


@contextlib.contextmanager
def atomic_directory(path):
    """Yields an empty staging directory next to `path`; it replaces `path` on success.

    The staging directory (named like the temp files of `atomic_output`) is
    removed on an exception. An existing `path` is renamed aside, the staging
    directory renamed onto `path`, and only then the old one deleted: a kill
    at any moment leaves the old or the new directory complete (the old one
    possibly under its aside name, `.NAME.partial-old-*`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    staging = path.with_name(f".{path.name}{PARTIAL_MARKER}{token}")
    staging.mkdir()
    try:
        yield staging
        aside = path.with_name(f".{path.name}{PARTIAL_MARKER}old-{token}")
        if path.exists() or path.is_symlink():
            os.replace(path, aside)
        try:
            os.replace(staging, path)
        except BaseException:
            if aside.exists() or aside.is_symlink():
                os.replace(aside, path)
            raise
        _remove(aside)
    finally:
        _remove(staging)


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def save_model(model, path):
    """`model.save(path)`, atomically (a `.keras` file is a zip written in place)."""
    with atomic_output(path) as temp:
        model.save(temp)
    return Path(path)

"""Atomic file output: a file on disk is either the old one or the whole new one.

Every writer in the project (configs, checkpoints, backups, PNG grids,
compressed files, caches, benchmark results) writes to a temporary file in
the target's directory and renames it onto the target: a kill at any moment
leaves no half-written file. Pure Python, so device-side modules can use it
without TensorFlow.
"""

import contextlib
import json
import os
import secrets
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


def write_bytes(path, data):
    """Writes `data` to `path` atomically, flushed to disk before the rename."""
    with atomic_output(path) as temp:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def write_json(path, value, *, indent=2, sort_keys=False, default=None):
    """Writes `value` as JSON (and a final newline) to `path` atomically."""
    write_bytes(path, (json.dumps(value, indent=indent, sort_keys=sort_keys, default=default) + "\n").encode())


def save_model(model, path):
    """`model.save(path)`, atomically (a `.keras` file is a zip written in place)."""
    with atomic_output(path) as temp:
        model.save(temp)
    return Path(path)

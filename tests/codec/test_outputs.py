"""Output files of the codec and codec model directories are written atomically (`vqvae_tf.utils.atomic`)."""

import os

import pytest

from vqvae_tf.codec.images import write_output
from vqvae_tf.codec.model import CodecError
from vqvae_tf.utils import atomic


def test_write_output_refuses_a_directory_and_a_missing_directory(tmp_path):
    with pytest.raises(CodecError, match="is a directory"):
        write_output(tmp_path, b"x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_output(tmp_path / "missing" / "out.vqz", b"x")
    assert not (tmp_path / "missing").exists()
    write_output(tmp_path / "out.vqz", b"data")
    assert (tmp_path / "out.vqz").read_bytes() == b"data" and os.listdir(tmp_path) == ["out.vqz"]


def test_atomic_directory_replaces_the_old_directory_when_complete(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic.atomic_directory(target) as staging:
        assert staging.parent == tmp_path and not any(staging.iterdir())
        (staging / "new.txt").write_text("new")
        assert (target / "old.txt").exists()  # untouched until the staging directory is complete
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_directory_failure_keeps_the_old_directory(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="simulated"):
        with atomic.atomic_directory(target) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("simulated failure")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with atomic.atomic_directory(tmp_path / "fresh" / "new") as staging:
        (staging / "a").write_text("a")
    assert (tmp_path / "fresh" / "new" / "a").read_text() == "a"


def test_atomic_directory_failed_rename_restores_the_old_directory(tmp_path, monkeypatch):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    real_replace = os.replace

    def replace(source, destination):
        if ".partial-old-" not in str(source) and str(destination) == str(target):
            raise OSError("rename failed (simulated)")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        with atomic.atomic_directory(target) as staging:
            (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]

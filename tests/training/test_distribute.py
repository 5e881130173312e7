"""Tests for vqvae_tf.training.distribute: strategy factory, worker files, multi-worker fit.

Strategies that need their own device setup or cluster (two logical CPUs,
two MultiWorkerMirroredStrategy workers on loopback) run in fresh
subprocesses (`tests/children/multiworker_child.py`), which are always killed on
timeout or failure.
"""

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from vqvae_tf.training import distribute
from vqvae_tf.training.distribute import StrategyError

CHILD = Path(__file__).resolve().parents[1] / "children" / "multiworker_child.py"
TIMEOUT = 240
# Same global batch, same initial weights; only float32 summation order
# differs (per-replica sums + all-reduce vs one sum), so a few ulps.
TOLERANCE = 1e-5


def child_env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def run_children(commands, log_dir):
    """Runs child processes concurrently; returns their exit codes, always reaping them."""
    procs = []
    try:
        for i, (args, env) in enumerate(commands):
            log = open(log_dir / f"child{i}.log", "wb")
            procs.append(
                (
                    subprocess.Popen(
                        [sys.executable, str(CHILD), *args], env=env, stdout=log, stderr=subprocess.STDOUT
                    ),
                    log,
                )
            )
        codes = [proc.wait(timeout=TIMEOUT) for proc, _ in procs]
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    for i, code in enumerate(codes):
        assert code == 0, (log_dir / f"child{i}.log").read_text()[-4000:]
    return codes


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# ------------------------------------------------------------ factory
def test_auto_on_cpu_is_default_strategy_and_logged(caplog):
    with caplog.at_level(logging.INFO, logger="vqvae_tf.training.distribute"):
        strategy = distribute.make_strategy("auto")
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert any("1 replica" in r.getMessage() and "auto" in r.getMessage() for r in caplog.records)


def test_named_local_strategies():
    assert distribute.make_strategy("default") is tf.distribute.get_strategy()
    assert isinstance(distribute.make_strategy("one_device"), tf.distribute.OneDeviceStrategy)
    assert isinstance(distribute.make_strategy("mirrored"), tf.distribute.MirroredStrategy)


def test_unknown_strategy_lists_choices():
    with pytest.raises(StrategyError, match=r"`strategy` must be one of 'auto'.*'multi_worker'.*'tpu'; received 'gpu'"):
        distribute.make_strategy("gpu")


def test_tpu_without_tpu_fails_clearly(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(StrategyError, match="'tpu' requested but no TPU resolves") as info:
        distribute.make_strategy("tpu")
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_tpu_local_without_tpu_fails_clearly():
    with pytest.raises(StrategyError, match="TPU 'local' did not initialise") as info:
        distribute.make_strategy("tpu", tpu="local")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "tf_config, message",
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{not json", "TF_CONFIG is not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', "needs a non-empty 'cluster'"),
        ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "'host:port' strings"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "'task' must be"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', r"int in \[0, 2\)"),
    ],
)
def test_malformed_tf_config_fails_clearly(monkeypatch, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(StrategyError, match=message) as info:
        distribute.make_strategy("multi_worker")
    assert "\n" not in str(info.value)


def test_check_global_batch():
    strategy = tf.distribute.get_strategy()
    assert distribute.check_global_batch(8, strategy) == 8

    class TwoReplicas:
        num_replicas_in_sync = 2

    assert distribute.check_global_batch(8, TwoReplicas()) == 4
    with pytest.raises(ValueError, match="global batch size 7 is not divisible by the 2 replicas"):
        distribute.check_global_batch(7, TwoReplicas())
    for bad in (0, -4, 2.0, True, "8"):
        with pytest.raises(ValueError, match="`global_batch` must be an int >= 1; received"):
            distribute.check_global_batch(bad, strategy)


def test_single_process_is_chief_and_writes_to_base(tmp_path):
    strategy = tf.distribute.get_strategy()
    assert distribute.is_chief(strategy)
    assert distribute.worker_dir(tmp_path / "ckpt", strategy) == str(tmp_path / "ckpt")


class FakeResolver:
    def __init__(self, task_type, task_id, cluster):
        self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

    def cluster_spec(self):
        return tf.train.ClusterSpec(self._cluster)


class FakeStrategy:
    def __init__(self, task_type, task_id, cluster):
        self.cluster_resolver = FakeResolver(task_type, task_id, cluster)


@pytest.mark.parametrize(
    "task_type, task_id, cluster, chief",
    [
        ("worker", 0, {"worker": ["a:1", "b:2"]}, True),
        ("worker", 1, {"worker": ["a:1", "b:2"]}, False),
        ("chief", 0, {"chief": ["c:1"], "worker": ["a:1"]}, True),
        ("worker", 0, {"chief": ["c:1"], "worker": ["a:1"]}, False),
    ],
)
def test_is_chief_rules(task_type, task_id, cluster, chief):
    assert distribute.is_chief(FakeStrategy(task_type, task_id, cluster)) is chief


def test_non_chief_worker_dir_is_private_and_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    strategy = FakeStrategy("worker", 1, {"worker": ["a:1", "b:2"]})
    path = Path(distribute.worker_dir(tmp_path / "ckpt", strategy))
    assert path.is_dir() and path.name == "ckpt" and tmp_path / "tmp" in path.parents
    assert not (tmp_path / "ckpt").exists()
    distribute._remove_worker_dirs()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_fit_rejects_a_model_from_another_strategy():
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    other = tf.distribute.OneDeviceStrategy("/cpu:0")
    with pytest.raises(ValueError, match="inside `strategy.scope\\(\\)`"):
        distribute.fit(model, np.zeros((4, 2), "float32"), strategy=other)
    with pytest.raises(ValueError, match="`global_batch` must be an int >= 1; received 0"):
        distribute.fit(model, np.zeros((4, 2), "float32"), y=np.zeros((4, 1)), batch_size=0)


# ------------------------------------------------- strategies in children
@pytest.mark.slow
def test_mirrored_two_cpus_matches_one_device(tmp_path):
    out = tmp_path / "mirrored.json"
    run_children([(["mirrored", str(out)], child_env())], tmp_path)
    result = json.loads(out.read_text())
    assert result["replicas"] == 2
    for threshold in ("0.0", "1.0"):  # EMA quantizer without / with dead-code restarts
        assert result[f"copies_{threshold}"] == 2
        assert result[f"spread_{threshold}"] == 0.0, "replicas' copies of a variable differ"
        assert result[f"moved_{threshold}"] > 1e-3, "training did not move the weights"
        assert result[f"vs_single_{threshold}"] < TOLERANCE
        assert result[f"codebook_vs_single_{threshold}"] < TOLERANCE
    assert result["restarts_changed_codebook"] > 1e-3, "no dead code was restarted"


@pytest.mark.slow
def test_multi_worker_fit_matches_single_process(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    commands = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        commands.append((["worker", str(tmp_path)], child_env(TF_CONFIG=tf_config, TMPDIR=str(scratch))))
    run_children(commands, tmp_path)

    facts = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    assert [f["replicas"] for f in facts] == [2, 2]
    assert [f["chief"] for f in facts] == [True, False]
    # The upstream bug (keras-team/keras#20585) that `distribute.fit` works around.
    for f in facts:
        assert f["plain_fit_error"] and "Invalid reduction dimension 0" in f["plain_fit_error"]
        assert f["epochs_run"] == 2
        assert "val_loss" in f["history_keys"] and "loss" in f["history_keys"]
        # Callbacks saw every hook with reduced (numeric) logs: 32 images / 8 = 4 steps.
        events = f["recorded"]
        assert events[0] == ["train_begin"]
        assert [e[1] for e in events if e[0] == "epoch_begin"] == [0, 1]
        assert [e[1] for e in events if e[0] == "batch_end"] == [0, 1, 2, 3] * 2
        assert all(np.isfinite(e[2]) for e in events if e[0] == "batch_end")
        assert all("val_loss" in e[2] for e in events if e[0] == "epoch_end")
        # `model.stop_training` set by a callback ends fit on every worker.
        assert f["stopped_epochs_run"] == 1 and len(f["stopped_batches"]) == 2
        # BackupAndRestore restored every worker from the chief's backup.
        assert f["restored_epochs_run"] == 0
        assert f["restored_vs_trained"] == 0.0

    weights = [np.load(tmp_path / f"worker{i}.npz") for i in range(2)]
    single = np.load(tmp_path / "single.npz")
    assert sorted(weights[0].files) == sorted(weights[1].files) == sorted(single.files)
    for key in single.files:
        np.testing.assert_array_equal(weights[0][key], weights[1][key], err_msg=key)
        np.testing.assert_allclose(weights[0][key], single[key], rtol=0, atol=TOLERANCE, err_msg=key)

    # Only the chief wrote files; the other worker's private dirs are gone.
    assert facts[0]["checkpoint_dir"] == str(tmp_path / "checkpoints")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch1.weights.h5", "epoch2.weights.h5"]
    # The chief's backup served both workers' restore; the finished run removed it.
    assert not (tmp_path / "backup").exists()
    assert (tmp_path / "logs" / "log.csv").read_text().count("\n") == 3
    assert any((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert facts[0]["recorded"] == facts[1]["recorded"]  # same logs on both workers
    assert facts[0]["evaluate"] == facts[1]["evaluate"] and np.isfinite(facts[0]["evaluate"]["loss"])
    assert not Path(facts[1]["checkpoint_dir"]).exists()
    assert list(scratch.iterdir()) == []

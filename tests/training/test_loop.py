"""train_and_evaluate, TrainConfig, callbacks and image grids, in process."""

import dataclasses
import json
import logging
import math
import re
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import train  # noqa: E402  (the entry point at the repo root)
from vqvae_tf.training import callbacks as cb  # noqa: E402
from vqvae_tf.training.config import ConfigError, TrainConfig  # noqa: E402
from vqvae_tf.training.loop import train_and_evaluate  # noqa: E402
from vqvae_tf.utils.atomic import PARTIAL_MARKER, atomic_output  # noqa: E402
from vqvae_tf.utils.image_grid import comparison_grid, save_comparison_grid  # noqa: E402
from vqvae_tf.utils.keras_files import ModelFileError  # noqa: E402

TINY = dict(
    image_size=16,
    hidden_units=16,
    residual_units=8,
    num_codes=32,
    code_dim=8,
    epochs=2,
    steps_per_epoch=3,
    validation_steps=2,
    batch_size=8,
    warmup_steps=1,
    export=False,
    mixed_precision="none",
    num_samples=4,
    verbose=0,
)


def tiny(**overrides):
    return TrainConfig(**{**TINY, **overrides})


def partial_files(directory):
    return [p for p in Path(directory).rglob("*") if PARTIAL_MARKER in p.name]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One tiny run shared by the tests that only read its outputs."""
    workdir = tmp_path_factory.mktemp("run")
    return workdir, train_and_evaluate(tiny(), workdir)


# ----------------------------------------------------------------- config
def test_config_json_round_trip(tmp_path):
    config = tiny(quantizer="vq", export_formats=["saved_model", "onnx"], l2_normalize=True)
    config.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json") == config
    assert TrainConfig.from_json(config.to_json()).export_formats == ("saved_model", "onnx")
    assert not partial_files(tmp_path)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("image_size", 18, "multiple of downsample=4"),
        ("downsample", 3, "`downsample` must be one of 2, 4, 8, 16"),
        ("epochs", 0, "`epochs` must be an int >= 1"),
        ("learning_rate", 0.0, "`learning_rate` must be a finite number > 0"),
        ("decay", 1.0, "`decay` must be a finite number >= 0 and < 1"),
        ("quantizer", "kmeans", "`quantizer` must be one of 'vq', 'ema', 'residual', 'fsq', 'gumbel'"),
        ("strategy", "gpu_farm", "`strategy` must be one of"),
        ("export_formats", ("zip",), "export_formats must be a non-empty subset"),
        ("export_quantizations", ("int4",), "export_quantizations must be a non-empty subset"),
        ("kmeans_init", "yes", "kmeans_init must be a bool"),
        ("lookup_dim", -1, "`lookup_dim` must be an int >= 0"),
        ("augment", "yes", "augment must be a bool or None"),
        ("max_minutes", -1.0, "`max_minutes` must be a finite number >= 0"),
    ],
)
def test_config_rejects_bad_values(field, value, words):
    with pytest.raises(ConfigError, match=re.escape(words) + ".*received"):
        tiny(**{field: value})


def test_lookup_dim_reaches_the_quantizer_only_when_set():
    kwargs = tiny(lookup_dim=3).model_kwargs(channels=3, data_variance=1.0)
    assert kwargs["quantizer_config"]["lookup_dim"] == 3
    # No lower-dimension space to search: off (TINY has code_dim=8).
    for off in (0, 8, 12):
        assert "lookup_dim" not in tiny(lookup_dim=off).model_kwargs(channels=3, data_variance=1.0)["quantizer_config"]
    assert TrainConfig().model_kwargs(channels=3, data_variance=1.0)["quantizer_config"]["lookup_dim"] == 8
    assert tiny().incompatible_fields(tiny(lookup_dim=3)) == ["lookup_dim"]


def test_train_flags_offer_exactly_the_names_of_their_owners():
    from vqvae_tf import export
    from vqvae_tf.models.networks import DOWNSAMPLE_FACTORS
    from vqvae_tf.quantizers import QUANTIZERS
    from vqvae_tf.training.distribute import STRATEGIES

    def choices(flag):
        return list(train.FLAGS[flag].parser.enum_values)

    assert choices("quantizer") == list(QUANTIZERS)
    assert choices("strategy") == list(STRATEGIES)
    assert choices("downsample") == [str(d) for d in DOWNSAMPLE_FACTORS]
    assert choices("export_formats") == list(export.FORMATS)
    assert choices("export_quantizations") == list(export.QUANTIZATIONS)


def test_config_files_from_before_lookup_dim_keep_searching_in_code_space():
    data = json.loads(tiny().to_json())
    del data["lookup_dim"]
    assert TrainConfig.from_dict(data).lookup_dim == 0


def test_config_files_from_before_augment_keep_their_data():
    data = json.loads(tiny().to_json())
    assert data["augment"] is None  # the dataset's default
    del data["augment"]
    assert TrainConfig.from_dict(data).augment is False


def test_config_rejects_unknown_json_fields():
    with pytest.raises(ConfigError, match="unknown training config fields.*'colour'"):
        TrainConfig.from_dict({"colour": "red"})


def test_incompatible_fields_ignore_resumable_ones():
    base = tiny()
    assert base.incompatible_fields(dataclasses.replace(base, epochs=9, strategy="mirrored", export=True)) == []
    assert base.incompatible_fields(dataclasses.replace(base, max_minutes=30.0)) == []
    assert base.incompatible_fields(dataclasses.replace(base, num_codes=64, seed=3)) == ["num_codes", "seed"]


# ------------------------------------------------------------ image grid
def test_comparison_grid_layout_and_atomic_png(tmp_path):
    inputs = np.zeros((3, 8, 8, 1), np.float32)
    recon = np.ones((3, 8, 8, 1), np.float32)
    grid = comparison_grid(inputs, recon, padding=1, scale=1)
    assert grid.shape == (2 * 8 + 3, 3 * 8 + 4, 3)
    assert (grid[1:9, 1:9] == 0).all() and (grid[10:18, 1:9] == 255).all()
    path = save_comparison_grid(tmp_path / "g.png", inputs, recon, padding=1, scale=1)
    assert np.array_equal(np.asarray(Image.open(path)), grid)
    assert not partial_files(tmp_path)
    with pytest.raises(ValueError, match="reconstructions must have the inputs' shape"):
        comparison_grid(inputs, recon[:2])


def test_atomic_output_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as temp:
            temp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and not partial_files(tmp_path)


# ------------------------------------------------------------- training
@pytest.mark.slow
def test_train_and_evaluate_returns_history_and_writes_outputs(finished_run):
    workdir, result = finished_run
    assert result["status"] == "trained" and result["epochs_run"] == 2 and result["initial_epoch"] == 0
    assert len(result["history"]["val_loss"]) == 2
    assert {"loss", "val_loss", "val_psnr", "val_perplexity", "val_dead_codes"} <= set(result["final"])
    assert all(math.isfinite(v) for v in result["final"].values())
    for name in (
        "config.json",
        "model.keras",
        "best.keras",
        "history.csv",
        "backup/latest.weights.h5",
        "samples/epoch_001.png",
        "samples/epoch_002.png",
        "samples/latest.png",
    ):
        assert (workdir / name).is_file(), name
    for sub in ("train", "validation", "samples", "code_usage"):
        assert list((workdir / "tensorboard" / sub).glob("events.out.tfevents.*")), sub
    assert json.loads((workdir / "backup" / "training_metadata.json").read_text())["epoch"] == 2
    assert TrainConfig.load(workdir / "config.json") == result["config"]
    assert not partial_files(workdir)


@pytest.mark.slow
def test_tensorboard_has_images_and_code_histograms(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    workdir, _ = finished_run
    images = EventAccumulator(str(workdir / "tensorboard" / "samples")).Reload()
    assert len(images.Tensors("reconstructions")) == 2
    usage = EventAccumulator(str(workdir / "tensorboard" / "code_usage")).Reload()
    train_hist = usage.Tensors("code_usage/train")
    assert len(train_hist) == 2
    buckets = keras.ops.convert_to_numpy(__import__("tensorflow").make_ndarray(train_hist[-1].tensor_proto))
    # One bucket per code; the training counts of an epoch add up to
    # steps x batch x code positions (16 / 4 = 4 x 4 per image).
    assert buckets.shape == (32, 3) and buckets[:, 2].sum() == 3 * 8 * 16


@pytest.mark.slow
def test_saved_model_reloads_and_reconstructs(finished_run):
    workdir, _ = finished_run
    x = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    for name in ("model.keras", "best.keras"):
        model = keras.models.load_model(workdir / name)
        y = np.asarray(model(x))
        assert y.shape == x.shape and np.isfinite(y).all()
        assert model.codes(x).shape == (2, 4, 4)


@pytest.mark.slow
def test_float32_copy_of_a_mixed_precision_model(finished_run):
    from vqvae_tf.models.vqvae import float32_copy

    workdir, _ = finished_run
    saved = keras.models.load_model(workdir / "model.keras")
    mixed = type(saved).from_config({**saved.get_config(), "dtype": "mixed_bfloat16"})
    mixed.build((None, 16, 16, 3))
    assert mixed.dtype_policy.name == "mixed_bfloat16"
    twin = float32_copy(mixed)
    assert twin.dtype_policy.name == "float32" and twin.encoder.dtype_policy.name == "float32"
    for a, b in zip(mixed.weights, twin.weights):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)), a.path
    x = np.random.default_rng(2).random((2, 16, 16, 3), dtype=np.float32)
    assert keras.ops.convert_to_numpy(twin(x)).dtype == np.float32
    assert float32_copy(twin) is twin


@pytest.mark.slow
def test_finished_run_does_nothing_then_continues_with_more_epochs(tmp_path):
    train_and_evaluate(tiny(), tmp_path)
    again = train_and_evaluate(tiny(), tmp_path)
    assert again["status"] == "already_finished" and again["epochs_run"] == 0
    more = train_and_evaluate(tiny(epochs=3), tmp_path)
    assert more["initial_epoch"] == 2 and more["epochs_run"] == 1
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["epoch", "0", "1", "2"]
    assert TrainConfig.load(tmp_path / "config.json").epochs == 3


@pytest.mark.slow
def test_resume_refuses_a_different_model_and_overwrite_starts_afresh(tmp_path):
    tiny().save(tmp_path / "config.json")
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "latest.weights.h5").write_bytes(b"stale")
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 5, "batch": 0}')
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n")
    with pytest.raises(ConfigError, match=r"num_codes: saved 32, requested 64.*overwrite"):
        train_and_evaluate(tiny(num_codes=64), tmp_path)
    fresh = train_and_evaluate(tiny(num_codes=64, epochs=1), tmp_path, overwrite=True)
    assert fresh["initial_epoch"] == 0 and fresh["epochs_run"] == 1
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 2
    assert TrainConfig.load(tmp_path / "config.json").num_codes == 64


@pytest.mark.slow
def test_resume_from_a_damaged_backup_says_so_and_keeps_it(finished_run, tmp_path):
    shutil.copytree(finished_run[0], tmp_path, dirs_exist_ok=True)
    weights = tmp_path / "backup" / "latest.weights.h5"
    weights.write_bytes(weights.read_bytes()[:1000])  # as if the disk filled up mid-write outside this library
    with pytest.raises(
        ModelFileError, match=r"training backup .*latest\.weights\.h5 \(1000 bytes\) cannot be loaded.*--overwrite"
    ):
        train_and_evaluate(tiny(epochs=3), tmp_path)
    assert weights.stat().st_size == 1000  # left for the user to inspect, not deleted


class _PoisonWeights(keras.callbacks.Callback):
    """Sets the decoder's weights to NaN in the second epoch."""

    def on_train_batch_begin(self, batch, logs=None):
        if self.params and getattr(self, "_epoch", 0) == 1 and batch == 1:
            weight = self.model.decoder.trainable_weights[0]
            weight.assign(np.full(weight.shape, np.nan, np.float32))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


def test_nan_loss_stops_with_exit_code_and_keeps_last_good_checkpoints(tmp_path, monkeypatch, caplog):
    from vqvae_tf.training import loop as training

    make = training.make_callbacks
    monkeypatch.setattr(training, "make_callbacks", lambda *a, **k: [_PoisonWeights()] + make(*a, **k))
    with caplog.at_level(logging.ERROR):
        code = train.run(lambda: tiny(epochs=3), tmp_path)
    assert code == train.EXIT_NAN
    assert re.search(r"loss became nan at training batch \d of epoch 2", caplog.text)
    assert cb.read_backup_epoch(tmp_path / "backup") == 1
    assert not (tmp_path / "model.keras").exists()
    best = keras.models.load_model(tmp_path / "best.keras")
    assert all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in best.weights)
    assert not partial_files(tmp_path)


def test_max_minutes_stops_in_the_first_epoch_and_that_epoch_still_validates(tmp_path, caplog):
    # A budget already spent when the first step ends: one step, then the epoch's validation and savers.
    with caplog.at_level(logging.INFO):
        result = train_and_evaluate(tiny(epochs=3, max_minutes=1e-9), tmp_path)
    assert result["epochs_run"] == 1
    assert "val_loss" in result["final"]
    assert "Stopped by max_minutes=1e-09 after 1 training steps in this run." in caplog.text
    assert (tmp_path / "model.keras").exists()


def test_validation_dataset_trains_on_every_file_of_the_training_folder(tmp_path, caplog):
    (tmp_path / "t").mkdir()
    (tmp_path / "v").mkdir()
    train_dir = _folder(tmp_path / "t", sizes=[24] * 10)
    valid_dir = _folder(tmp_path / "v", sizes=[24] * 3)
    config = tiny(dataset=f"folder:{train_dir}", validation_dataset=f"folder:{valid_dir}", epochs=1, steps_per_epoch=1)
    with caplog.at_level(logging.INFO):
        train_and_evaluate(config, tmp_path / "run")
    # All 10 files train (no split of the folder) and the 3 other photos validate.
    assert f"folder:{train_dir}: 10 train images" in caplog.text
    assert f"validation: centre crops of 3 images of folder:{valid_dir}" in caplog.text


# ------------------------------------------------------------ bad input
def _folder(tmp_path, sizes=(), corrupt=0):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    for i in range(corrupt):
        (folder / f"bad{i}.png").write_bytes(b"not a png at all")
    return folder


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing_path", "does not exist"),
        ("empty_folder", "no image files"),
        ("corrupt_images", "corrupt or unreadable"),
        ("small_images", "smaller than"),
        ("unknown_scheme", "unknown dataset scheme 'webdataset'"),
        ("bad_workdir", "is not writable"),
        ("tpu", "TPU"),
        ("bad_value", "image_size must be a multiple of downsample=4"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(case, words, tmp_path, caplog):
    workdir = tmp_path / "run"
    overrides = {}
    if case == "missing_path":
        overrides["dataset"] = f"folder:{tmp_path / 'nowhere'}"
    elif case == "empty_folder":
        overrides["dataset"] = f"folder:{_folder(tmp_path)}"
    elif case == "corrupt_images":
        overrides["dataset"] = f"folder:{_folder(tmp_path, corrupt=3)}"
    elif case == "small_images":
        overrides["dataset"] = f"folder:{_folder(tmp_path, sizes=(8, 8, 8, 8, 8))}"
    elif case == "unknown_scheme":
        overrides["dataset"] = "webdataset:/data"
    elif case == "bad_workdir":
        (tmp_path / "file").write_text("")
        workdir = tmp_path / "file" / "run"
    elif case == "tpu":
        overrides["strategy"] = "tpu"
    elif case == "bad_value":
        overrides["image_size"] = 18
    with caplog.at_level(logging.ERROR):
        code = train.run(lambda: tiny(**overrides), workdir)
    assert code == train.EXIT_BAD_INPUT
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0] and words in errors[0], errors


@pytest.mark.slow
def test_residual_quantizer_with_lookup_dim_trains_on_photos(tmp_path):
    # Regression: with `--quantizer=residual` and the default lookup_dim, each
    # stage had its own projection whose map back never learned. On photos
    # this run then ended with vq_loss 0.028 and val_psnr 14.3 dB (a full-size
    # d8 model: vq_loss 187 in its first epoch). Projected once around the
    # stack, it ends with vq_loss 0.001 and 18.4 dB.
    config = tiny(
        dataset="photos",
        quantizer="residual",
        num_stages=2,
        lookup_dim=8,
        downsample=8,
        image_size=32,
        hidden_units=64,
        residual_units=32,
        num_codes=512,
        code_dim=64,
        epochs=2,
        steps_per_epoch=100,
        validation_steps=4,
        warmup_steps=10,
    )
    final = train_and_evaluate(config, tmp_path)["final"]
    assert final["vq_loss"] < 0.005, final
    assert final["val_psnr"] > 16.5, final

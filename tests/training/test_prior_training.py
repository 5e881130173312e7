"""Stage two: code extraction, prior training and the sample CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from vqvae_tf.data.datasets import make_datasets
from vqvae_tf.priors.loading import load_prior
from vqvae_tf.training.code_files import extract_codes, load_codes
from vqvae_tf.training.config import ConfigError, TrainConfig
from vqvae_tf.training.loop import build_model
from vqvae_tf.training.prior_config import PriorConfig
from vqvae_tf.training.prior_training import train_prior
from vqvae_tf.utils.atomic import save_model

REPO = Path(__file__).resolve().parents[2]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
NUM_CODES = 16


def _tiny_vqvae_run(workdir, steps, **overrides):
    """Fits a tiny VQ-VAE (`TrainConfig` fields overridden) `steps` steps on MNIST; saves model.keras + config.json."""
    config = TrainConfig(
        dataset=f"mnist:{MNIST_DIR}",
        image_size=28,
        batch_size=32,
        num_codes=NUM_CODES,
        code_dim=8,
        hidden_units=16,
        residual_units=8,
        num_residual_blocks=1,
        export=False,
        mixed_precision="none",
        lr_schedule="constant",
        learning_rate=2e-3,
        **overrides,
    )
    bundle = make_datasets(config.dataset, image_size=config.image_size, batch_size=config.batch_size)
    keras.utils.set_random_seed(0)
    model = build_model(config, bundle.channels, bundle.data_variance)
    model.fit(bundle.train, steps_per_epoch=steps, epochs=1, verbose=0)
    save_model(model, workdir / "model.keras")
    config.save(workdir / "config.json")
    return model


@pytest.fixture(scope="module")
def vqvae_run(tmp_path_factory):
    """A training-run workdir (model.keras + config.json) of a tiny VQ-VAE, 50 steps on MNIST."""
    workdir = tmp_path_factory.mktemp("vqvae_run")
    return workdir, _tiny_vqvae_run(workdir, 50)


@pytest.fixture(scope="module")
def prior_run(vqvae_run, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("prior_run")
    config = PriorConfig(
        kind="pixelcnn",
        conditional=True,
        channels=16,
        num_layers=2,
        steps=40,
        batch_size=32,
        learning_rate=3e-3,
        train_batches=24,
        num_samples=3,
    )
    metrics = train_prior(config, vqvae_run[0], workdir)
    return workdir, metrics


@pytest.mark.slow
def test_extract_codes_round_trip(vqvae_run, tmp_path):
    _, model = vqvae_run
    bundle = make_datasets(f"mnist:{MNIST_DIR}", image_size=28, batch_size=16, with_labels=True)
    data = bundle.validation.take(3)
    path = tmp_path / "codes.npz"
    codes, labels = extract_codes(model, data, path, fingerprint="run-1")
    expected = np.concatenate([np.asarray(model.codes(images)) for images, _ in data])
    expected_labels = np.concatenate([np.asarray(y) for _, y in data])
    assert codes.dtype == np.int32 and codes.shape == (48, 7, 7)
    np.testing.assert_array_equal(codes, expected)
    np.testing.assert_array_equal(labels, expected_labels)
    cached_codes, cached_labels = load_codes(path, "run-1")
    np.testing.assert_array_equal(cached_codes, codes)
    np.testing.assert_array_equal(cached_labels, labels)
    assert load_codes(path, "another model") is None
    assert [p.name for p in tmp_path.iterdir()] == ["codes.npz"]  # no temp file left
    # Unlabelled batches give labels=None.
    _, no_labels = extract_codes(model, [images for images, _ in data], tmp_path / "x.npz")
    assert no_labels is None
    with pytest.raises(ValueError, match="empty"):
        extract_codes(model, [], tmp_path / "empty.npz")


@pytest.mark.slow
def test_train_prior_writes_outputs(prior_run):
    workdir, metrics = prior_run
    for name in (
        "prior.keras",
        "prior_metrics.json",
        "samples.png",
        "prior_config.json",
        "codes_train.npz",
        "codes_validation.npz",
    ):
        assert (workdir / name).is_file(), name
    assert not [p for p in workdir.iterdir() if ".partial-" in p.name]
    saved = json.loads((workdir / "prior_metrics.json").read_text())
    assert saved["nll_nats"] == pytest.approx(metrics["nll_nats"])
    assert saved["map_shape"] == [7, 7] and saved["num_codes"] == NUM_CODES
    assert saved["num_train_maps"] == 24 * 32 and saved["num_test_maps"] == 2000
    assert 0 < saved["nll_nats"] < np.log(NUM_CODES)
    assert saved["bits_per_code"] == pytest.approx(saved["nll_nats"] / np.log(2))
    assert np.isfinite(saved["unigram_nll_nats"]) and np.isfinite(saved["bits_per_dim"])
    assert saved["bits_per_dim"] > saved["prior_bits_per_dim"] > 0
    # One row per class of 3 samples each, upscaled to >= 64 px.
    with Image.open(workdir / "samples.png") as grid:
        assert grid.size[1] > 10 * 64 and grid.size[0] > 3 * 64
    prior = load_prior(workdir / "prior.keras")
    assert prior.num_classes == 10 and prior.map_shape == (7, 7)


@pytest.mark.slow
def test_train_prior_errors(vqvae_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="model.keras"):
        train_prior(PriorConfig(steps=1), tmp_path, tmp_path / "prior")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.keras").write_bytes((vqvae_run[0] / "model.keras").read_bytes())
    with pytest.raises(FileNotFoundError, match="dataset= and image_size="):
        train_prior(PriorConfig(steps=1), bare, tmp_path / "prior")
    with pytest.raises(ConfigError, match="kind"):
        PriorConfig(kind="lstm")
    with pytest.raises(ConfigError, match="steps"):
        PriorConfig(steps=0)
    with pytest.raises(ConfigError, match="divisible"):
        PriorConfig(embed_dim=10, num_heads=4)


def test_prior_config_checks_name_the_field_and_the_value():
    for kwargs, pattern in (
        (dict(conditional=1), "`conditional` must be a bool; received 1"),
        (dict(channels=True), "`channels` must be an int >= 1; received True"),
        (dict(train_batches=0), "`train_batches` must be an int >= 1; received 0"),
        (dict(learning_rate=0.0), "`learning_rate` must be a finite number > 0; received 0.0"),
        (dict(dropout=1.0), r"`dropout` must be a finite number >= 0 and < 1; received 1.0"),
        (dict(kernel_size=4), "`kernel_size` must be odd; received 4"),
    ):
        with pytest.raises(ConfigError, match=pattern):
            PriorConfig(**kwargs)
    with pytest.raises(ConfigError, match=r"unknown prior config fields \['colour'\]"):
        PriorConfig.from_dict({"kind": "pixelcnn", "colour": 1})
    assert PriorConfig.from_dict(PriorConfig(kind="transformer").to_dict()) == PriorConfig(kind="transformer")


def test_prior_training_keeps_the_old_module_names():
    from vqvae_tf.training import prior_training

    old_names = [
        "PRIOR_KINDS",
        "PriorConfig",
        "build_prior",
        "extract_codes",
        "fit_decoder_scale",
        "load_codes",
        "reconstruction_nats",
        "sample_images",
        "save_image_grid",
        "train_prior",
        "DEFAULT_TRAIN_BATCHES",
    ]
    assert all(hasattr(prior_training, name) for name in old_names)


def test_sample_grid_is_row_major_and_upscaled(tmp_path):
    from vqvae_tf.utils.image_grid import save_image_grid

    images = np.zeros((6, 8, 8, 1), np.float32)
    images[4] = 1.0  # second row, second column
    path = save_image_grid(tmp_path / "grid.png", images, rows=2)
    with Image.open(path) as grid:
        pixels = np.asarray(grid)
    assert pixels.shape == (2 * 66 + 2, 3 * 66 + 2, 3)  # 8 px upscaled 8x to 64, 2 px padding
    assert (pixels[68:132, 68:132] == 255).all() and (pixels[2:66, 68:132] == 0).all()
    with pytest.raises(ValueError, match="for 4 rows"):
        save_image_grid(tmp_path / "bad.png", images, rows=4)


def _run_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "vqvae_tf.sample", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )


@pytest.mark.slow
def test_sample_cli_writes_png(vqvae_run, prior_run, tmp_path):
    out = tmp_path / "grid.png"
    result = _run_cli(
        f"--workdir={vqvae_run[0]}", f"--prior={prior_run[0]}", "--num=4", "--labels=3,7", "--top_k=4", f"--out={out}"
    )
    assert result.returncode == 0, result.stderr
    with Image.open(out) as grid:
        assert grid.size[1] > 2 * 64 and grid.size[1] < 3 * 64  # two rows: labels 3 and 7


@pytest.mark.slow
def test_sample_cli_bad_argument_exits_2(vqvae_run, prior_run, tmp_path):
    result = _run_cli(
        f"--workdir={vqvae_run[0]}", f"--prior={prior_run[0]}", f"--out={tmp_path / 'g.png'}", "--labels=11"
    )
    assert result.returncode == 2
    assert "--labels must be in [0, 10)" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "g.png").exists()


@pytest.mark.slow
def test_sample_argument_errors_in_process(vqvae_run, prior_run, tmp_path):
    from vqvae_tf.training import sample

    common = dict(workdir=vqvae_run[0], prior_dir=prior_run[0], num=2, temperature=1.0, seed=0, out=tmp_path / "g.png")
    with pytest.raises(ValueError, match="integers"):
        sample._parse_labels(["0", "x"])
    with pytest.raises(ValueError, match="top_k"):
        sample.run(top_k=NUM_CODES + 1, labels=[], **common)
    with pytest.raises(FileNotFoundError, match="prior.keras"):
        sample.run(top_k=0, labels=[], **(common | {"prior_dir": tmp_path}))
    assert sample._grid_rows(64) == 8 and sample._grid_rows(7) == 1
    assert not (tmp_path / "g.png").exists()


def test_stage_tokens_lay_stages_side_by_side_and_back():
    from vqvae_tf.priors.stage_tokens import stages_to_tokens, tokens_to_stages

    codes = np.random.default_rng(0).integers(0, 16, (3, 4, 5, 2))
    tokens = stages_to_tokens(codes, 16)
    assert tokens.shape == (3, 4, 10) and tokens.dtype == np.int32
    np.testing.assert_array_equal(tokens[:, :, 0::2], codes[..., 0])  # coarse stage first,
    np.testing.assert_array_equal(tokens[:, :, 1::2], codes[..., 1] + 16)  # then its own vocabulary
    np.testing.assert_array_equal(tokens_to_stages(tokens, 16, 2), codes)
    with pytest.raises(ValueError, match=r"\(N, h, w \* 2\); received shape \(3, 4, 9\)"):
        tokens_to_stages(tokens[..., :9], 16, 2)
    with pytest.raises(ValueError, match="received shape \\(3, 4, 5\\)"):
        stages_to_tokens(codes[..., 0], 16)


@pytest.mark.slow
def test_train_prior_on_a_residual_vqvae_models_every_stage(tmp_path):
    from vqvae_tf.training.prior_samples import sample_images

    model = _tiny_vqvae_run(tmp_path, 30, quantizer="residual", num_stages=2)
    prior_config = PriorConfig(
        kind="pixelcnn",
        channels=16,
        num_layers=2,
        steps=60,
        batch_size=32,
        learning_rate=3e-3,
        train_batches=8,
        num_samples=2,
    )
    metrics = train_prior(prior_config, tmp_path, tmp_path / "prior")
    codes, _ = load_codes(tmp_path / "prior" / "codes_validation.npz")
    assert codes.shape[1:] == (7, 7, 2)  # the cache keeps the VQ-VAE's maps
    assert metrics["map_shape"] == [7, 14] and metrics["num_stages"] == 2 and metrics["num_codes"] == NUM_CODES
    prior = load_prior(tmp_path / "prior" / "prior.keras")
    assert prior.num_codes == 2 * NUM_CODES
    # The prior learned which vocabulary each column holds: at a stage-s
    # column nearly all its mass is on stage s's codes.
    from vqvae_tf.priors.stage_tokens import stages_to_tokens

    logits = np.asarray(prior.logits(stages_to_tokens(codes[:64], NUM_CODES)), np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    own = np.concatenate([probs[:, :, 0::2, :NUM_CODES].sum(-1), probs[:, :, 1::2, NUM_CODES:].sum(-1)])
    assert own.mean() > 0.9, own.mean()  # 0.5 untrained; 0.967 here
    assert metrics["bits_per_code"] < metrics["unigram_bits_per_code"]  # 1.68 vs 1.96 here
    images, rows = sample_images(model, prior, 3)
    assert images.shape == (3, 28, 28, 1) and rows == 1 and np.isfinite(images).all()


class _FixedCodes:
    """A stand-in VQ-VAE whose `codes` returns the given residual maps, one batch per call."""

    num_codes = 8

    def __init__(self, maps):
        self.maps = iter(maps)

    def codes(self, images):
        return next(self.maps)


def test_prior_stages_keeps_the_first_stages_of_a_residual_run(tmp_path):
    from vqvae_tf.training.code_files import prior_code_maps

    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 8, (6, 3, 4, 3)), rng.integers(0, 8, (2, 3, 4, 3))

    def maps(stages, workdir):
        vqvae = _FixedCodes([train, test])
        return prior_code_maps(vqvae, [np.zeros(1)], [np.zeros(1)], tmp_path / workdir, "f", 0, stages)

    coarse = maps(1, "one")
    # Stage 0 alone: (h, w) maps of the K codes, what the codec's prior models.
    np.testing.assert_array_equal(coarse.train, train[..., 0])
    np.testing.assert_array_equal(coarse.test, test[..., 0])
    assert (coarse.num_stages, coarse.vocabulary, coarse.map_shape) == (1, 8, (3, 4))
    two = maps(2, "two")
    assert (two.num_stages, two.vocabulary, two.map_shape) == (2, 16, (3, 8))
    np.testing.assert_array_equal(two.train[:, :, 1::2] - 8, train[..., 1])
    every = maps(None, "all")
    assert (every.num_stages, every.vocabulary, every.map_shape) == (3, 24, (3, 12))
    with pytest.raises(ValueError, match="stages=4 exceeds the VQ-VAE's 3 code"):
        maps(4, "four")
    with pytest.raises(ConfigError, match="stages"):
        PriorConfig(stages=0)

"""Training a waveform VQ-VAE on `audio:DIR`: config, outputs, and train.py's audio flags."""

import csv
import logging
import subprocess
import sys
import wave
from pathlib import Path

import keras
import numpy as np
import pytest

from vqvae_tf.data import LJSPEECH16K_VALIDATION, write_wav
from vqvae_tf.data.wav import read_wav
from vqvae_tf.training.config import AUDIO_AUTO_LOSS, ConfigError, TrainConfig
from vqvae_tf.training.loop import train_and_evaluate

ROOT = Path(__file__).resolve().parents[2]
RATE = 16000
CLIPS = 8
DOWNSAMPLE = 4


def synthetic_clip(k, seconds=0.5):
    """Clip `k`: a tone, a chirp or a noise burst (odd lengths, so validation needs trimming)."""
    n = int(seconds * RATE) + 3 * k + 1
    t = np.arange(n) / RATE
    rng = np.random.default_rng(k)
    kind = k % 3
    if kind == 0:
        clip = 0.5 * np.sin(2 * np.pi * (220 + 110 * k) * t)
    elif kind == 1:
        clip = 0.4 * np.sin(2 * np.pi * (300 + 3000 * t) * t)
    else:
        clip = np.zeros(n)
        clip[n // 4 : n // 2] = rng.normal(0, 0.2, n // 2 - n // 4)
    return clip.astype(np.float32)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("wavs")
    for k in range(CLIPS):
        write_wav(root / f"clip{k}.wav", synthetic_clip(k), RATE)
    (root / "validation.txt").write_text("clip1.wav\nclip6\n")
    return root


TINY = dict(
    downsample=DOWNSAMPLE,
    crop_length=1024,
    hidden_units=8,
    residual_units=4,
    num_codes=16,
    code_dim=4,
    epochs=2,
    steps_per_epoch=2,
    batch_size=4,
    warmup_steps=1,
    export=False,
    mixed_precision="none",
    num_samples=2,
    verbose=0,
)


def tiny(audio_dir, **overrides):
    return TrainConfig(**{**TINY, "dataset": f"audio:{audio_dir}", **overrides})


# ----------------------------------------------------------------- config
def test_audio_config_fields_validate_and_old_configs_load(audio_dir):
    config = tiny(audio_dir, validation_list=audio_dir / "validation.txt")
    assert config.is_audio and isinstance(config.validation_list, str)
    assert config.resolved_reconstruction_loss() == AUDIO_AUTO_LOSS == "stft_mel"  # auto for audio (docs/training.md)
    kwargs = tiny(audio_dir, reconstruction_loss="stft").model_kwargs(1, 0.1)
    assert kwargs["rank"] == 1 and kwargs["reconstruction_loss"] == "stft" and kwargs["downsample"] == DOWNSAMPLE
    assert TrainConfig(dataset="digits").resolved_reconstruction_loss() == "mse"
    assert "rank" not in TrainConfig().model_kwargs(3, 0.1)
    assert TrainConfig(validation_list=None).validation_list_path() is None
    assert tiny(audio_dir, validation_list="ljspeech16k").validation_list_path() == LJSPEECH16K_VALIDATION
    # A config.json written before the audio fields existed.
    old = TrainConfig().to_dict()
    for name in ("sample_rate", "crop_length", "validation_list", "label_pattern", "reconstruction_loss"):
        del old[name]
    loaded = TrainConfig.from_dict(old)
    assert loaded.reconstruction_loss == "mse" and not loaded.is_audio
    assert not loaded.incompatible_fields(TrainConfig(reconstruction_loss="mse"))


@pytest.mark.parametrize(
    "overrides, words",
    [
        (dict(crop_length=1002), "crop_length must be a multiple of downsample=4"),
        (dict(sample_rate=4000), "`sample_rate` must be an int >= 8000 and <= 48000"),
        (dict(reconstruction_loss="mel"), "`reconstruction_loss` must be one of 'auto', 'mse', 'stft'"),
        (dict(label_pattern=""), "label_pattern must be a non-empty str or None"),
    ],
)
def test_bad_audio_settings_name_the_field(audio_dir, overrides, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        tiny(audio_dir, **overrides)


def test_audio_settings_on_image_data_are_refused():
    with pytest.raises(ConfigError, match="validation_list applies to audio datasets"):
        TrainConfig(dataset="digits", validation_list="ljspeech16k")
    for name in ("stft", "stft_mel"):
        with pytest.raises(ConfigError, match=f"reconstruction_loss='{name}' applies to audio datasets"):
            TrainConfig(dataset="digits", reconstruction_loss=name)


# ------------------------------------------------------------------ a run
@pytest.fixture(scope="module")
def audio_run(audio_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    # The stft_mel loss (what "auto" picks for audio, the shipped speech model's), named explicitly.
    config = tiny(audio_dir, validation_list=str(audio_dir / "validation.txt"), reconstruction_loss="stft_mel")
    return workdir, config, train_and_evaluate(config, workdir)


@pytest.mark.slow
def test_audio_run_writes_history_models_and_wav_samples(audio_run):
    workdir, config, result = audio_run
    assert result["status"] == "trained" and result["epochs_run"] == 2
    with open(workdir / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert all(np.isfinite(float(row["val_loss"])) for row in rows)
    saved = TrainConfig.load(workdir / "config.json")
    assert saved.reconstruction_loss == "stft_mel" and saved.mixed_precision == "none"
    model = keras.models.load_model(workdir / "model.keras")
    assert model.rank == 1 and model.reconstruction_loss == "stft_mel" and model.downsample == DOWNSAMPLE
    assert (workdir / "best.keras").is_file()
    # Validation clips clip1 (8004 samples) and clip6 (8019): trimmed to multiples of 4.
    for epoch in (1, 2):
        for k, length in ((0, 8004), (1, 8016)):
            for part in ("input", "reconstruction"):
                path = workdir / "samples" / f"epoch_{epoch:03d}_clip{k}_{part}.wav"
                with wave.open(str(path), "rb") as w:
                    assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
                    assert w.getnframes() == length
    samples, rate = read_wav(workdir / "samples" / "epoch_002_clip0_input.wav")
    np.testing.assert_allclose(samples, synthetic_clip(1)[:8004], atol=1 / 16000)
    assert rate == RATE
    assert not list((workdir / "samples").glob("*.png"))


@pytest.mark.slow
def test_audio_run_writes_tensorboard_audio_and_resumes_as_finished(audio_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    workdir, config, _ = audio_run
    events = EventAccumulator(str(workdir / "tensorboard" / "samples"), size_guidance={"tensors": 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    assert {"audio/clip0", "audio/clip1"} <= set(tags), tags
    steps = [event.step for event in events.Tensors("audio/clip0")]
    assert steps == [1, 2]
    again = train_and_evaluate(config, workdir)
    assert again["status"] == "already_finished"


# --------------------------------------------------------------- train.py
@pytest.fixture
def train_flags():
    """Parses train.py's flags in this process (fast); unparsed afterwards."""
    sys.path.insert(0, str(ROOT))
    import train

    def parse(*argv):
        train.FLAGS.unparse_flags()
        train.FLAGS(["train.py", *argv])
        return train

    yield parse

    train.FLAGS.unparse_flags()


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--image_size=16"], "--image_size applies to image datasets, not to --dataset=audio:"),
        (["--crop_length=1000", "--downsample=16"], "crop_length must be a multiple of downsample=16"),
        (["--crop_length=1024", "--validation_list=no_such_list.txt"], "cannot read validation_list"),
        (["--crop_length=1024", "--label_pattern=(?P<label>"], "is not a valid regular expression"),
    ],
)
def test_train_py_audio_flag_errors_are_one_log_line_and_exit_2(audio_dir, tmp_path, train_flags, caplog, flags, words):
    train = train_flags(f"--workdir={tmp_path / 'run'}", f"--dataset=audio:{audio_dir}", *flags)
    with caplog.at_level(logging.ERROR):
        code = train.run(train.config_from_flags, train.FLAGS.workdir)
    assert code == train.EXIT_BAD_INPUT
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0] and words in errors[0], errors


def test_train_py_refuses_audio_flags_for_images(tmp_path, train_flags):
    train = train_flags(f"--workdir={tmp_path / 'run'}", "--sample_rate=8000", "--validation_list=ljspeech16k")
    with pytest.raises(ConfigError, match=r"--sample_rate, --validation_list applies to audio datasets \(audio:DIR\)"):
        train.config_from_flags()


def test_train_py_shipped_list_name_reaches_the_config(audio_dir, train_flags):
    train = train_flags(f"--dataset=audio:{audio_dir}", "--validation_list=ljspeech16k", "--crop_length=1024")
    config = train.config_from_flags()
    assert config.validation_list == "ljspeech16k" and config.validation_list_path() == LJSPEECH16K_VALIDATION


@pytest.mark.slow
def test_train_py_subprocess_error_is_one_line_exit_2(audio_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"--workdir={tmp_path / 'run'}", f"--dataset=audio:{audio_dir}"]
        + ["--image_size=16"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "train.py:" in line and "--image_size applies" in line]
    assert len(lines) == 1

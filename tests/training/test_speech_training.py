"""Training the speech network (`audio_strides`): config, a tiny run with SI-SNR in history.csv, train.py flags."""

import csv
import json
import logging

import keras
import numpy as np
import pytest

from tests.training.test_audio_training import TINY, audio_dir, train_flags  # noqa: F401  (fixtures)
from vqvae_tf.training.config import ConfigError, TrainConfig
from vqvae_tf.training.loop import train_and_evaluate

SPEECH = dict(TINY, audio_strides=(2, 2, 2), crop_length=1024)
SPEECH.pop("downsample")


def speech(audio_dir, **overrides):  # noqa: F811
    return TrainConfig(**{**SPEECH, "dataset": f"audio:{audio_dir}", **overrides})


def test_config_fields_hop_and_model_kwargs(audio_dir):  # noqa: F811
    config = speech(audio_dir, audio_strides=[2, 4, 5, 8], crop_length=8000)
    assert config.audio_strides == (2, 4, 5, 8) and config.hop == 320 and config.causal is True
    kwargs = config.model_kwargs(1, 0.1)
    assert (kwargs["strides"], kwargs["downsample"], kwargs["causal"], kwargs["sample_rate"]) == (
        [2, 4, 5, 8],
        320,
        True,
        16000,
    )
    again = TrainConfig.from_json(config.to_json())
    assert again == config and json.loads(config.to_json())["audio_strides"] == [2, 4, 5, 8]
    assert not config.incompatible_fields(again)
    # A config written before the fields existed: the paper's network, as before.
    old = json.loads(speech(audio_dir, audio_strides=None, downsample=4).to_json())
    del old["audio_strides"], old["causal"]
    loaded = TrainConfig.from_dict(old)
    assert loaded.audio_strides is None and "strides" not in loaded.model_kwargs(1, 0.1)
    assert "frame_length" not in kwargs  # the default (1) leaves the model's config as before
    framed = speech(audio_dir, audio_strides=[2, 2], audio_frame_length=80, crop_length=8000)
    assert framed.hop == 320 and framed.model_kwargs(1, 0.1)["frame_length"] == 80
    assert TrainConfig.from_json(framed.to_json()) == framed


@pytest.mark.parametrize(
    "overrides, words",
    [
        (dict(crop_length=1020), "crop_length must be a multiple of the hop 8; received 1020."),
        (dict(audio_strides=(2, 1)), "`strides` must be an int >= 2 and <= 16; received 1."),
        (dict(audio_strides="2,4"), "strides must be a sequence of ints in 2..16"),
        (dict(causal="yes"), "causal must be a bool; received 'yes'."),
        (dict(audio_strides=None, audio_frame_length=4), "audio_frame_length applies with audio_strides"),
    ],
)
def test_bad_speech_settings_name_the_field(audio_dir, overrides, words):  # noqa: F811
    with pytest.raises((ConfigError, ValueError), match=words.replace("(", r"\(").replace(")", r"\)")):
        speech(audio_dir, **overrides)


def test_audio_strides_refused_for_images():
    with pytest.raises(ConfigError, match="audio_strides applies to audio datasets"):
        TrainConfig(dataset="digits", audio_strides=(2, 4))


@pytest.mark.slow
def test_speech_run_reports_si_snr(audio_dir, tmp_path):  # noqa: F811
    config = speech(audio_dir, validation_list=str(audio_dir / "validation.txt"))
    result = train_and_evaluate(config, tmp_path / "run")
    with open(tmp_path / "run" / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for row in rows:
        assert np.isfinite(float(row["val_si_snr"])) and np.isfinite(float(row["si_snr"]))
    assert np.isfinite(result["final"]["val_si_snr"])
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert model.strides == (2, 2, 2) and model.causal and model.downsample == 8
    assert model.algorithmic_latency == 8 and model.latency_ms == pytest.approx(0.5)


def test_train_py_speech_flags(audio_dir, train_flags):  # noqa: F811
    train = train_flags(f"--dataset=audio:{audio_dir}", "--audio_strides=2,4,5,8", "--nocausal", "--crop_length=8000")
    config = train.config_from_flags()
    assert config.audio_strides == (2, 4, 5, 8) and config.causal is False and config.hop == 320


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--audio_strides=2,x"], "--audio_strides must be integers such as 2,4,5,8; received 2,x."),
        (["--audio_strides=2,4", "--downsample=8"], "--downsample does not apply with --audio_strides"),
        (["--nocausal"], "--causal applies with --audio_strides"),
    ],
)
def test_train_py_speech_flag_errors(audio_dir, tmp_path, train_flags, caplog, flags, words):  # noqa: F811
    train = train_flags(f"--workdir={tmp_path / 'run'}", f"--dataset=audio:{audio_dir}", "--crop_length=1024", *flags)
    with caplog.at_level(logging.ERROR):
        code = train.run(train.config_from_flags, train.FLAGS.workdir)
    assert code == train.EXIT_BAD_INPUT
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and words in errors[0], errors


def test_train_py_refuses_audio_strides_for_images(tmp_path, train_flags):  # noqa: F811
    train = train_flags(f"--workdir={tmp_path / 'run'}", "--audio_strides=2,4")
    with pytest.raises(ConfigError, match=r"--audio_strides applies to audio datasets \(audio:DIR\)"):
        train.config_from_flags()

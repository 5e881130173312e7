"""The prior stage on a speech run: 1-row token maps of segments, kbps metrics, WAV samples, PixelCNN refused."""

import json
import logging
import math
import wave

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.test_audio_training import RATE, TINY, audio_dir, train_flags  # noqa: F401
from vqvae_tf.data.wav import read_wav
from vqvae_tf.priors.likelihood import nll_per_code
from vqvae_tf.priors.loading import load_prior
from vqvae_tf.priors.stage_tokens import stages_to_tokens
from vqvae_tf.training.code_files import load_codes
from vqvae_tf.training.config import ConfigError, TrainConfig
from vqvae_tf.training.loop import train_and_evaluate
from vqvae_tf.training.prior_config import PriorConfig
from vqvae_tf.training.prior_training import train_prior
from vqvae_tf.training.speech_prior import audio_extraction_batches, speech_rates, validation_segments

SEGMENT = 256  # crop_length: 32 frames at the hop of 8
HOP, STAGES, NUM_CODES = 8, 2, 16


@pytest.fixture(scope="module")
def speech_run(audio_dir, tmp_path_factory):  # noqa: F811
    """A tiny residual speech VQ-VAE run (strides 2,2,2, 2 stages of 16 codes) on the synthetic clips."""
    workdir = tmp_path_factory.mktemp("speech_run")
    fields = dict(TINY, audio_strides=(2, 2, 2), crop_length=SEGMENT, quantizer="residual", num_stages=STAGES, epochs=1)
    fields.pop("downsample")
    config = TrainConfig(**fields, dataset=f"audio:{audio_dir}", validation_list=str(audio_dir / "validation.txt"))
    train_and_evaluate(config, workdir)
    return workdir


def tiny_prior(**overrides):
    fields = dict(kind="transformer", embed_dim=16, num_heads=2, num_layers=1, steps=150, batch_size=8)
    fields.update(learning_rate=1e-2, train_batches=4, num_samples=2)
    return PriorConfig(**{**fields, **overrides})


@pytest.fixture(scope="module")
def speech_prior(speech_run):
    workdir = speech_run / "prior"
    return workdir, train_prior(tiny_prior(), speech_run, workdir)


@pytest.mark.slow
def test_speech_prior_models_segments_as_token_rows(audio_dir, speech_run, speech_prior):  # noqa: F811
    workdir, metrics = speech_prior
    saved = json.loads((workdir / "prior_metrics.json").read_text())
    assert saved["audio"] is True and saved["kind"] == "transformer"
    assert saved["map_shape"] == [1, SEGMENT // HOP * STAGES] and saved["num_stages"] == STAGES
    # Training: 4 batches of the run's 4 random crops; test: clip1 (8004 samples) and clip6 (8019)
    # cut into 31 whole segments each, the remainders dropped.
    assert saved["num_train_maps"] == 16 and saved["num_test_maps"] == 62
    codes, _ = load_codes(workdir / "codes_validation.npz")
    assert codes.shape == (62, SEGMENT // HOP, STAGES)  # the cache keeps the VQ-VAE's (T, S) codes
    model = keras.models.load_model(speech_run / "model.keras")
    clip, _ = read_wav(audio_dir / "clip1.wav")  # the first validation clip, as the pipeline reads it
    expected = np.asarray(model.codes(np.stack([clip[:SEGMENT], clip[30 * SEGMENT : 31 * SEGMENT]])[..., None]))
    np.testing.assert_array_equal(codes[[0, 30]], expected)
    assert np.isfinite(saved["nll_nats"]) and saved["nll_nats"] > 0
    assert saved["nll_nats"] == pytest.approx(metrics["nll_nats"])
    # The prior learned the layout of the row: at a stage-s position nearly all its mass is on
    # stage s's codes (1/2 untrained), so it reads the row as frames of coarse-then-fine codes.
    tokens = stages_to_tokens(codes[:, None], NUM_CODES)
    logits = np.asarray(load_prior(workdir / "prior.keras").logits(tokens), np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    own = np.concatenate([probs[:, :, s::STAGES, s * NUM_CODES : (s + 1) * NUM_CODES].sum(-1) for s in range(STAGES)])
    assert own.mean() > 0.85, own.mean()  # 0.91 to 0.93 here


@pytest.mark.slow
def test_speech_prior_reports_kbps_against_packed_codes(speech_prior):
    workdir, metrics = speech_prior
    for name in ("bits_per_code", "unigram_bits_per_code", "prior_kbps", "unigram_kbps", "packed_kbps"):
        assert np.isfinite(metrics[name]) and metrics[name] > 0, name
    tokens_per_second = RATE / HOP * STAGES
    assert metrics["tokens_per_second"] == tokens_per_second
    assert metrics["packed_kbps"] == pytest.approx(tokens_per_second * math.log2(NUM_CODES) / 1000)  # 16 kbps
    assert metrics["prior_kbps"] == pytest.approx(metrics["bits_per_code"] * tokens_per_second / 1000)
    assert metrics["unigram_kbps"] == pytest.approx(metrics["unigram_bits_per_code"] * tokens_per_second / 1000)
    assert "bits_per_dim" not in metrics  # the image bound (256-level pixels) does not apply
    # Per stage: one token a frame each, so their mean is the NLL per token.
    assert len(metrics["bits_per_stage"]) == len(metrics["unigram_bits_per_stage"]) == STAGES
    assert np.mean(metrics["unigram_bits_per_stage"]) == pytest.approx(metrics["unigram_bits_per_code"])
    assert np.mean(metrics["bits_per_stage"]) == pytest.approx(metrics["bits_per_code"])
    # ... and that NLL is the prior's on the held-out segments' tokens.
    codes, _ = load_codes(workdir / "codes_validation.npz")
    tokens = stages_to_tokens(codes[:, None], NUM_CODES)
    nll = nll_per_code(load_prior(workdir / "prior.keras"), tokens)
    assert metrics["nll_nats"] == pytest.approx(nll, rel=1e-5)


@pytest.mark.slow
def test_speech_prior_writes_wav_samples(speech_prior):
    workdir, metrics = speech_prior
    paths = sorted((workdir / "samples").iterdir())
    assert [p.name for p in paths] == ["prior_sample_0.wav", "prior_sample_1.wav"]
    assert metrics["paths"]["samples"] == [str(p) for p in paths]
    for path in paths:
        with wave.open(str(path), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (RATE, 1, 2, SEGMENT)
    assert not list(workdir.glob("*.png"))


@pytest.mark.slow
def test_pixelcnn_on_a_speech_run_is_refused(speech_run, tmp_path, train_flags, caplog):  # noqa: F811
    with pytest.raises(ConfigError, match=r"speech run.*kind='transformer'.*received kind='pixelcnn'"):
        train_prior(tiny_prior(kind="pixelcnn"), speech_run, tmp_path / "prior")
    with pytest.raises(ConfigError, match=r"image_size applies to image runs; .* is a speech run \(received 32\)"):
        train_prior(tiny_prior(), speech_run, tmp_path / "prior", image_size=32)
    assert not (tmp_path / "prior").exists()
    train = train_flags("--stage=prior", f"--workdir={speech_run}", "--prior=pixelcnn")
    with caplog.at_level(logging.ERROR):
        assert train.run_prior(train.FLAGS.workdir) == train.EXIT_BAD_INPUT
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0] and "--prior=transformer" in errors[0], errors
    # Unset, --prior picks the Transformer for a speech run and the PixelCNN for an image one.
    train = train_flags("--stage=prior", f"--workdir={speech_run}")
    assert train._prior_kind(speech_run) == "transformer" and train._prior_kind(tmp_path) == "pixelcnn"


def test_validation_segments_drop_the_remainder_and_repeat_labels():
    clips = [np.arange(10, dtype=np.float32), np.arange(3, dtype=np.float32), np.arange(8, dtype=np.float32)]
    labels = [5, 6, 7]
    dataset = tf.data.Dataset.from_generator(
        lambda: ((c[None, :, None], np.array([y], np.int32)) for c, y in zip(clips, labels)),
        output_signature=(tf.TensorSpec((1, None, 1), tf.float32), tf.TensorSpec((1,), tf.int32)),
    )
    batches = [(np.asarray(x), np.asarray(y)) for x, y in validation_segments(dataset, 4)]
    assert [x.shape for x, _ in batches] == [(2, 4, 1), (2, 4, 1)]  # the 3-sample clip gives none
    np.testing.assert_array_equal(batches[0][0][..., 0], [[0, 1, 2, 3], [4, 5, 6, 7]])
    assert [y.tolist() for _, y in batches] == [[5, 5], [7, 7]]
    unlabelled = list(validation_segments(dataset.map(lambda x, y: x), 5))
    assert [tuple(x.shape) for x in unlabelled] == [(2, 5, 1), (1, 5, 1)]


def test_speech_rates_and_extraction_batches():
    rates = speech_rates(6.0, 8.0, 16000, 320, 1024, 6)  # the s16 model's layout: 50 frames/s, 6 x 1024
    assert rates["frames_per_second"] == 50 and rates["tokens_per_second"] == 300
    assert rates["packed_kbps"] == pytest.approx(3.0) and rates["prior_kbps"] == pytest.approx(1.8)
    assert rates["unigram_kbps"] == pytest.approx(2.4)
    assert rates["prior_kbps_reduction_vs_packed"] == pytest.approx(0.4)
    assert audio_extraction_batches(None, 85, 16) == 340 and audio_extraction_batches(7, 85, 16) == 7


@pytest.mark.slow
def test_sample_command_writes_wavs_for_a_speech_run(speech_run, speech_prior, tmp_path):
    from vqvae_tf.training import sample

    common = dict(workdir=speech_run, prior_dir=speech_prior[0], num=3, temperature=1.0, top_k=4, labels=[], seed=1)
    assert sample.run(out=tmp_path / "wavs", **common) == tmp_path / "wavs"
    names = sorted(p.name for p in (tmp_path / "wavs").iterdir())
    assert names == [f"prior_sample_{k}.wav" for k in range(3)]
    with wave.open(str(tmp_path / "wavs" / "prior_sample_2.wav"), "rb") as w:
        assert (w.getframerate(), w.getnframes()) == (RATE, SEGMENT)
    with pytest.raises(ValueError, match=r"WAV files: --out must be a directory; received .*grid\.png"):
        sample.run(out=tmp_path / "grid.png", **common)
    assert not (tmp_path / "grid.png").exists()


@pytest.mark.slow
def test_train_py_prior_stage_on_a_speech_run(speech_run, tmp_path, train_flags, caplog):  # noqa: F811
    before = sorted(p.name for p in speech_run.iterdir())
    train = train_flags(
        "--stage=prior",
        f"--workdir={speech_run}",
        f"--prior_dir={tmp_path / 'prior'}",
        *("--prior_steps=4", "--prior_epochs=2", "--prior_layers=1", "--prior_embed_dim=16", "--batch_size=4"),
        *("--prior_learning_rate=1e-3", "--prior_dropout=0.1", "--prior_train_batches=2", "--keras_verbose=0"),
    )
    with caplog.at_level(logging.INFO, logger="absl"):
        assert train.run_prior(train.FLAGS.workdir) == 0
    saved = json.loads((tmp_path / "prior" / "prior_metrics.json").read_text())
    assert saved["kind"] == "transformer" and saved["num_train_maps"] == 8 and len(saved["history"]["loss"]) == 2
    assert saved["steps_run"] == 4  # --prior_max_minutes unset: no limit
    config = PriorConfig.load(tmp_path / "prior" / "prior_config.json")
    assert (config.embed_dim, config.learning_rate, config.dropout, config.train_batches) == (16, 1e-3, 0.1, 2)
    assert sorted(p.name for p in speech_run.iterdir()) == before  # the run is only read
    assert any("kbps" in r.getMessage() and "packed codes 16.00" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_time_limit_stops_the_prior_after_a_validated_epoch(speech_run, tmp_path):
    metrics = train_prior(tiny_prior(steps=50, epochs=5), speech_run, tmp_path / "prior", max_seconds=1e-6)
    assert metrics["steps_run"] == 1  # the first step ends past the budget
    assert len(metrics["history"]["loss"]) == 1 and len(metrics["history"]["val_loss"]) == 1
    assert (tmp_path / "prior" / "prior.keras").is_file() and np.isfinite(metrics["prior_kbps"])

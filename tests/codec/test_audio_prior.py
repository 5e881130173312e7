"""The audio `prior` method (`vqvae_tf.codec.prior_coding.sequences`) and `add_prior` for speech models.

The tiny residual speech model of `test_audio_codec` (3 stages x 16 codes,
hop 4) gets a tiny `TransformerPrior` over its tokens (vocabulary 48,
segments of 5 frames = 15 tokens, embed 16, 2 layers), fitted for a few
epochs on the codes of its three training clips so that it predicts them
better than the per-stage unigram (`static`), then added with `add_prior`
(float32 `prior.tflite`, `prior.keras`, `prior.json`). The CLI runs in a
subprocess with TensorFlow and Keras blocked (`test_codec._cli`).
"""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vqvae_tf import codec
from vqvae_tf.codec import bitstream
from vqvae_tf.export import codec_package
from vqvae_tf.utils import wav

from .test_audio_codec import NUM_CODES, RATE, STAGES, _signal, _whole, model_dir  # noqa: F401  (the fixture)
from .test_codec import _cli, _cli_with_tensorflow, _save_prior

FRAMES = 5  # per segment of the prior
LENGTH = FRAMES * STAGES


def _speech_prior(path, num_codes=NUM_CODES * STAGES, length=LENGTH, *, seed=0, fit_on=None):
    """A tiny `TransformerPrior` over token rows `(1, length)`, saved to `path`; fitted on code frames `fit_on`."""
    import keras

    from vqvae_tf.priors.stage_tokens import stages_to_tokens
    from vqvae_tf.priors.transformer import TransformerPrior
    from vqvae_tf.utils.atomic import save_model

    keras.utils.set_random_seed(seed)
    prior = TransformerPrior(num_codes, (1, length), embed_dim=16, num_heads=2, num_layers=2)
    prior(np.zeros((1, 1, length), np.int32))
    if fit_on is not None:
        count = len(fit_on) // FRAMES
        frames = fit_on[: count * FRAMES].reshape(count, 1, FRAMES, STAGES)
        prior.compile(keras.optimizers.Adam(3e-3))
        prior.fit(stages_to_tokens(frames, NUM_CODES), batch_size=64, epochs=10, verbose=0)
    save_model(prior, path)
    return path


@pytest.fixture(scope="module")
def trained(model_dir):  # noqa: F811
    """The fitted speech prior's `.keras` file."""
    model = codec.load_model(model_dir)
    clips = sorted((model_dir.parent / "clips").glob("*.wav"))
    codes = np.concatenate([model.encoder.encode(wav.read_wav(path)[0][:, None]) for path in clips])
    return _speech_prior(model_dir.parent / "speech_prior.keras", fit_on=codes)


@pytest.fixture(scope="module")
def prior_dir(model_dir, trained):  # noqa: F811
    """The tiny speech model with the fitted prior added."""
    directory = Path(shutil.copytree(model_dir, model_dir.parent / "speech_prior_model"))
    written = codec_package.add_prior(directory, trained, audio_dir=model_dir.parent / "clips", command="fixture")
    assert written == directory / "prior.keras" and (directory / "prior.tflite").is_file()
    return directory


@pytest.fixture(scope="module")
def model(prior_dir):
    return codec.load_model(prior_dir)


def test_add_prior_writes_the_sidecar_with_the_rate_on_the_training_audio(prior_dir):
    sidecar = json.loads((prior_dir / "prior.json").read_text())
    assert (sidecar["signal"], sidecar["num_codes"], sidecar["num_stages"], sidecar["vocabulary"]) == (
        "audio",
        NUM_CODES,
        STAGES,
        NUM_CODES * STAGES,
    )
    assert (sidecar["segment_frames"], sidecar["segment_tokens"]) == (FRAMES, LENGTH)
    assert sidecar["fingerprint"] == sidecar["keras_fingerprint"] and sidecar["tflite"]["quantization"] == "float32"
    # The fitted prior beats the per-stage unigram on the audio it was fitted on.
    assert 0 < sidecar["prior_kbps_on_training_audio"] < sidecar["static_kbps_on_training_audio"] < 48


@pytest.mark.parametrize(
    "num_samples, segments",
    [
        (5001, 251),  # 1251 frames: 250 whole segments and one of 1 frame, in 4 batches of up to 64
        (1281, 65),  # 321 frames: the last batch is the short segment alone
    ],
)
def test_round_trip_gives_the_codes_and_the_static_methods_samples(model, num_samples, segments):
    samples = _signal(num_samples, seed=3)
    data = codec.compress_audio(samples, RATE, model, "prior")
    header = bitstream.read_header(data)
    params = header.prior_params
    assert header.method == bitstream.Method.PRIOR and header.kept_stages == STAGES
    assert params["tile"] == (1, LENGTH) and params["tiles_per_batch"] == 64
    assert params["fingerprint"] == json.loads((model.directory / "prior.json").read_text())["fingerprint"]
    frames = -(-num_samples // 4)
    assert header.code_shape == (frames, STAGES) and -(-frames * STAGES // LENGTH) == segments
    codes, _ = _whole(samples, model)
    stream = bitstream.decode_stream(data, prior=model.prior())
    np.testing.assert_array_equal(stream.codes, codes)
    static = codec.compress_audio(samples, RATE, model, "static")
    restored, rate = codec.decompress_audio(data, model)
    assert rate == RATE
    np.testing.assert_array_equal(restored, codec.decompress_audio(static, model)[0])
    if num_samples == 5001:
        assert len(data) < len(static), (len(data), len(static))


def test_a_keras_prior_codes_the_streams_of_the_tflite_prior(model, trained):
    samples = _signal(1281, seed=8)
    with_keras = codec.compress_audio(samples, RATE, model, "prior", prior=trained)
    assert with_keras == codec.compress_audio(samples, RATE, model, "prior")
    expected = codec.decompress_audio(codec.compress_audio(samples, RATE, model, "static"), model)[0]
    np.testing.assert_array_equal(codec.decompress_audio(with_keras, model, prior=trained)[0], expected)


def test_fewer_stages_a_low_kbps_another_prior_and_no_prior_are_refused(model, model_dir, tmp_path):  # noqa: F811
    samples = _signal(2001, seed=4)
    with pytest.raises(codec.CodecError, match=r"all 3 stages .* quality=2: use --method static for fewer stages"):
        codec.compress_audio(samples, RATE, model, "prior", quality=2)
    data = codec.compress_audio(samples, RATE, model, "prior")
    kbps = 8 * len(data) / (2001 / RATE) / 1000
    assert codec.compress_audio(samples, RATE, model, "prior", kbps=kbps) == data
    with pytest.raises(codec.CodecError, match=rf"all 3 stages, {kbps:.4f} kbps .* above kbps=1; use --method static"):
        codec.compress_audio(samples, RATE, model, "prior", kbps=1)
    other = _speech_prior(tmp_path / "other.keras", seed=1)
    with pytest.raises(codec.CodecError, match=r"coded with prior [0-9a-f]{16}, but this prior is [0-9a-f]{16}") as e:
        codec.decompress_audio(data, model, prior=other)
    assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="has no prior.keras, which the 'prior' method needs"):
        codec.decompress_audio(data, model_dir)  # the same model without a prior


def test_priors_that_do_not_fit_are_refused_by_add_prior(model_dir, prior_dir, trained, tmp_path):  # noqa: F811
    work = Path(shutil.copytree(model_dir, tmp_path / "m"))
    clips = model_dir.parent / "clips"
    for path, message in (
        (_speech_prior(tmp_path / "k16.keras", num_codes=NUM_CODES), r"vocabulary 48\); received a prior of 16"),
        (_speech_prior(tmp_path / "odd.keras", length=16), r"token rows \(1, T \* 3\).*map_shape \(1, 16\)"),
        (_save_prior(tmp_path / "image.keras", 48, seed=0), r"token rows .* map_shape \(4, 4\)"),
    ):
        with pytest.raises(codec.CodecError, match=message) as error:
            codec_package.add_prior(work, path, audio_dir=clips)
        assert "\n" not in str(error.value) and not (work / "prior.json").exists()
    # The reverse: a speech prior for an image model (its sidecar and its vocabulary).
    image_model = dataclasses.replace(codec.load_model(prior_dir), rank=2, _priors={})
    with pytest.raises(codec.CodecError, match=r"is for audio models; model .* is an image model"):
        image_model.prior(prior_dir / "prior.tflite")
    with pytest.raises(codec.CodecError, match=r"models 48 codes \(the tokens of all 3 stages\)"):
        image_model.prior(trained)


def test_a_float16_prior_has_its_own_fingerprint_and_round_trips(model_dir, trained, tmp_path):  # noqa: F811
    work = Path(shutil.copytree(model_dir, tmp_path / "m16"))
    written = codec_package.add_prior(
        work, trained, audio_dir=model_dir.parent / "clips", keras_copy=False, quantization="float16"
    )
    assert written == work / "prior.tflite" and not (work / "prior.keras").exists()
    sidecar = json.loads((work / "prior.json").read_text())
    assert sidecar["fingerprint"] != sidecar["keras_fingerprint"] and sidecar["tflite"]["quantization"] == "float16"
    assert (work / "prior.tflite").stat().st_size < (
        model_dir.parent / "speech_prior_model" / "prior.tflite"
    ).stat().st_size
    model = codec.load_model(work)
    samples = _signal(1281, seed=9)
    data = codec.compress_audio(samples, RATE, model, "prior")
    expected = codec.decompress_audio(codec.compress_audio(samples, RATE, model, "static"), model)[0]
    np.testing.assert_array_equal(codec.decompress_audio(data, model)[0], expected)
    with pytest.raises(codec.CodecError, match="coded with prior"):
        codec.decompress_audio(data, model, prior=trained)  # the float32 Keras prior refuses the float16 stream


def test_cli_prior_round_trip_without_tensorflow(prior_dir, tmp_path):
    wav.write_wav(tmp_path / "in.wav", _signal(3001, seed=5), RATE)
    done = _cli("compress", tmp_path / "in.wav", tmp_path / "x.vqz", "--model", prior_dir, "--method", "prior")
    assert done.returncode == 0 and "prior, quality 3: 3 of 3 stages" in done.stdout, done.stderr
    done = _cli("info", tmp_path / "x.vqz")
    info = json.loads(done.stdout)
    assert (
        info["method"] == "prior"
        and info["prior"]["tile"] == [1, LENGTH]
        and "prior_payload_bytes" not in info["prior"]
    )
    done = _cli("decompress", tmp_path / "x.vqz", tmp_path / "out.wav", "--model", prior_dir)
    assert done.returncode == 0, done.stderr
    static = codec.compress_audio(wav.read_wav(tmp_path / "in.wav")[0], RATE, prior_dir, "static")
    expected = codec.decompress_audio(static, prior_dir)[0]
    assert np.max(np.abs(wav.read_wav(tmp_path / "out.wav")[0] - expected)) <= 1.5 / 32768
    done = _cli(
        "compress", tmp_path / "in.wav", tmp_path / "y.vqz", "--model", prior_dir, "--method", "prior", "--quality", 1
    )
    assert done.returncode == 2 and "use --method static for fewer stages" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "y.vqz").exists()


@pytest.mark.slow
def test_cli_add_prior_for_a_speech_model(model_dir, trained, tmp_path):  # noqa: F811
    work = Path(shutil.copytree(model_dir, tmp_path / "m"))
    clips = model_dir.parent / "clips"
    args = ("add-prior", work, trained, "--audio_dir", clips, "--prior_quantization", "float16", "--nokeras_copy")
    done = _cli_with_tensorflow(*args)
    assert done.returncode == 0, done.stderr
    sidecar = json.loads((work / "prior.json").read_text())
    assert sidecar == json.loads(done.stdout) and sidecar["tflite"]["quantization"] == "float16"
    assert not (work / "prior.keras").exists()
    done = _cli_with_tensorflow("add-prior", work, trained, "--audio_dir", clips)
    assert done.returncode == 2 and "already has prior.tflite" in done.stderr

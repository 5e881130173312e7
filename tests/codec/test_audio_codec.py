"""The audio codec (`vqvae_tf.codec.audio`, `chunking`): WAV and arrays in and out, rates, chunking, bad input, the CLI.

A tiny causal residual speech network (3 stages, hop 4 at 16 kHz) gets
its stage codebooks from k-means on its own encoder outputs (so each
stage's codes vary, without a slow `fit`), is exported to float32 TFLite
once per module and packaged as an audio codec model, its code counts
measured on three synthetic WAV files. The signals are synthetic (chirps,
tones and noise) written here. The CLI runs in a subprocess with TensorFlow
and Keras blocked (`test_codec._cli`).
"""

import dataclasses
import json
import struct

import numpy as np
import pytest

from tests.tiny_models import codebooks_from_encoder, package_tiny, smooth_image, tiny_speech_vqvae
from vqvae_tf import codec
from vqvae_tf.codec import audio, bitstream, chunking
from vqvae_tf.codec.rate import pad_stages
from vqvae_tf.utils import wav

from .test_codec import _cli

RATE = 16000
HOP = 4
STAGES = 3
NUM_CODES = 16


def _signal(num_samples, rate=RATE, seed=0):
    """A chirp over a tone plus noise bursts in [-1, 1], float32 `(num_samples,)`."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / rate
    chirp = 0.4 * np.sin(2 * np.pi * (200 + 1500 * t / max(t[-1], 1e-3)) * t)
    bursts = 0.2 * rng.normal(size=num_samples) * (np.sin(2 * np.pi * 3 * t) > 0.6)
    return np.clip(chirp + 0.2 * np.sin(2 * np.pi * 440 * t) + bursts, -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model = tiny_speech_vqvae(
        NUM_CODES,
        "residual",
        strides=(2, 2),
        hidden_units=8,
        code_dim=4,
        seed=5,
        quantizer_config=dict(num_stages=STAGES, kmeans_iters=3),
        sample_rate=RATE,
    )
    codebooks_from_encoder(model, np.stack([_signal(4000, seed=s) for s in range(4)])[..., None])
    root = tmp_path_factory.mktemp("audio_codec")
    (root / "clips").mkdir()
    for s in range(3):
        wav.write_wav(root / "clips" / f"clip{s}.wav", _signal(8000, seed=10 + s), RATE)
    model.save_to_preset(root / "preset", significant_bits=11)  # for the packaging tests
    return package_tiny(model, root, "speech", audio_dir=root / "clips")


@pytest.fixture(scope="module")
def model(model_dir):
    return codec.load_model(model_dir)


def _whole(samples, model):
    """Codes and decoded samples of one whole-signal run of the TFLite networks (no chunks)."""
    padded = np.pad(samples, (0, -len(samples) % HOP))[:, None]
    codes = model.encoder.encode(padded)
    return codes, model.decoder.decode(codes)[:, 0]


def test_the_packaged_model_is_an_audio_model_with_kbps_rates(model, model_dir):
    assert (model.kind, model.sample_rate, model.downsample, model.causal) == ("audio", RATE, HOP, True)
    assert model.code_shape == (STAGES,) and model.receptive_field > HOP
    manifest = json.loads((model_dir / "codec.json").read_text())
    # 4 bits per code, 4000 frames per second, per stage kept.
    assert [r["packed_kbps"] for r in manifest["rates"]] == [16.0, 32.0, 48.0]
    assert json.loads((model_dir / "code_counts.json").read_text())["source"].startswith("3 WAV files")
    codes, _ = _whole(_signal(4000), model)
    assert all(len(np.unique(codes[:, s])) >= 4 for s in range(STAGES)), "codes must vary for the tests to mean much"


def test_round_trip_at_16k_gives_the_networks_codes_and_samples(model):
    samples = _signal(5001)  # not a whole number of frames
    data = codec.compress_audio(samples, RATE, model)
    header = bitstream.read_header(data)
    assert header.kind == bitstream.Kind.AUDIO and header.audio == bitstream.AudioFormat(RATE, 5001)
    codes, decoded = _whole(samples, model)
    np.testing.assert_array_equal(bitstream.decode_stream(data, expected_model_id=model.stream_id).codes, codes)
    restored, rate = codec.decompress_audio(data, model)
    assert rate == RATE and restored.dtype == np.float32 and restored.shape == (5001,)
    np.testing.assert_allclose(restored, np.clip(decoded[:5001], -1, 1), atol=1e-6)
    as_int, _ = codec.decompress_audio(data, model, dtype="int16")
    assert as_int.dtype == np.int16 and np.max(np.abs(as_int / 32767.0 - restored)) <= 0.5 / 32767 + 1e-6


@pytest.mark.parametrize("rate, channels", [(8000, 1), (44100, 2)])
def test_other_rates_and_stereo_int16_restore_the_original_rate_and_length(model, rate, channels):
    mono = _signal(int(0.37 * rate) + 3, rate=rate, seed=2)
    samples = np.round(np.stack([mono] * channels, axis=1) * 32767).astype(np.int16) if channels > 1 else mono
    data = codec.compress_audio(samples, rate, model, "static")
    header = bitstream.read_header(data)
    assert (header.audio.sample_rate, header.audio.num_samples, header.audio.source_channels) == (
        rate,
        len(mono),
        channels,
    )
    restored, got_rate = codec.decompress_audio(data, model)
    assert got_rate == rate and restored.shape == mono.shape
    # What the codec computes: the mono mix resampled to 16 kHz, coded, decoded, resampled back.
    at_model_rate = wav.resample(samples.mean(axis=1) / 32768.0 if channels > 1 else mono, rate, RATE)
    codes, decoded = _whole(at_model_rate, model)
    np.testing.assert_array_equal(
        bitstream.decode_stream(data, code_probabilities=model.code_probabilities(STAGES)).codes, codes
    )
    expected = wav.resample(np.clip(decoded[: len(at_model_rate)], -1, 1), RATE, rate)[: len(mono)]
    np.testing.assert_allclose(restored, expected, atol=1e-6)


def test_every_quality_decodes_and_kbps_picks_the_highest_that_fits(model):
    samples = _signal(8000, seed=3)  # 0.5 s
    codes, _ = _whole(samples, model)
    sizes = []
    for quality in range(1, STAGES + 1):
        data = codec.compress_audio(samples, RATE, model, quality=quality)
        assert bitstream.read_header(data).kept_stages == quality
        expected = model.decoder.decode(pad_stages(codes[:, :quality], model))[:, 0]
        np.testing.assert_allclose(codec.decompress_audio(data, model)[0], np.clip(expected, -1, 1), atol=1e-6)
        sizes.append(len(data))
    assert sizes == sorted(sizes) and len(set(sizes)) == STAGES
    kbps = [8 * size / 0.5 / 1000 for size in sizes]
    for target, quality in ((kbps[1] + 0.01, 2), (kbps[2], 3), (kbps[0], 1), (1e6, 3)):
        assert bitstream.read_header(codec.compress_audio(samples, RATE, model, kbps=target)).kept_stages == quality
    with pytest.raises(codec.CodecError, match=rf"fits kbps=1 .* lowest reachable is {kbps[0]:.4f} kbps \(quality 1\)"):
        codec.compress_audio(samples, RATE, model, kbps=1)


def test_chunked_runs_give_exactly_the_codes_and_samples_of_a_whole_run(model):
    samples = _signal(40_003, seed=4)  # 10,001 frames: 157 chunks of 64 frames, the last one partial
    codes, decoded = _whole(samples, model)
    left, right = chunking.context_frames(model)
    assert right == 0 and left == -(-model.receptive_field // HOP) + 1  # causal: left context only
    chunked = chunking.encode_audio_codes(samples, model, chunk_frames=64)
    np.testing.assert_array_equal(chunked, codes)
    np.testing.assert_allclose(chunking.decode_audio_codes(codes, model, chunk_frames=64), decoded, atol=1e-5)
    np.testing.assert_array_equal(chunking.encode_audio_codes(samples[:999], model, chunk_frames=1), codes[:250])
    small = codec.compress_audio(samples, RATE, model, chunk_frames=64)
    assert small == codec.compress_audio(samples, RATE, model, chunk_frames=20_000)  # one chunk
    np.testing.assert_allclose(
        codec.decompress_audio(small, model, chunk_frames=64)[0],
        codec.decompress_audio(small, model, chunk_frames=20_000)[0],
        atol=1e-5,
    )
    # The overlap is what makes chunks exact: with one frame of context, codes change at chunk starts.
    blind = dataclasses.replace(model, receptive_field=1)
    assert not np.array_equal(chunking.encode_audio_codes(samples, blind, chunk_frames=64), codes)


@pytest.mark.parametrize(
    "samples, rate, kwargs, message",
    [
        (np.zeros(0, np.float32), RATE, {}, "must not be empty; received 0 samples"),
        (np.zeros(3, np.float32), RATE, {}, "shorter than one code frame"),
        (np.full(100, 1.5, np.float32), RATE, {}, r"in \[-1, 1\]; received values in \[1.5, 1.5\]"),
        (np.full(100, np.nan, np.float32), RATE, {}, "finite"),
        (np.zeros(100, np.int32), RATE, {}, "float in .* or int16; received dtype int32"),
        (np.zeros((2, 3, 4), np.float32), RATE, {}, r"\(n,\) or \(n, channels\).*received shape \(2, 3, 4\)"),
        (np.zeros((2, 16000), np.float32), RATE, {}, r"transpose a \(channels, n\) array"),
        (np.zeros(1000, np.float32), 96000, {}, "96000 Hz is outside 8000-48000 Hz; resample it first"),
        (np.zeros(1000, np.float32), 8001, {}, r"8001 Hz cannot be resampled .* ratio 16000/8001"),
        (np.zeros(1000, np.float32), 16000.0, {}, "sample_rate must be an int"),
        (np.zeros(1000, np.float32), RATE, dict(bpp=1.0), "--bpp is for image models.*use --kbps"),
        (np.zeros(1000, np.float32), RATE, dict(method="prior", quality=2), "use --method static for fewer stages"),
        (np.zeros(1000, np.float32), RATE, dict(quality=4), r"quality must be an integer in 1..3"),
    ],
)
def test_bad_arrays_and_arguments_fail_in_one_line(model, samples, rate, kwargs, message):
    with pytest.raises(codec.CodecError, match=message) as error:
        codec.compress_audio(samples, rate, model, **kwargs)
    assert "\n" not in str(error.value)


def test_streams_and_models_of_the_other_kind_are_refused(model):
    image_model = codec.load_model("d8k512")
    with pytest.raises(codec.CodecError, match="the input holds audio, but model 'd8k512' is an image model"):
        codec.compress_audio(_signal(1000), RATE, image_model)
    with pytest.raises(codec.CodecError, match="holds an image, but model 'speech' is an audio model"):
        codec.compress_image(smooth_image(8, 8), model)
    with pytest.raises(codec.CodecError, match="--kbps is for audio models"):
        codec.compress_image(smooth_image(8, 8), image_model, kbps=3)
    speech = codec.compress_audio(_signal(1000), RATE, model)
    photo = codec.compress_image(smooth_image(8, 8), image_model)
    with pytest.raises(codec.CodecError, match="the stream holds audio, but model 'd8k512' is an image model"):
        codec.decompress_bytes(speech, image_model)
    with pytest.raises(codec.CodecError, match="the stream holds audio; decompress_bytes decodes image streams"):
        codec.decompress_bytes(speech)
    with pytest.raises(codec.CodecError, match="the stream holds an image, but model 'speech' is an audio model"):
        codec.decompress_audio(photo, model)
    with pytest.raises(codec.CodecError, match="the stream holds image; decompress_audio decodes audio streams"):
        codec.decompress_audio(photo)
    with pytest.raises(codec.CodecError, match="not a shipped model"):
        codec.decompress_audio(speech)  # the tiny model is not shipped


def _raw_wav(path, *, tag=1, bits=16, rate=RATE, channels=1, frames=1000):
    """A WAV file with any format tag and sample width (zeros), written byte by byte."""
    data = bytes(frames * channels * bits // 8)
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: _raw_wav(p, tag=3, bits=32), "32-bit float WAV is not read; convert it to 16-bit PCM"),
        (lambda p: _raw_wav(p, bits=24), "24-bit PCM is not read .* convert it to 16-bit PCM"),
        (lambda p: _raw_wav(p, bits=32), "32-bit PCM is not read"),
        (lambda p: _raw_wav(p, tag=0x11, bits=4), r"not PCM \(format tag 0x0011, IMA ADPCM\); convert"),
        (lambda p: p.write_bytes(b"") and p, r"empty file \(0 bytes\)"),
        (lambda p: _raw_wav(p, frames=0), "holds no samples; at least 4 frames are needed"),
        (lambda p: _raw_wav(p, rate=8000, frames=1), "holds 1 sample frames .* at least 2 frames"),
        (lambda p: _raw_wav(p, rate=96000), "96000 Hz is outside 8000-48000 Hz"),
        (lambda p: _raw_wav(p, rate=8001), "8001 Hz cannot be resampled"),
    ],
)
def test_bad_wav_files_fail_in_one_line_and_write_nothing(model, tmp_path, make, message):
    source = tmp_path / "in.wav"
    make(source)
    with pytest.raises(codec.CodecError, match=message) as error:
        audio.compress_wav(source, tmp_path / "out.vqz", model)
    assert "\n" not in str(error.value) and not (tmp_path / "out.vqz").exists()


def test_cli_round_trip_info_and_errors_without_tensorflow(model_dir, tmp_path):
    rate = 44100
    stereo = np.stack([_signal(rate // 2, rate, seed=6), _signal(rate // 2, rate, seed=7)], axis=1)
    pcm = np.round(stereo * 32767).astype("<i2")
    import wave

    with wave.open(str(tmp_path / "in.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    done = _cli("compress", tmp_path / "in.wav", tmp_path / "x.vqz", "--model", model_dir, "--kbps", 40)
    assert done.returncode == 0 and "kbps" in done.stdout, done.stderr
    done = _cli("info", tmp_path / "x.vqz")
    info = json.loads(done.stdout)
    assert (info["kind"], info["sample_rate"], info["num_samples"], info["source_channels"]) == (
        "audio",
        rate,
        22050,
        2,
    )
    assert info["duration_seconds"] == 0.5 and info["stages"][1] == STAGES and info["kilobits_per_second"] <= 40
    done = _cli("decompress", tmp_path / "x.vqz", tmp_path / "out.wav", "--model", model_dir)
    assert done.returncode == 0, done.stderr
    restored, got_rate = wav.read_wav(tmp_path / "out.wav")
    expected, _ = codec.decompress_audio((tmp_path / "x.vqz").read_bytes(), model_dir)
    assert got_rate == rate and restored.shape == (22050,)
    assert np.max(np.abs(restored - expected)) <= 1.5 / 32768
    _raw_wav(tmp_path / "float.wav", tag=3, bits=32)
    (tmp_path / "photo.png").write_bytes(b"")
    from PIL import Image

    Image.fromarray(smooth_image(8, 8)).save(tmp_path / "photo.png")
    for args in (
        ("compress", tmp_path / "float.wav", tmp_path / "o.vqz", "--model", model_dir),
        ("compress", tmp_path / "in.wav", tmp_path / "o.vqz", "--model", model_dir, "--bpp", 1),
        ("compress", tmp_path / "in.wav", tmp_path / "o.vqz", "--model", "d8k512"),
        ("compress", tmp_path / "photo.png", tmp_path / "o.vqz", "--model", model_dir),
        ("compress", tmp_path / "photo.png", tmp_path / "o.vqz", "--kbps", 3),
        ("decompress", tmp_path / "x.vqz", tmp_path / "o.wav", "--model", "d8k512"),
        ("decompress", tmp_path / "x.vqz", tmp_path / "o.png", "--model", model_dir),
    ):
        done = _cli(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        assert lines and lines[-1].startswith("vqvae_tf.codec: error:"), done.stderr
    assert not {"o.vqz", "o.wav", "o.png"} & {p.name for p in tmp_path.iterdir()}


def test_the_lite_encoder_takes_audio_in_the_sidecars_value_range(model):
    assert model.encoder.metadata["value_range"] == [-1.0, 1.0]
    assert model.encoder.encode(np.full((8, 1), -1.0, np.float32)).shape == (2, STAGES)
    with pytest.raises(ValueError, match=r"float audio in \[-1, 1\]; received values in \[-1.5, -1.5\]"):
        model.encoder.encode(np.full((8, 1), -1.5, np.float32))
    with pytest.raises(TypeError, match="expects float audio; received dtype uint8"):
        model.encoder.encode(np.zeros((8, 1), np.uint8))


def test_packaging_leaves_the_held_out_clips_out_of_the_counts(model_dir, tmp_path):
    from vqvae_tf.export import codec_package

    export_dir = model_dir.parent / "export" / "tflite"
    (tmp_path / "held_out.txt").write_text("# held out\nclip1\n")
    out = codec_package.package_model(
        export_dir,
        tmp_path / "speech",
        encoder="float32",
        decoder="float32",
        audio_dir=model_dir.parent / "clips",
        audio_exclude=tmp_path / "held_out.txt",
    )
    counts = json.loads((out / "code_counts.json").read_text())
    assert counts["source"].startswith("2 WAV files") and "1 held-out" in counts["source"]
    full = json.loads((model_dir / "code_counts.json").read_text())
    assert np.sum(counts["counts"]) < np.sum(full["counts"])
    (tmp_path / "bad.txt").write_text("clip9\n")
    with pytest.raises(codec.CodecError, match=r"audio_exclude names clips not in .*clip9\.wav"):
        codec_package.package_model(
            export_dir,
            tmp_path / "other",
            encoder="float32",
            decoder="float32",
            audio_dir=model_dir.parent / "clips",
            audio_exclude=tmp_path / "bad.txt",
        )
    assert not (tmp_path / "other").exists()


def test_packaging_with_a_preset_ships_its_model_keras_as_a_keras_preset(model_dir, tmp_path):
    from vqvae_tf.export import codec_package
    from vqvae_tf.models.vqvae import VQVAE
    from vqvae_tf.utils.fingerprint import model_id

    preset = model_dir.parent / "preset"  # compact: rounded weights, so not the weights model_dir was exported from
    with pytest.raises(codec.CodecError, match="export the codec files from the preset's own model.keras"):
        codec_package.package_model(
            model_dir.parent / "export" / "tflite", tmp_path / "refused", encoder="float32", decoder="float32",
            audio_dir=model_dir.parent / "clips", preset=preset,
        )  # fmt: skip
    assert not (tmp_path / "refused").exists()
    out = package_tiny(
        VQVAE.from_preset(preset), tmp_path, "speech", audio_dir=model_dir.parent / "clips", preset=preset, command="c"
    )
    shipped, keras_model = codec.load_model(out), VQVAE.from_preset(out)
    meta = json.loads((out / "preset.json").read_text())
    assert meta["model_id"] == model_id(keras_model) == shipped.model_id
    assert meta["rates"] == json.loads((out / "codec.json").read_text())["rates"] and meta["train_command"] == "c"
    assert (out / "model.keras").read_bytes() == (preset / "model.keras").read_bytes()  # copied, still compact
    assert meta["significant_bits"] == 11 and meta["model_keras_bytes"] == (out / "model.keras").stat().st_size

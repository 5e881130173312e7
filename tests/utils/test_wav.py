"""Tests for `vqvae_tf.utils.wav` (and its re-export `vqvae_tf.data.wav`), on short WAV files written here."""

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from vqvae_tf.utils.wav import BAD_RATE, TOO_SHORT, UNREADABLE, UNSUPPORTED, WavError, read_wav, resample


def to_pcm(samples, bits):
    """Float samples in [-1, 1] (n,) or (n, channels) as PCM bytes."""
    samples = np.asarray(samples, np.float64)
    if bits == 8:
        return np.clip(np.round(samples * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    return np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2").tobytes()


def write_wav(path, samples, rate, bits=16):
    samples = np.asarray(samples)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if samples.ndim == 1 else samples.shape[1])
        w.setsampwidth(bits // 8)
        w.setframerate(rate)
        w.writeframes(to_pcm(samples, bits))
    return path


def write_raw_wav(path, tag, channels, rate, bits, data, extensible_tag=None):
    """A WAV file with any format tag (what `wave` cannot write: float, A-law, EXTENSIBLE)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    if extensible_tag is not None:
        guid = struct.pack("<H", extensible_tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    Path(path).write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def tone(freq, rate, seconds, amplitude=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def peak_frequency(samples, rate):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.argmax(spectrum) * rate / len(samples)


def test_read_wav_decodes_8_and_16_bit(tmp_path):
    write_raw_wav(tmp_path / "u8.wav", 1, 1, 8000, 8, bytes([0, 128, 255]))
    write_raw_wav(tmp_path / "s16.wav", 1, 1, 8000, 16, struct.pack("<3h", -32768, 0, 16384))
    u8, rate = read_wav(tmp_path / "u8.wav")
    np.testing.assert_array_equal(u8, [-1.0, 0.0, 127 / 128])
    assert rate == 8000 and u8.dtype == np.float32
    np.testing.assert_array_equal(read_wav(tmp_path / "s16.wav")[0], [-1.0, 0.0, 0.5])


@pytest.mark.parametrize("rate, bits", [(8000, 8), (22050, 16), (44100, 16), (48000, 8)])
def test_resampled_tone_keeps_its_frequency(tmp_path, rate, bits):
    path = write_wav(tmp_path / "tone.wav", tone(1000.0, rate, 0.5), rate, bits)
    samples, got_rate = read_wav(path)
    out = resample(samples, got_rate, 16000)
    assert out.dtype == np.float32 and len(out) == -(-len(samples) * 16000 // rate)
    assert abs(peak_frequency(out, 16000) - 1000.0) <= 10.0
    assert np.abs(out).max() <= 1.0
    # The level survives too (a 0.5 sine has RMS 0.354), away from the filter's edges.
    assert abs(np.sqrt(np.mean(out[800:-800] ** 2)) - 0.5 / np.sqrt(2)) < 0.01


def test_resample_chirp_drops_what_the_new_rate_cannot_hold():
    # A 48 kHz chirp from 1 to 16 kHz: at 16 kHz, the part above 8 kHz is filtered out, not aliased.
    rate, t = 48000, np.arange(48000) / 48000
    chirp = 0.5 * np.sin(2 * np.pi * (1000 * t + 7500 * t**2))
    out = resample(chirp, rate, 16000)
    first, second = out[: len(out) // 2], out[len(out) // 2 + 400 :]
    assert np.sqrt(np.mean(first[400:] ** 2)) > 0.3  # 1-8.5 kHz: kept (up to the transition band)
    assert np.sqrt(np.mean(second**2)) < 0.05  # 8.5-16 kHz: gone


def test_stereo_and_more_channels_are_averaged(tmp_path):
    left, right = tone(440, 16000, 0.1), tone(1000, 16000, 0.1, 0.25)
    write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000)
    mono, _ = read_wav(tmp_path / "stereo.wav")
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1.5 / 32768)
    three = np.stack([left, right, -left], axis=1)
    write_wav(tmp_path / "three.wav", three, 8000, bits=8)
    np.testing.assert_allclose(read_wav(tmp_path / "three.wav")[0], right / 3, atol=1.5 / 128)


def test_extensible_pcm_is_read(tmp_path):
    pcm = struct.pack("<4h", 0, 16384, -16384, 8192)  # two stereo frames
    write_raw_wav(tmp_path / "ext.wav", 0xFFFE, 2, 16000, 16, pcm, extensible_tag=1)
    np.testing.assert_array_equal(read_wav(tmp_path / "ext.wav")[0], [0.25, -0.125])


def bad_files(root):
    """{file name: (WavError kind, words of its message)} for one file of each refused kind."""
    root.mkdir(exist_ok=True)
    (root / "text.wav").write_text("not audio at all")
    write_raw_wav(root / "float.wav", 3, 1, 16000, 32, np.zeros(8000, "<f4").tobytes())
    write_raw_wav(root / "float_ext.wav", 0xFFFE, 1, 16000, 32, np.zeros(8000, "<f4").tobytes(), extensible_tag=3)
    write_raw_wav(root / "alaw.wav", 6, 1, 8000, 8, bytes(8000))
    write_raw_wav(root / "pcm24.wav", 1, 1, 16000, 24, bytes(3 * 8000))
    write_raw_wav(root / "pcm32.wav", 1, 1, 16000, 32, bytes(4 * 8000))
    write_wav(root / "slow.wav", tone(500, 4000, 2.0), 4000)
    write_wav(root / "fast.wav", tone(500, 96000, 0.1), 96000)
    full = write_wav(root / "cut.wav", tone(500, 16000, 1.0), 16000).read_bytes()
    (root / "cut.wav").write_bytes(full[: len(full) // 2])
    return {
        "text.wav": (UNREADABLE, "not a RIFF/WAVE file"),
        "float.wav": (UNSUPPORTED, "32-bit float WAV"),
        "float_ext.wav": (UNSUPPORTED, "32-bit float WAV"),
        "alaw.wav": (UNSUPPORTED, "not PCM (format tag 0x0006, A-law)"),
        "pcm24.wav": (UNSUPPORTED, "24-bit PCM is not read"),
        "pcm32.wav": (UNSUPPORTED, "32-bit PCM is not read"),
        "slow.wav": (BAD_RATE, "sample rate 4000 Hz is outside 8000-48000 Hz"),
        "fast.wav": (BAD_RATE, "sample rate 96000 Hz is outside 8000-48000 Hz"),
        "cut.wav": (UNREADABLE, "truncated: the header declares 16000 frames"),
    }


def test_read_wav_refuses_each_bad_file_clearly(tmp_path):
    for name, (kind, words) in bad_files(tmp_path).items():
        with pytest.raises(WavError, match=words.replace("(", r"\(").replace(")", r"\)")) as caught:
            read_wav(tmp_path / name)
        assert caught.value.kind == kind, name
    # A ValueError (what the entry points report in one line), not a DatasetError: utils may not import data.
    assert isinstance(caught.value, ValueError)


def test_empty_files_are_refused_clearly(tmp_path):
    (tmp_path / "zero.wav").write_bytes(b"")
    with pytest.raises(WavError, match=r"zero.wav: empty file \(0 bytes\); expected a RIFF/WAVE file$") as caught:
        read_wav(tmp_path / "zero.wav")
    assert caught.value.kind == UNREADABLE
    # A valid header with no samples reads as nothing, or fails when the caller needs samples.
    write_wav(tmp_path / "none.wav", np.zeros(0), 16000)
    samples, rate = read_wav(tmp_path / "none.wav")
    assert samples.shape == (0,) and samples.dtype == np.float32 and rate == 16000
    with pytest.raises(WavError, match=r"none.wav: holds no samples; at least 1 frames are needed$") as caught:
        read_wav(tmp_path / "none.wav", min_frames=1)
    assert caught.value.kind == TOO_SHORT


def test_min_frames_counts_frames_at_the_files_rate(tmp_path):
    write_wav(tmp_path / "stereo.wav", np.zeros((320, 2)), 8000, bits=8)
    assert len(read_wav(tmp_path / "stereo.wav", min_frames=320)[0]) == 320
    with pytest.raises(WavError, match=r"holds 320 sample frames \(0.0400 s\); at least 321 frames") as caught:
        read_wav(tmp_path / "stereo.wav", min_frames=321)
    assert caught.value.kind == TOO_SHORT
    with pytest.raises(ValueError, match="`min_frames` must be an int >= 0; received -1"):
        read_wav(tmp_path / "stereo.wav", min_frames=-1)


def test_write_wav_round_trips_and_refuses_several_channels(tmp_path):
    from vqvae_tf.utils.wav import write_wav as write

    samples = np.linspace(-1.0, 1.0, 1001, dtype=np.float32)
    write(tmp_path / "out.wav", samples[:, None], 22050)
    back, rate = read_wav(tmp_path / "out.wav")
    assert rate == 22050 and np.abs(back - samples).max() <= 1.5 / 32768  # x * 32767 rounded, read back / 32768
    with pytest.raises(ValueError, match=r"write_wav writes one channel, \(T,\) or \(T, 1\); received shape \(10, 2\)"):
        write(tmp_path / "two.wav", np.zeros((10, 2)), 16000)
    assert not (tmp_path / "two.wav").exists()


def test_data_wav_re_exports_the_same_objects():
    import vqvae_tf.data.wav as data_wav
    import vqvae_tf.utils.wav as utils_wav

    for name in data_wav.__all__:
        assert getattr(data_wav, name) is getattr(utils_wav, name), name
    import vqvae_tf.data

    assert vqvae_tf.data.WavError is utils_wav.WavError and vqvae_tf.data.read_wav is utils_wav.read_wav


def test_wav_module_imports_no_tensorflow():
    import ast

    import vqvae_tf.utils.wav as wav

    tree = ast.parse(Path(wav.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"tensorflow", "keras"} and imported <= {
        "__future__",
        "dataclasses",
        "math",
        "os",
        "struct",
        "wave",
        "numpy",
        "scipy",
        "vqvae_tf",
    }

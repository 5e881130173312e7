"""Tests for `audio:DIR`: on short WAV files written here (helpers of tests/utils/test_wav.py), and two FSDD clips."""

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.utils.test_wav import bad_files, tone, write_wav
from vqvae_tf.data import LJSPEECH16K_VALIDATION, DatasetError, make_datasets, read_wav

SPEECH = Path(__file__).resolve().parents[3] / "shared" / "data" / "speech"
CROP = 4096


def noise_folder(root, count=6, seconds=0.5, rate=16000):
    """`count` 16 kHz noise clips of different lengths; returns {name: samples as read}."""
    root.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    clips = {}
    for i in range(count):
        path = write_wav(root / f"clip{i}.wav", rng.uniform(-0.9, 0.9, int(rate * seconds) + 500 * i), rate)
        clips[path.name] = read_wav(path)[0]
    return clips


def test_bad_files_are_skipped_with_counts_and_none_left_fails(tmp_path, caplog):
    bad_files(tmp_path)
    write_wav(tmp_path / "short.wav", tone(440, 16000, 0.1), 16000)
    write_wav(tmp_path / "empty.wav", np.zeros(0), 16000)
    with pytest.raises(DatasetError) as caught:
        make_datasets(f"audio:{tmp_path}", crop_length=CROP, batch_size=2)
    assert str(caught.value) == (
        f"no usable WAV files in {str(tmp_path)!r}: 2 unreadable, 5 not 8/16-bit PCM, "
        f"2 at a sample rate outside 8-48 kHz, 2 shorter than {CROP} samples"
    )
    # With usable clips beside them, the bad ones are skipped and counted in the log.
    noise_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="vqvae_tf.data.audio"):
        bundle = make_datasets(f"audio:{tmp_path}", crop_length=CROP, batch_size=2)
    assert bundle.num_train + bundle.num_validation == 6
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("skipped 2 WAV file(s) unreadable") and "cut.wav (truncated" in m for m in logged)
    assert any(m.startswith("skipped 5 WAV file(s) not 8/16-bit PCM") for m in logged)
    assert any(m.startswith("skipped 2 WAV file(s) at a sample rate outside 8-48 kHz") for m in logged)
    assert any(m.startswith(f"skipped 2 WAV file(s) shorter than {CROP} samples") for m in logged)


def test_training_crops_are_slices_of_the_clips(tmp_path):
    clips = noise_folder(tmp_path / "noise")
    bundle = make_datasets(f"audio:{tmp_path / 'noise'}", crop_length=CROP, batch_size=4, deterministic=True)
    assert (bundle.channels, bundle.image_size, bundle.sample_rate, bundle.crop_length) == (1, None, 16000, CROP)
    assert (bundle.num_train, bundle.num_validation) == (5, 1)
    train_names = set(clips) - set(bundle.validation_names)
    everything = np.concatenate([clips[n] for n in sorted(clips)])
    assert bundle.data_variance == pytest.approx(
        np.var(np.concatenate([clips[n] for n in sorted(train_names)])), rel=1e-6
    )
    assert 0.2 < bundle.data_variance < np.var(everything) * 1.2
    offsets = set()
    for batch in bundle.train.take(5):
        batch = batch.numpy()
        assert batch.shape == (4, CROP, 1) and batch.dtype == np.float32
        for crop in batch[..., 0]:
            found = [
                (name, o)
                for name in train_names
                for o in np.flatnonzero(clips[name][: len(clips[name]) - CROP + 1] == crop[0])
                if np.array_equal(clips[name][o : o + CROP], crop)
            ]
            assert len(found) == 1
            offsets.add(found[0])
    assert len(offsets) > 10  # random offsets, not always the start


def test_same_seed_same_stream_other_seed_other_stream(tmp_path):
    noise_folder(tmp_path)
    batches = lambda seed: [
        b.numpy()
        for b in make_datasets(
            f"audio:{tmp_path}", crop_length=1024, batch_size=3, seed=seed, deterministic=True
        ).train.take(4)
    ]
    first, again, other = batches(0), batches(0), batches(1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_validation_is_whole_clips_from_the_list_and_the_split_is_stable(tmp_path):
    clips = noise_folder(tmp_path / "noise")
    listing = tmp_path / "held_out.txt"
    listing.write_text("# two clips\nclip1.wav\n\nclip4   # the stem works too\n")
    bundle = make_datasets(
        f"audio:{tmp_path / 'noise'}", crop_length=CROP, batch_size=2, validation_list=listing, seed=3
    )
    assert bundle.validation_names == ("clip1.wav", "clip4.wav") and bundle.num_train == 4
    for name, clip in zip(bundle.validation_names, bundle.validation):
        assert clip.shape == (1, len(clips[name]), 1)
        np.testing.assert_array_equal(clip.numpy()[0, :, 0], clips[name])
    # Without a list: a fraction by a hash of the names, the same for any seed.
    split = lambda **kw: make_datasets(f"audio:{tmp_path / 'noise'}", crop_length=CROP, batch_size=2, **kw)
    default = split(seed=0)
    assert default.validation_names == split(seed=5).validation_names and len(default.validation_names) == 1
    assert len(split(validation_fraction=0.5).validation_names) == 3
    listing.write_text("clip1.wav\nnothere.wav\n")
    with pytest.raises(DatasetError, match=r"names 1 clip\(s\) not found in .*: nothere.wav"):
        split(validation_list=listing)
    listing.write_text("\n".join(clips))
    with pytest.raises(DatasetError, match="none left for training"):
        split(validation_list=listing)


def test_labels_from_file_names(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for name in ("3_jackson_0", "3_theo_1", "7_jackson_2", "10_theo_0", "7_theo_4", "0_jackson_9", "other"):
        write_wav(tmp_path / f"{name}.wav", rng.uniform(-0.5, 0.5, 5000), 8000)
    digits = r"(?P<label>\d+)_"
    with caplog.at_level(logging.WARNING, logger="vqvae_tf.data.audio"):
        bundle = make_datasets(
            f"audio:{tmp_path}", crop_length=CROP, batch_size=8, label_pattern=digits, with_labels=True
        )
    assert "skipped 1 WAV file(s) not matching label_pattern" in caplog.text and "other.wav" in caplog.text
    assert bundle.class_names == ("0", "3", "7", "10") and bundle.num_classes == 4  # numeric order
    audio, labels = next(iter(bundle.train.take(1)))
    assert audio.shape == (8, CROP, 1) and labels.dtype.name == "int32"
    assert set(labels.numpy()) <= {0, 1, 2, 3}
    ((clip, label),) = list(bundle.validation)
    assert bundle.class_names[int(label.numpy()[0])] == bundle.validation_names[0].split("_")[0]
    assert clip.shape == (1, 10000, 1)
    # Two groups and no `label` group: one class per digit and speaker.
    both = make_datasets(f"audio:{tmp_path}", crop_length=CROP, batch_size=2, label_pattern=r"(\d+)_([a-z]+)_")
    assert both.class_names == ("0_jackson", "10_theo", "3_jackson", "3_theo", "7_jackson", "7_theo")
    assert not isinstance(next(iter(both.train)), tuple)  # labels only with with_labels=True
    with pytest.raises(DatasetError, match="with_labels=True needs a label_pattern"):
        make_datasets(f"audio:{tmp_path}", crop_length=CROP, batch_size=2, with_labels=True)
    with pytest.raises(DatasetError, match="not a valid regular expression"):
        make_datasets(f"audio:{tmp_path}", crop_length=CROP, batch_size=2, label_pattern="(")


@pytest.mark.parametrize(
    "spec, kwargs, words",
    [
        ("audio:{d}", {"crop_length": CROP, "sample_rate": 4000}, "`sample_rate` must be an int >= 8000 and <= 48000"),
        ("audio:{d}", {"crop_length": CROP, "sample_rate": 96000}, "received 96000"),
        ("audio:{d}", {}, "needs crop_length"),
        ("audio:{d}", {"crop_length": CROP, "image_size": 32}, "image_size .* applies to image datasets"),
        ("audio:{d}", {"crop_length": CROP, "channels": 3}, "mono"),
        ("audio:{d}", {"crop_length": CROP, "flip": True}, "flip applies to image datasets"),
        ("audio:{d}", {"crop_length": CROP, "augment": True}, "augment=True applies to photo sources"),
        ("audio:{d}/missing", {"crop_length": CROP}, "does not exist"),
        ("audio:{d}/empty", {"crop_length": CROP}, r"no WAV files \(.wav\) found"),
        ("digits", {"crop_length": CROP, "image_size": 8}, "crop_length apply to audio datasets"),
        ("digits", {}, "needs image_size"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, spec, kwargs, words):
    (tmp_path / "empty").mkdir()
    write_wav(tmp_path / "one.wav", tone(440, 16000, 0.5), 16000)
    with pytest.raises(DatasetError, match=words):
        make_datasets(spec.format(d=tmp_path), batch_size=2, **kwargs)


@pytest.mark.skipif(not (SPEECH / "fsdd").is_dir(), reason="shared speech data not present")
def test_two_fsdd_clips(tmp_path):
    for name in ("3_jackson_12.wav", "7_george_3.wav"):
        shutil.copy(SPEECH / "fsdd" / name, tmp_path)
    raw, rate = read_wav(tmp_path / "3_jackson_12.wav")
    assert rate == 8000
    bundle = make_datasets(
        f"audio:{tmp_path}", crop_length=2048, batch_size=2, label_pattern=r"(?P<label>\d)_", with_labels=True
    )
    assert bundle.class_names == ("3", "7") and bundle.num_train == 1
    ((clip, label),) = list(bundle.validation)
    name = bundle.validation_names[0]
    assert (
        clip.shape[1] == 2 * len(read_wav(tmp_path / name)[0]) and bundle.class_names[int(label.numpy()[0])] == name[0]
    )
    audio, labels = next(iter(bundle.train))
    assert audio.shape == (2, 2048, 1) and -1 <= audio.numpy().min() and audio.numpy().max() <= 1


def test_ljspeech_validation_list_follows_its_rule():
    listed = [line for line in LJSPEECH16K_VALIDATION.read_text().splitlines() if not line.startswith("#")]
    assert len(listed) == 21 and listed == sorted(listed)
    if (SPEECH / "ljspeech16k").is_dir():
        names = sorted(p.name for p in (SPEECH / "ljspeech16k").glob("*.wav"))
        assert len(names) == 106 and listed == names[4::5]

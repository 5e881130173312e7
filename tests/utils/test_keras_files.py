"""Every loader of the project names what is wrong with a bad `.keras` file."""

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vqvae_tf.utils.keras_files import ModelFileError, check_keras_file, load_keras_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras"
GOOD = FIXTURES / "vqvae_ema.keras"
PRIOR = FIXTURES / "pixelcnn.keras"


def _truncated(tmp_path, source=GOOD):
    data = source.read_bytes()
    path = tmp_path / f"truncated_{source.name}"
    path.write_bytes(data[: len(data) // 2])
    return path


def _crc_damaged(tmp_path):
    # Flip a byte inside config.json's stored data: the archive still opens, the CRC no longer matches.
    path = tmp_path / "damaged.keras"
    shutil.copy(GOOD, path)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("config.json")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _not_a_model(tmp_path):
    path = tmp_path / "notes.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (_truncated, "truncated or not a zip file"),
        (lambda tmp: (tmp / "junk.keras").write_bytes(b"not a zip " * 50) and tmp / "junk.keras", "not a zip"),
        (_not_a_model, "not a .keras model: it has no config.json, metadata.json"),
        (_crc_damaged, "member config.json fails its CRC check"),
        (lambda tmp: tmp, "is a directory"),
    ],
    ids=["truncated", "junk", "not-a-model", "crc", "directory"],
)
def test_bad_files_get_a_message_naming_the_problem(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ModelFileError, match=message):
        check_keras_file(path)
    with pytest.raises(ModelFileError, match=message):
        load_keras_file(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_keras_file(tmp_path / "nothing.keras")


def test_good_file_loads_and_matches_its_saved_outputs():
    model = load_keras_file(GOOD, what="VQ-VAE")
    expected = np.load(GOOD.with_suffix(".npz"))
    np.testing.assert_array_equal(np.asarray(model.codes(expected["x"])), expected["codes"])


def test_the_exporter_reports_a_truncated_model(tmp_path):
    from vqvae_tf.export import ExportError, export_model

    with pytest.raises(ExportError, match="truncated or not a zip file"):
        export_model(_truncated(tmp_path), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prior_loaders_report_a_truncated_prior(tmp_path):
    from vqvae_tf.priors.loading import load_prior

    with pytest.raises(ModelFileError, match="truncated"):
        load_prior(_truncated(tmp_path, PRIOR))


def test_the_codec_reports_a_truncated_prior(tmp_path):
    from vqvae_tf import codec

    model = codec.load_model("d8k512")
    with pytest.raises(codec.CodecError, match="truncated"):
        model.prior(_truncated(tmp_path, PRIOR))

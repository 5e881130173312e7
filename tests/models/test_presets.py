"""Presets: save_to_preset / from_preset round trips, shipped presets, fine-tuning, bad names and files."""

import json

import keras
import numpy as np
import pytest

from vqvae_tf import VQVAE, list_presets
from vqvae_tf.models import presets
from vqvae_tf.utils.fingerprint import model_id
from vqvae_tf.utils.keras_files import ModelFileError


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    model = VQVAE(input_channels=3, downsample=2, hidden_units=8, residual_units=4, num_codes=16, code_dim=4)
    images = np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(images, batch_size=4, epochs=1, verbose=0)  # an optimizer with state, which a preset leaves out
    return model, images


def test_save_and_load_a_preset_directory(tiny, tmp_path):
    model, images = tiny
    directory = model.save_to_preset(tmp_path / "mine", description="a tiny test model", training_data="noise")
    meta = json.loads((directory / "preset.json").read_text())
    assert meta["class_name"] == "VQVAE" and meta["description"] == "a tiny test model"
    assert meta["training_data"] == "noise" and meta["model_keras_bytes"] == (directory / "model.keras").stat().st_size
    loaded = VQVAE.from_preset(directory)
    assert meta["model_id"] == model_id(loaded) == model_id(model)
    np.testing.assert_array_equal(np.asarray(loaded.codes(images)), np.asarray(model.codes(images)))
    np.testing.assert_allclose(np.asarray(loaded(images)), np.asarray(model(images)), atol=1e-6)
    assert getattr(loaded, "optimizer", None) is None  # weights only: no optimizer state shipped
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save_to_preset(directory)
    model.save_to_preset(directory, overwrite=True)


def test_a_loaded_preset_fine_tunes_with_fit(tiny, tmp_path):
    model, images = tiny
    loaded = VQVAE.from_preset(model.save_to_preset(tmp_path / "p"))
    before = [w.copy() for w in loaded.get_weights()]
    loaded.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = loaded.fit(images, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert any(not np.array_equal(a, b) for a, b in zip(before, loaded.get_weights()))


def test_rounding_to_significant_bits_is_to_nearest_with_ties_to_even():
    one = np.float32(1.0)
    ulp = np.float32(2**-10)  # the last kept bit at 11 significant bits
    values = np.float32([1 + 2**-12, 1 + 2**-11, 1 + 3 * 2**-11, -(1 + 3 * 2**-12), 3.0, np.inf, -np.inf, 1e-40])
    rounded = presets.round_significant_bits(values, 11)
    # below half an ulp: down; an exact half: to the even neighbour (1.0 down, 1 + ulp up to 1 + 2 ulp)
    assert rounded[:5].tolist() == [one, one, one + 2 * ulp, -(one + ulp), 3.0]
    assert np.isposinf(rounded[5]) and np.isneginf(rounded[6])
    assert abs(float(rounded[7]) - float(values[7])) <= 2**-137  # a subnormal: half its 13 dropped bits' ulp
    assert np.isnan(presets.round_significant_bits(np.float32([np.nan]), 11)[0])
    big = np.random.default_rng(0).standard_normal(10_000).astype(np.float32) * 1e30
    relative = np.abs(presets.round_significant_bits(big, 11) / big - 1)
    assert 0 < relative.max() <= 2**-11
    assert presets.round_significant_bits(np.int64([3, 5]), 11).tolist() == [3, 5]  # not float32: unchanged


def test_a_compact_preset_holds_the_rounded_weights_in_fewer_bytes(tiny, tmp_path):
    model, images = tiny
    exact = model.save_to_preset(tmp_path / "exact")
    compact = model.save_to_preset(tmp_path / "compact", significant_bits=11, description="compact")
    meta = json.loads((compact / "preset.json").read_text())
    assert meta["significant_bits"] == 11 and meta["model_keras_bytes"] == (compact / "model.keras").stat().st_size
    assert meta["model_keras_bytes"] < (exact / "model.keras").stat().st_size
    loaded = VQVAE.from_preset(compact)
    assert meta["model_id"] == model_id(loaded) != model_id(model)  # the id is the rounded weights'
    for ours, theirs in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(ours, presets.round_significant_bits(theirs, 11))
    np.testing.assert_allclose(np.asarray(loaded(images)), np.asarray(model(images)), atol=2e-2)
    with pytest.raises(ValueError, match="significant_bits"):
        model.save_to_preset(tmp_path / "bad", significant_bits=4)


def test_unknown_preset_lists_the_shipped_names(tmp_path):
    with pytest.raises(ValueError, match=r"unknown preset 'no-such-model': not a shipped preset \(") as error:
        VQVAE.from_preset("no-such-model")
    for name in list_presets():
        assert name in str(error.value)
    with pytest.raises(ValueError, match="not a directory holding model.keras"):
        VQVAE.from_preset(tmp_path)


def test_a_preset_of_another_class_is_refused(tiny, tmp_path):
    model, _ = tiny
    directory = model.save_to_preset(tmp_path / "p")
    meta = json.loads((directory / "preset.json").read_text())
    (directory / "preset.json").write_text(json.dumps({**meta, "class_name": "GaussianVAE"}))
    with pytest.raises(ValueError, match="holds a GaussianVAE, not a VQVAE"):
        VQVAE.from_preset(directory)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[1, 2]", "holds a list, not an object"),
        ('{"class_name": "VQVAE"}', "lacks model_id, description"),
        ('{"class_name": ', "cannot read"),
    ],
)
def test_a_preset_json_that_is_no_description_is_refused_with_its_path(tmp_path, text, message):
    (tmp_path / "preset.json").write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        presets.read_preset_metadata(tmp_path)
    assert str(tmp_path / "preset.json") in str(caught.value)


def test_a_truncated_preset_file_is_named(tiny, tmp_path):
    model, _ = tiny
    directory = model.save_to_preset(tmp_path / "p")
    data = (directory / "model.keras").read_bytes()
    (directory / "model.keras").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelFileError, match="truncated or not a zip file"):
        VQVAE.from_preset(directory)


def test_an_unbuilt_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no weights yet"):
        presets.save_preset(VQVAE(hidden_units=8, residual_units=4, num_codes=8, code_dim=4), tmp_path / "p")


@pytest.mark.slow
def test_the_shipped_preset_is_its_codec_model_and_fine_tunes():
    from skimage.data import chelsea

    from vqvae_tf import codec

    assert "d8k512x4" in list_presets()
    meta = list_presets()["d8k512x4"]
    model = VQVAE.from_preset("d8k512x4")  # safe mode, no custom_objects
    shipped = codec.load_model("d8k512x4")
    assert meta["model_id"] == model_id(model) == shipped.model_id
    assert [rate["quality"] for rate in meta["rates"]] == [1, 2, 3, 4]
    photo = chelsea()[:96, :128]
    # The same weights: the Keras decoder turns the codec's codes into the codec's pixels
    # (its float16 decoder, so within 2/255 after rounding).
    lite_codes = shipped.encoder.encode(photo)
    assert lite_codes.shape == (12, 16, 4)
    keras_pixels = np.asarray(model.decode_codes(lite_codes[None]))[0]
    lite_pixels = shipped.decoder.decode(lite_codes)
    assert np.abs(np.rint(keras_pixels * 255) - np.rint(lite_pixels * 255)).max() <= 2
    # The int8 encoder agrees with the float Keras encoder on most first-stage codes (0.83 on the
    # whole photo, measured); later stages quantize residuals, where near ties flip more often.
    keras_codes = np.asarray(model.codes(photo[None].astype(np.float32) / 255))[0]
    assert (keras_codes[..., 0] == lite_codes[..., 0]).mean() >= 0.75
    crops = np.stack([photo[:32, :32], photo[32:64, 32:64]]).astype(np.float32) / 255
    before = [w.copy() for w in model.get_weights()]
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    history = model.fit(crops, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))

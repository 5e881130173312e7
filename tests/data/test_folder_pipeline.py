"""Tests for the folder pipeline: decoded once into memory, a separate validation folder, seeds."""

import logging

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vqvae_tf.data import DatasetError, folder_cache, make_datasets
from vqvae_tf.training.config import ConfigError, TrainConfig


def write_flat_images(folder, values, size=(20, 24)):
    """One PNG per value, every pixel that value: a crop shows which file it came from."""
    folder.mkdir(parents=True, exist_ok=True)
    for value in values:
        Image.fromarray(np.full((*size, 3), value, np.uint8)).save(folder / f"v{value:03d}.png")
    return folder


def batches(dataset, count):
    return [b.numpy() for b in dataset.take(count)]


def values_of(images):
    """The value of each crop of constant images (float batches in [0, 1])."""
    pixels = np.round(np.asarray(images) * 255).astype(int)
    assert (pixels == pixels[:, :1, :1, :1]).all()
    return pixels[:, 0, 0, 0]


TRAIN_VALUES = tuple(range(10, 130, 20))  # 6 files
VALID_VALUES = (200, 215, 230, 245)


def test_validation_dataset_is_a_separate_folder(tmp_path):
    train = write_flat_images(tmp_path / "train", TRAIN_VALUES)
    valid = write_flat_images(tmp_path / "valid", VALID_VALUES, size=(30, 18))
    bundle = make_datasets(f"folder:{train}", image_size=16, batch_size=4, validation_spec=f"folder:{valid}")
    # Every training file trains (no split); validation is the other folder, whole, in order.
    assert (bundle.num_train, bundle.num_validation) == (len(TRAIN_VALUES), len(VALID_VALUES))
    seen = np.concatenate([values_of(b) for b in batches(bundle.train, 6)])
    assert set(seen) == set(TRAIN_VALUES)
    validation = np.concatenate(batches(bundle.validation, -1))
    assert validation.shape == (4, 16, 16, 3)
    assert tuple(values_of(validation)) == VALID_VALUES
    assert f"validation: centre crops of 4 images of folder:{valid}" in bundle.description
    # Without it, the folder's own split holds some of its files out.
    split = make_datasets(f"folder:{train}", image_size=16, batch_size=4, validation_fraction=0.34)
    held_out = set(values_of(np.concatenate(batches(split.validation, -1))))
    assert held_out and held_out <= set(TRAIN_VALUES)
    assert not held_out & set(np.concatenate([values_of(b) for b in batches(split.train, 4)]))
    # Other image sources keep their training data and validate on the folder.
    photos = make_datasets("photos", image_size=16, batch_size=4, validation_spec=f"folder:{valid}")
    assert photos.num_validation == 4


def test_validation_dataset_errors(tmp_path):
    train = write_flat_images(tmp_path / "train", TRAIN_VALUES[:2])
    with pytest.raises(DatasetError, match="validation_spec must be folder:DIR; received 'photos'"):
        make_datasets(f"folder:{train}", image_size=16, batch_size=2, validation_spec="photos")
    with pytest.raises(DatasetError, match="does not exist"):
        make_datasets(f"folder:{train}", image_size=16, batch_size=2, validation_spec=f"folder:{tmp_path / 'no'}")
    small = write_flat_images(tmp_path / "small", (5,), size=(8, 8))
    with pytest.raises(DatasetError, match="smaller than image_size 16"):
        make_datasets(f"folder:{train}", image_size=16, batch_size=2, validation_spec=f"folder:{small}")
    with pytest.raises(DatasetError, match="validation_spec applies to image datasets"):
        make_datasets(f"audio:{tmp_path}", crop_length=64, batch_size=2, validation_spec=f"folder:{train}")
    # The training config: a new field, absent from older config files.
    assert TrainConfig.from_dict({"dataset": "photos"}).validation_dataset is None
    assert TrainConfig(validation_dataset=f"folder:{train}").validation_dataset == f"folder:{train}"
    with pytest.raises(ConfigError, match="validation_dataset must be folder:DIR"):
        TrainConfig(validation_dataset="digits")


def test_cached_folder_decodes_each_file_once(tmp_path, monkeypatch):
    train = write_flat_images(tmp_path / "train", TRAIN_VALUES)
    valid = write_flat_images(tmp_path / "valid", VALID_VALUES)
    decoded = []
    real = folder_cache._decode_file

    def counting(path, channels):
        decoded.append(path)
        return real(path, channels)

    monkeypatch.setattr(folder_cache, "_decode_file", counting)
    bundle = make_datasets(f"folder:{train}", image_size=16, batch_size=4, validation_spec=f"folder:{valid}")
    for _ in range(2):  # several passes over the training files, two iterators, validation twice
        batches(bundle.train, 5)
        batches(bundle.validation, -1)
    assert sorted(decoded) == sorted(str(p) for p in [*train.iterdir(), *valid.iterdir()])
    assert "decoded once" in bundle.description
    # Each image is held once in the cache.
    pool = folder_cache.decoded_pool(
        [folder_cache_file(p) for p in sorted(train.iterdir())], channels=3, what=str(train)
    )
    assert pool.flat.size == len(TRAIN_VALUES) * 20 * 24 * 3 and len(set(pool.paths)) == len(TRAIN_VALUES)
    # cache=False decodes in the pipeline instead, at every visit.
    streamed = make_datasets(f"folder:{train}", image_size=16, batch_size=4, cache=False)
    assert "decoded at every visit" in streamed.description
    assert set(np.concatenate([values_of(b) for b in batches(streamed.train, 3)])) <= set(TRAIN_VALUES)


def folder_cache_file(path):
    from vqvae_tf.data.folders import ImageFile

    return ImageFile(str(path), -1, 20, 24, 3)


def test_corrupt_files_skipped_with_a_count(tmp_path, monkeypatch, caplog):
    train = write_flat_images(tmp_path / "train", TRAIN_VALUES)
    (train / "broken.png").write_bytes(b"\x89PNG not really")  # fails Pillow's verify
    real = folder_cache._decode_file

    def failing(path, channels):  # passes verify, fails to decode
        if path.endswith("v030.png"):
            raise tf.errors.InvalidArgumentError(None, None, "corrupt data")
        return real(path, channels)

    monkeypatch.setattr(folder_cache, "_decode_file", failing)
    with caplog.at_level(logging.WARNING):
        bundle = make_datasets(f"folder:{train}", image_size=16, batch_size=4, validation_fraction=0.2)
    assert "skipped 1 unreadable image file" in caplog.text and "broken.png" in caplog.text
    assert "skipped 1 image file(s) that failed to decode" in caplog.text and "v030.png" in caplog.text
    assert bundle.num_train + bundle.num_validation == len(TRAIN_VALUES) - 1
    seen = np.concatenate([values_of(b) for b in batches(bundle.train, 4)])
    assert 30 not in seen


def test_cached_folder_deterministic_for_a_seed_and_visits_each_file_per_pass(tmp_path):
    train = write_flat_images(tmp_path / "train", TRAIN_VALUES)
    # deterministic=True: otherwise tf.data may swap nearby batches (each batch's content is still fixed).
    kwargs = dict(image_size=8, batch_size=4, validation_fraction=0.2, augment=True, deterministic=True)

    def stream(seed):
        return np.stack(batches(make_datasets(f"folder:{train}", seed=seed, **kwargs).train, 6))

    a, b, c = stream(3), stream(3), stream(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Without augmentation (colour jitter), each pass visits every training file once.
    plain = make_datasets(
        f"folder:{train}", seed=3, image_size=8, batch_size=4, validation_fraction=0.2, deterministic=True
    )
    visits = np.concatenate([values_of(x) for x in batches(plain.train, 5)])  # 20 crops, 5 files
    assert plain.num_train == 5
    for start in range(0, 20, 5):
        assert len(set(visits[start : start + 5])) == 5

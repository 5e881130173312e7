"""Tests for vqvae_tf.data: every dataset source, the split rules and errors."""

import gzip
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vqvae_tf.data as data
from vqvae_tf.data import DatasetError, make_datasets

MNIST_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


def take(dataset, batches):
    return [b.numpy() if not isinstance(b, tuple) else tuple(t.numpy() for t in b) for b in dataset.take(batches)]


def all_batches(dataset):
    return take(dataset, -1)


def check_images(images, batch, size, channels):
    assert images.shape == (batch, size, size, channels)
    assert images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0


def write_idx(path, array, gz):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)


# ----------------------------------------------------------------------------
# photos


def test_photos_batches_and_validation_split():
    bundle = make_datasets("photos", image_size=32, batch_size=16)
    (train,) = take(bundle.train, 1)
    check_images(train, 16, 32, 3)
    assert bundle.channels == 3 and bundle.num_train == len(data.photo_names("train"))
    assert not set(data.PHOTOS_VALIDATION) & set(data.photo_names("train"))
    assert set(data.photo_names("all")) == (set(data.photo_names("train")) | set(data.PHOTOS_VALIDATION))
    # Validation is exactly the non-overlapping 32x32 tiles of the held-out photos.
    validation = np.concatenate(all_batches(bundle.validation))
    photos = [data.load_photo(n) for n in data.PHOTOS_VALIDATION]
    assert len(validation) == bundle.num_validation == sum((p.shape[0] // 32) * (p.shape[1] // 32) for p in photos)
    first = photos[0]
    top, left = (first.shape[0] % 32) // 2, (first.shape[1] % 32) // 2
    np.testing.assert_array_equal(
        np.round(validation[0] * 255).astype(np.uint8), first[top : top + 32, left : left + 32]
    )
    assert 0.01 < bundle.data_variance < 0.25


def test_photos_deterministic_for_a_seed():
    kwargs = dict(image_size=24, batch_size=8, deterministic=True)
    a = make_datasets("photos", seed=3, **kwargs)
    b = make_datasets("photos", seed=3, **kwargs)
    c = make_datasets("photos", seed=4, **kwargs)
    np.testing.assert_array_equal(np.stack(take(a.train, 3)), np.stack(take(b.train, 3)))
    assert not np.array_equal(take(a.train, 1)[0], take(c.train, 1)[0])
    np.testing.assert_array_equal(np.concatenate(all_batches(a.validation)), np.concatenate(all_batches(c.validation)))
    # Validation does not depend on iteration either.
    np.testing.assert_array_equal(take(a.validation, 1)[0], take(a.validation, 1)[0])


def _dihedral(image):
    """The 8 rotations and reflections of a square (H, W, C) image."""
    turns = [np.rot90(image, k) for k in range(4)]
    return turns + [t[:, ::-1] for t in turns]


def test_photos_augmentation_rotates_reflects_and_recolours():
    kwargs = dict(image_size=24, batch_size=32, seed=5, deterministic=True)
    plain = take(make_datasets("photos", augment=False, **kwargs).train, 2)
    augmented = take(make_datasets("photos", **kwargs).train, 2)  # on by default for photos
    again = take(make_datasets("photos", augment=True, **kwargs).train, 2)
    for x, y in zip(augmented, again):
        np.testing.assert_array_equal(x, y)  # fixed by the seed
    moved = recoloured = 0
    for p, a in zip(plain, augmented):
        check_images(a, 32, 24, 3)
        for crop, aug in zip(p, a):
            # Hue and saturation keep HSV's value, the largest channel: the
            # augmented crop's value map is a rotation or reflection of the
            # plain crop's (same crop position), up to one rounding step.
            value, target = crop.max(-1), aug.max(-1)
            errors = [np.abs(t[..., 0] - target).max() for t in _dihedral(value[..., None])]
            assert min(errors) <= 1.5 / 255, min(errors)
            moved += int(np.argmin(errors) != 0)
            recoloured += int(np.abs(aug - _dihedral(crop)[int(np.argmin(errors))]).max() > 2 / 255)
    assert moved > 32 and recoloured > 16, (moved, recoloured)  # most crops change


def test_gray_augmentation_is_only_geometric(tmp_path):
    kwargs = dict(image_size=16, batch_size=8, seed=1, deterministic=True, channels=1)
    plain = take(make_datasets("photos", augment=False, **kwargs).train, 1)[0]
    augmented = take(make_datasets("photos", augment=True, **kwargs).train, 1)[0]
    for crop, aug in zip(plain, augmented):
        assert any(np.array_equal(t, aug) for t in _dihedral(crop))
    # Streamed sources augment too: with copies of one image as large as the
    # crop, every training crop is that image, turned or reflected (HSV's
    # value map moves with it) and recoloured. Array sources refuse.
    image = np.random.default_rng(4).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for i in range(3):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    augmented = np.concatenate(
        take(
            make_datasets(
                f"folder:{tmp_path}", image_size=16, batch_size=2, augment=True, validation_fraction=0.34
            ).train,
            8,
        )
    )
    check_images(augmented, 16, 16, 3)
    original = image.astype(np.float32) / 255
    changed = 0
    for aug in augmented:
        errors = [np.abs(t[..., 0] - aug.max(-1)).max() for t in _dihedral(original.max(-1)[..., None])]
        assert min(errors) <= 1.5 / 255, min(errors)
        changed += int(min(np.abs(aug - t).max() for t in _dihedral(original)) > 2 / 255)
    assert changed > 8, changed
    with pytest.raises(DatasetError, match="augment=True applies to photo sources.*'digits'"):
        make_datasets("digits", image_size=8, batch_size=2, augment=True)


def test_load_photo_and_gray_channels():
    photo = data.load_photo("camera")  # a grayscale photo, served as RGB
    assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    assert not photo.flags.writeable
    bundle = make_datasets("photos", image_size=16, batch_size=4, channels=1)
    check_images(take(bundle.train, 1)[0], 4, 16, 1)
    with pytest.raises(DatasetError, match="unknown photo 'nope'"):
        data.load_photo("nope")


# ----------------------------------------------------------------------------
# mnist / IDX


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="shared MNIST data not present")
def test_mnist_shared_split_8000_2000_with_labels():
    bundle = make_datasets(f"mnist:{MNIST_DIR}", image_size=32, batch_size=100, with_labels=True)
    assert (bundle.num_train, bundle.num_validation, bundle.num_classes) == (8000, 2000, 10)
    images, labels = take(bundle.train, 1)[0]
    check_images(images, 100, 32, 1)
    assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() <= 9
    # 28 -> 32 is padding: a 2-pixel black border.
    assert images[:, :2].max() == 0 and images[:, :, -2:].max() == 0
    val = all_batches(bundle.validation)
    val_labels = np.concatenate([labels for _, labels in val])
    assert len(val_labels) == 2000 and set(val_labels) == set(range(10))


def test_idx_gz_and_raw_train_and_t10k(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(30) % 10, gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(12) % 10, gz=False)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "t10k-images-idx3-ubyte"), test)
    bundle = make_datasets(f"mnist:{tmp_path}", image_size=28, batch_size=5, with_labels=True)
    assert (bundle.num_train, bundle.num_validation) == (30, 12)
    val_images = np.concatenate([x for x, _ in all_batches(bundle.validation)])
    np.testing.assert_array_equal(np.round(val_images[..., 0] * 255), test)


def test_idx_corrupt_files(tmp_path):
    images = np.zeros((4, 28, 28), np.uint8)
    truncated = tmp_path / "trunc" / "t10k-images-idx3-ubyte"
    truncated.parent.mkdir()
    write_idx(truncated, images, gz=False)
    truncated.write_bytes(truncated.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=r"declares shape \(4, 28, 28\).*truncated"):
        make_datasets(f"mnist:{truncated.parent}", image_size=32, batch_size=2)
    bad_magic = tmp_path / "x-images-idx3-ubyte"
    bad_magic.write_bytes(b"\x12\x34\x08\x03" + bytes(100))
    with pytest.raises(DatasetError, match="not an IDX file"):
        data.read_idx(bad_magic)
    not_gzip = tmp_path / "y-images-idx3-ubyte.gz"
    not_gzip.write_bytes(b"plain bytes")
    with pytest.raises(DatasetError, match="cannot read IDX file"):
        data.read_idx(not_gzip)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no IDX image files"):
        make_datasets(f"mnist:{tmp_path / 'empty'}", image_size=32, batch_size=2)
    with pytest.raises(DatasetError, match="does not exist"):
        make_datasets(f"mnist:{tmp_path / 'missing'}", image_size=32, batch_size=2)


# ----------------------------------------------------------------------------
# digits and arrays


def test_digits_upscaled_with_labels():
    bundle = make_datasets("digits", image_size=32, batch_size=32, with_labels=True)
    images, labels = take(bundle.train, 1)[0]
    check_images(images, 32, 32, 1)
    assert set(labels) <= set(range(10)) and bundle.num_classes == 10
    # 8x8 -> 32x32 by 4x nearest-neighbour upscaling: constant 4x4 blocks.
    np.testing.assert_array_equal(images[:, ::4, ::4].repeat(4, 1).repeat(4, 2), images)
    assert bundle.num_train + bundle.num_validation == 1797


def test_npy_crops_are_windows_of_the_source(tmp_path):
    # Pixel value = 12 * row + column, so a crop shows where it came from.
    ramp = (np.arange(12)[:, None] * 12 + np.arange(12)[None, :]).astype(np.uint8)
    np.save(tmp_path / "ramp.npy", np.repeat(ramp[None, ..., None], 20, 0).repeat(3, -1))
    for flip in (False, True):
        bundle = make_datasets(f"npy:{tmp_path / 'ramp.npy'}", image_size=8, batch_size=10, flip=flip)
        (batch,) = take(bundle.train, 1)
        check_images(batch, 10, 8, 3)
        crops = np.round(batch * 255).astype(int)
        np.testing.assert_array_equal(crops[..., 0], crops[..., 2])
        rows = crops[:, :, :1, 0] - crops[:, :1, :1, 0]
        assert (rows == 12 * np.arange(8)[None, :, None]).all()
        steps = np.diff(crops[:, 0, :, 0], axis=1)
        assert ((steps == 1) | (steps == -1)).all()
        assert (steps[:, 0] == -1).any() == flip
    # Validation: the centre 8x8 window.
    val = np.round(take(bundle.validation, 1)[0] * 255).astype(int)
    np.testing.assert_array_equal(val[0, ..., 0], ramp[2:10, 2:10])


def test_npz_keys_labels_and_floats(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((50, 16, 16, 3), dtype=np.float32)
    np.savez(tmp_path / "a.npz", images=x, labels=np.arange(50) % 5)
    bundle = make_datasets(f"npz:{tmp_path / 'a.npz'}", image_size=16, batch_size=8, with_labels=True)
    images, labels = take(bundle.train, 1)[0]
    check_images(images, 8, 16, 3)
    assert bundle.num_classes == 5 and (bundle.num_train, bundle.num_validation) == (40, 10)
    assert bundle.data_variance == pytest.approx(float(np.var(x)), rel=0.05)
    np.savez(tmp_path / "b.npz", x_train=(x * 255).astype(np.uint8)[:30], x_test=(x * 255).astype(np.uint8)[30:])
    bundle = make_datasets(f"npz:{tmp_path / 'b.npz'}", image_size=16, batch_size=4)
    assert (bundle.num_train, bundle.num_validation) == (30, 20)
    check_images(take(bundle.train, 1)[0], 4, 16, 3)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 8, 8, 2), np.uint8), r"C in \{1, 3\}, got shape \(4, 8, 8, 2\)"),
        (np.zeros((8, 8), np.uint8), r"got shape \(8, 8\)"),
        (np.zeros((4, 8, 8), np.int64), "expected dtype uint8.*got int64"),
        (np.full((4, 8, 8), 2.0), r"must lie in \[0, 1\].*\[2.0, 2.0\]"),
    ],
)
def test_bad_arrays(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DatasetError, match=message):
        make_datasets(f"npy:{tmp_path / 'bad.npy'}", image_size=8, batch_size=2)


def test_npz_without_image_key_and_missing_file(tmp_path):
    np.savez(tmp_path / "c.npz", pixels=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match=r"keys \['pixels'\].*'images' or 'x'"):
        make_datasets(f"npz:{tmp_path / 'c.npz'}", image_size=8, batch_size=2)
    with pytest.raises(DatasetError, match="does not exist"):
        make_datasets(f"npz:{tmp_path / 'none.npz'}", image_size=8, batch_size=2)
    np.save(tmp_path / "small.npy", np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match="npy.* has no labels"):
        make_datasets(f"npy:{tmp_path / 'small.npy'}", image_size=8, batch_size=2, with_labels=True)


# ----------------------------------------------------------------------------
# folders


def make_folder(root, rng, corrupt=True):
    shapes = {
        "cats": [(40, 50, "RGB", "png"), (36, 36, "L", "jpg"), (48, 40, "RGB", "bmp")],
        "dogs": [(40, 40, "RGB", "jpeg"), (64, 33, "RGB", "png"), (35, 45, "L", "png")],
    }
    for cls, items in shapes.items():
        for i, (h, w, mode, ext) in enumerate(items):
            shape = (h, w) if mode == "L" else (h, w, 3)
            folder = root / cls / ("nested" if i == 2 else "")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / f"{cls}{i}.{ext}")
    if corrupt:
        (root / "dogs" / "broken.png").write_bytes(b"\x89PNG not really")


def test_folder_with_classes_and_corrupt_file(tmp_path, caplog):
    make_folder(tmp_path, np.random.default_rng(0))
    with caplog.at_level(logging.WARNING):
        bundle = make_datasets(
            f"folder:{tmp_path}", image_size=32, batch_size=4, with_labels=True, validation_fraction=0.34
        )
    assert "skipped 1 unreadable image file" in caplog.text and "broken.png" in caplog.text
    assert bundle.class_names == ("cats", "dogs") and bundle.num_classes == 2
    assert (bundle.num_train, bundle.num_validation) == (4, 2)
    assert bundle.channels == 3
    for images, labels in take(bundle.train, 3):
        check_images(images, 4, 32, 3)
        assert set(labels) <= {0, 1}
    val = all_batches(bundle.validation)
    assert sum(len(labels) for _, labels in val) == 2
    np.testing.assert_array_equal(
        np.concatenate([x for x, _ in val]), np.concatenate([x for x, _ in all_batches(bundle.validation)])
    )
    assert 0.0 < bundle.data_variance < 0.25


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        make_datasets(f"folder:{tmp_path / 'nope'}", image_size=8, batch_size=2)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(DatasetError, match="no image files"):
        make_datasets(f"folder:{tmp_path / 'empty'}", image_size=8, batch_size=2)
    (tmp_path / "bad").mkdir()
    for i in range(2):
        (tmp_path / "bad" / f"{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="all 2 image files .* corrupt"):
        make_datasets(f"folder:{tmp_path / 'bad'}", image_size=8, batch_size=2)
    (tmp_path / "small").mkdir()
    for i, size in enumerate([(40, 40), (20, 30)]):
        Image.fromarray(np.zeros(size, np.uint8)).save(tmp_path / "small" / f"{i}.png")
    with pytest.raises(DatasetError, match=r"smaller than image_size 32.*1\.png is 30x20"):
        make_datasets(f"folder:{tmp_path / 'small'}", image_size=32, batch_size=2)
    with pytest.raises(DatasetError, match="no class subfolders"):
        make_datasets(f"folder:{tmp_path / 'small'}", image_size=16, batch_size=2, with_labels=True)


# ----------------------------------------------------------------------------
# TFRecords


def test_tfrecords_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8)
    labels = rng.integers(0, 7, 40)
    paths = data.write_tfrecords(images, tmp_path / "recs" / "data.tfrecord", shards=3, labels=labels)
    assert (
        sorted(p.name for p in (tmp_path / "recs").iterdir()) == sorted(Path(p).name for p in paths) and len(paths) == 3
    )
    bundle = make_datasets(
        f"tfrecord:{tmp_path / 'recs' / '*'}",
        image_size=12,
        batch_size=1,
        with_labels=True,
        flip=False,
        deterministic=True,
    )
    val = all_batches(bundle.validation)
    n_train = 40 - len(val)
    assert 0 < len(val) < 20
    seen = val + take(bundle.train, n_train)  # the first epoch of the shuffled train set
    got = sorted((np.round(x[0] * 255).astype(np.uint8).tobytes(), int(y[0])) for x, y in seen)
    want = sorted((image.tobytes(), int(label)) for image, label in zip(images, labels))
    assert got == want
    check_images(take(bundle.train, 1)[0][0], 1, 12, 3)


def test_tfrecords_from_folder_and_errors(tmp_path):
    make_folder(tmp_path / "imgs", np.random.default_rng(3), corrupt=False)
    (path,) = data.write_tfrecords(tmp_path / "imgs", tmp_path / "f.tfrecord")
    bundle = make_datasets(f"tfrecord:{path}", image_size=32, batch_size=2, channels=1)
    check_images(take(bundle.train, 1)[0], 2, 32, 1)
    with pytest.raises(DatasetError, match="no TFRecord files match"):
        make_datasets(f"tfrecord:{tmp_path / 'none*.tfrecord'}", image_size=8, batch_size=2)
    with pytest.raises(DatasetError, match="smaller than image_size 128"):
        make_datasets(f"tfrecord:{path}", image_size=128, batch_size=2)
    (tmp_path / "junk.tfrecord").write_bytes(b"not a tfrecord at all, sorry")
    with pytest.raises(DatasetError, match="cannot read TFRecord files"):
        make_datasets(f"tfrecord:{tmp_path / 'junk.tfrecord'}", image_size=8, batch_size=2)


# ----------------------------------------------------------------------------
# specs and arguments


def test_tfds_missing_package_message():
    with pytest.raises(DatasetError, match="tensorflow-datasets package, which is not installed"):
        make_datasets("tfds:mnist", image_size=32, batch_size=2)


@pytest.mark.parametrize(
    "spec, kwargs, message",
    [
        ("imagenet:/x", {}, "unknown dataset scheme 'imagenet'.*photos, mnist, digits"),
        ("folder", {}, r"needs an argument: folder:PATH"),
        ("photos:x", {}, "takes no argument"),
        ("photos", {"channels": 2}, "`channels` must be one of None, 1, 3; received 2"),
        ("photos", {"batch_size": 0}, "`batch_size` must be an int >= 1; received 0"),
        (
            "photos",
            {"validation_fraction": 1.5},
            "`validation_fraction` must be a finite number > 0.0 and < 1.0; received 1.5",
        ),
        ("photos", {"image_size": 4096}, "larger than every training photo"),
        ("photos", {"with_labels": True}, "photos has no labels"),
        (
            "digits",
            {"batch_size": 500, "validation_drop_remainder": True},
            "batch_size 500 is larger than the 359 validation examples",
        ),
    ],
)
def test_spec_and_argument_errors(spec, kwargs, message):
    arguments = {"image_size": 32, "batch_size": 8, **kwargs}
    with pytest.raises(DatasetError, match=message):
        make_datasets(spec, **arguments)

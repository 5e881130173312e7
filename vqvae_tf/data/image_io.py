"""Images from files and arrays as validated numpy arrays, before tf.data.

Everything here is plain numpy / Pillow so it can run (and fail clearly) up
front, before a tf.data pipeline is built: IDX parsing, the photos bundled in
scikit-image and scikit-learn, scanning an image folder, and the checks and
size/channel conversions applied to in-memory image arrays. `vqvae_tf.data.datasets`
turns the results into pipelines.

Image arrays are NHWC, either uint8 in 0..255 or float32 in [0, 1].
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.util
import logging
import os
import zlib
from pathlib import Path

import numpy as np

from vqvae_tf.codec.images import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset spec, file or array that cannot be used; the message says why."""


# ----------------------------------------------------------------------------
# IDX files (the MNIST format).

# IDX type code (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (gzip-compressed when the name ends in `.gz`).

    The magic number and the declared dimensions are checked against the
    file length, so a truncated or foreign file raises `DatasetError` instead
    of returning garbage.

    Args:
        path: the file.

    Returns:
        An array with the declared shape and the native-endian dtype.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DatasetError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(
            f"{path} is not an IDX file: magic bytes {data[:4].hex() or '(empty)'}, "
            f"expected 0000 followed by a type code in "
            f"{sorted(hex(k) for k in _IDX_DTYPES)} and the number of dimensions")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: IDX header declares {ndim} dimensions "
                           f"but the file has only {len(data)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DatasetError(
            f"{path}: IDX header declares shape {dims} ({expected} bytes) but the "
            f"file has {len(data)} bytes (truncated or corrupt)")
    array = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


# ----------------------------------------------------------------------------
# Photos bundled inside pip packages (no download).

# name -> (package, path inside the package). Only real photographs: the
# synthetic images (chessboards, colour wheel, phantom, logo, horse silhouette)
# are left out, and so is skimage's lfw_subset (25x25 faces, smaller than the
# usual 32-pixel crop). motorcycle_left/right are a stereo pair, so they must be
# on the same side of the train/validation split.
_PHOTO_FILES = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "brick": ("skimage", "data/brick.png"),
    "camera": ("skimage", "data/camera.png"),
    "cell": ("skimage", "data/cell.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "clock_motion": ("skimage", "data/clock_motion.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "coins": ("skimage", "data/coins.png"),
    "grass": ("skimage", "data/grass.png"),
    "gravel": ("skimage", "data/gravel.png"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "ihc": ("skimage", "data/ihc.png"),
    "microaneurysms": ("skimage", "data/microaneurysms.png"),
    "moon": ("skimage", "data/moon.png"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "motorcycle_right": ("skimage", "data/motorcycle_right.png"),
    "page": ("skimage", "data/page.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "text": ("skimage", "data/text.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}

#: Whole photos held out of the `photos` training set (colour, varied content).
PHOTOS_VALIDATION = ("chelsea", "coffee", "flower", "rocket")


def photo_names(split: str = "all") -> tuple[str, ...]:
    """Names of the bundled photos: `"train"`, `"validation"` or `"all"`."""
    if split == "all":
        return tuple(_PHOTO_FILES)
    if split == "validation":
        return PHOTOS_VALIDATION
    if split == "train":
        return tuple(n for n in _PHOTO_FILES if n not in PHOTOS_VALIDATION)
    raise DatasetError(f"photo split must be 'train', 'validation' or 'all', got {split!r}")


def photo_path(name: str) -> Path:
    """The file of bundled photo `name` (without importing its package)."""
    if name not in _PHOTO_FILES:
        raise DatasetError(f"unknown photo {name!r}; known photos: {', '.join(_PHOTO_FILES)}")
    package, relative = _PHOTO_FILES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"photo {name!r} ships with the {package} package, "
                           f"which is not installed")
    path = Path(spec.submodule_search_locations[0]) / relative
    if not path.is_file():
        raise DatasetError(f"photo {name!r} is missing from the installed {package}: {path}")
    return path


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """Bundled photo `name` as a read-only uint8 array (H, W, 3).

    Grayscale photos are repeated to RGB and alpha is dropped. The array is
    cached and shared between callers, hence read-only: copy it to modify it.
    """
    from PIL import Image

    with Image.open(photo_path(name)) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    array.flags.writeable = False
    return array


# ----------------------------------------------------------------------------
# Image folders.


# Pillow modes with one channel; every other mode is read as RGB.
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclasses.dataclass(frozen=True)
class ImageFile:
    """One usable image file: its path, class label (-1 without classes), size."""

    path: str
    label: int
    height: int
    width: int
    channels: int


def scan_image_folder(directory: str | os.PathLike) -> tuple[list[ImageFile], tuple[str, ...] | None]:
    """Finds and checks the images below `directory`.

    Files with an extension in `IMAGE_EXTENSIONS` (any case) are found
    recursively, in sorted order. Each is opened once with Pillow and
    `Image.verify()`-ed; files that fail are skipped with one
    `logging.warning` giving their count and the first few names. `verify`
    does not decode every pixel: a file that passes it and still fails to
    decode is dropped by the pipeline (`tf.data` `ignore_errors`, logged),
    and a truncated JPEG decodes with its missing rows filled in by
    TensorFlow's decoder (it logs "Premature end of JPEG data").

    Classes: when every image lies inside an immediate subfolder of
    `directory`, the sorted subfolder names are the classes and a file's
    label is its subfolder's index; otherwise there are no labels (-1).

    Returns:
        `(files, class_names)`; `class_names` is None without classes.

    Raises:
        DatasetError: the folder is missing, holds no image files, or none
            of them can be read.
    """
    from PIL import Image

    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f"image folder {str(root)!r} does not exist or is not a directory")
    paths = sorted(p for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise DatasetError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found in {str(root)!r}")
    top = {p.relative_to(root).parts[0] for p in paths if len(p.relative_to(root).parts) > 1}
    labelled = all(len(p.relative_to(root).parts) > 1 for p in paths)
    class_names = tuple(sorted(top)) if labelled else None
    files, bad = [], []
    for path in paths:
        try:
            with Image.open(path) as image:
                size, mode = image.size, image.mode
                image.verify()
        except Exception as e:  # Pillow raises many types for broken files
            bad.append(f"{path.name} ({type(e).__name__})")
            continue
        label = class_names.index(path.relative_to(root).parts[0]) if labelled else -1
        files.append(ImageFile(str(path), label, size[1], size[0],
                               1 if mode in _GRAY_MODES else 3))
    if bad:
        logger.warning("skipped %d unreadable image file(s) in %s: %s%s", len(bad), root,
                       ", ".join(bad[:5]), ", ..." if len(bad) > 5 else "")
    if not files:
        raise DatasetError(f"all {len(paths)} image files in {str(root)!r} are corrupt or "
                           f"unreadable (e.g. {bad[0]})")
    return files, class_names


# ----------------------------------------------------------------------------
# In-memory image arrays.

def as_image_array(array, what: str = "images") -> np.ndarray:
    """Validates an image array and returns it NHWC, uint8 or float32.

    Args:
        array: (N, H, W) or (N, H, W, C) with C in {1, 3}; uint8 in 0..255 or
            floating point in [0, 1].
        what: how to name the array in error messages.
    """
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3) or 0 in array.shape:
        raise DatasetError(f"{what}: expected a non-empty array of shape (N, H, W) or "
                           f"(N, H, W, C) with C in {{1, 3}}, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(np.min(array)), float(np.max(array))
        if not (0.0 <= low and high <= 1.0):  # also rejects NaN
            raise DatasetError(f"{what}: float images must lie in [0, 1], got values in "
                               f"[{low}, {high}]")
        return array.astype(np.float32, copy=False)
    raise DatasetError(f"{what}: expected dtype uint8 (0..255) or float in [0, 1], got "
                       f"{array.dtype} (convert with .astype(np.uint8) if it holds 0..255)")


def as_label_array(labels, num_images: int, what: str = "labels") -> np.ndarray:
    """Validates integer class labels, one per image; returns int32."""
    labels = np.asarray(labels)
    if labels.shape != (num_images,) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{what}: expected {num_images} integer labels of shape "
                           f"({num_images},), got shape {labels.shape} dtype {labels.dtype}")
    if num_images and labels.min() < 0:
        raise DatasetError(f"{what}: labels must be >= 0, got minimum {labels.min()}")
    return labels.astype(np.int32)


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """NHWC images with 1 or 3 channels -> `channels` (repeat gray / luminance)."""
    have = images.shape[-1]
    if have == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    # ITU-R BT.601 luma, the weights of tf.image.rgb_to_grayscale.
    gray = images.astype(np.float32) @ np.array([0.2989, 0.5870, 0.1140], np.float32)
    gray = gray[..., None]
    return np.round(gray).astype(np.uint8) if images.dtype == np.uint8 else gray


def fit_to_size(images: np.ndarray, size: int) -> np.ndarray:
    """Makes images at least `size` pixels high and wide, keeping the pixels.

    Images smaller than `size` are first upscaled by the largest integer
    factor that fits (nearest neighbour, so 8x8 digits become 32x32), then
    zero-padded equally on both sides (MNIST 28x28 -> 32x32 gets 2 pixels of
    black border). Larger dimensions are left alone, for cropping later.
    """
    n, h, w, c = images.shape
    if h >= size and w >= size:
        return images
    factor = max(1, min(size // h, size // w))
    if factor > 1:
        images = np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)
        h, w = h * factor, w * factor
    pad_h, pad_w = max(0, size - h), max(0, size - w)
    return np.pad(images, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                           (pad_w // 2, pad_w - pad_w // 2), (0, 0)))


def centre_crop(images: np.ndarray, size: int) -> np.ndarray:
    """The central size x size window of NHWC images at least that large."""
    h, w = images.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return images[:, top:top + size, left:left + size]


def tiles(image: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping size x size tiles of one HWC image, row by row.

    The grid is centred: the pixels left over split equally between the
    borders. An image smaller than `size` gives zero tiles.
    """
    h, w, c = image.shape
    rows, cols = h // size, w // size
    top, left = (h - rows * size) // 2, (w - cols * size) // 2
    grid = image[top:top + rows * size, left:left + cols * size]
    grid = grid.reshape(rows, size, cols, size, c).swapaxes(1, 2)
    return grid.reshape(rows * cols, size, size, c)


def split_indices(n: int, validation_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A fixed train/validation split of `n` examples (sorted index arrays).

    A permutation with a fixed seed, independent of any training seed, so the
    held-out examples never change between runs, and a class-sorted file is
    still split evenly.
    """
    n_val = int(round(n * validation_fraction))
    permutation = np.random.default_rng(0).permutation(n)
    return np.sort(permutation[n_val:]), np.sort(permutation[:n_val])

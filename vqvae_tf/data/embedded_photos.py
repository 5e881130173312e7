"""The photos bundled inside pip packages (scikit-image, scikit-learn): names, files, pixels.

Nothing is downloaded: the files ship with the installed packages. Plain
numpy and Pillow, no TensorFlow. `vqvae_tf.data.photos` turns the training
photos into the `photos` pipeline; the held-out `PHOTOS_VALIDATION` are the
validation set there and the test images of the codec benchmarks.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from vqvae_tf.data.errors import DatasetError

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
        raise DatasetError(f"photo {name!r} ships with the {package} package, which is not installed")
    path = Path(spec.submodule_search_locations[0]) / relative
    if not path.is_file():
        raise DatasetError(f"photo {name!r} is missing from the installed {package}: {path}")
    return path


@functools.cache
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

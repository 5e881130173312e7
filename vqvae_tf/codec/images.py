"""Image files for the codec: 8-bit PNG, JPEG and BMP in, PNG out (Pillow, no TensorFlow)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from vqvae_tf.codec.model import CodecError
from vqvae_tf.utils import atomic

#: File name endings of the images the codec (and the `folder:` dataset) reads.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def read_image(path) -> np.ndarray:
    """Reads an 8-bit PNG, JPEG or BMP as uint8 `(H, W)` (gray) or `(H, W, 3)`.

    Palette and bilevel images are converted (to RGB and gray); CMYK and
    YCbCr JPEGs to RGB. Images with more than 8 bits per sample or with an
    alpha channel are refused: converting them would silently lose data.

    Raises:
        FileNotFoundError: `path` does not exist.
        CodecError: the file is not a readable image, or of a refused kind.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} not found")
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F") or mode.startswith("I;"):
                raise CodecError(f"{path} has {mode!r} samples (more than 8 bits); convert it to 8-bit first")
            if mode == "P":
                has_alpha = "transparency" in image.info
                image = image.convert("RGBA" if has_alpha else "RGB")
                mode = image.mode
            if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
                raise CodecError(f"{path} has an alpha channel (mode {mode!r}); flatten it onto a background first")
            if mode == "1":
                image, mode = image.convert("L"), "L"
            if mode not in ("L", "RGB"):
                image = image.convert("RGB")
            array = np.asarray(image, dtype=np.uint8)
    except CodecError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise CodecError(f"cannot read image {path}: {message}") from None
    return array


def write_png(path, image: np.ndarray) -> None:
    """Writes a uint8 `(H, W)` or `(H, W, 3)` image as PNG, atomically (see `write_output`)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    write_output(path, buffer.getvalue())


def write_output(path, data: bytes) -> None:
    """Writes an output file of the codec atomically, into a directory that must exist.

    Raises:
        CodecError: `path` is a directory.
        FileNotFoundError: the directory of `path` does not exist.
    """
    try:
        atomic.write_bytes(path, data, make_parents=False)
    except IsADirectoryError as error:
        raise CodecError(str(error)) from None

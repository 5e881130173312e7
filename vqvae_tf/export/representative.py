"""The representative dataset of int8 calibration: gathered and validated."""

import numpy as np

from vqvae_tf.export.errors import ExportError

#: Images used for int8 calibration at most.
MAX_IMAGES = 256


def representative_images(data, model, max_images=MAX_IMAGES):
    """float32 images `(N, H, W, C)` in [0, 1] (or audio `(N, L, C)` in [-1, 1]) for calibrating `model`.

    Args:
        data: array `(N, H, W, C)` (or one image `(H, W, C)`), float in
            [0, 1] or uint8 in [0, 255]; or a `tf.data.Dataset` of such
            images, batched or not, or of `(images, ...)` tuples. For a
            rank-1 model, `(N, L, C)` float samples in [-1, 1] (the range
            of `vqvae_tf.data.read_wav`).
        model: the VQVAE (for channels, rank and downsampling factor).
        max_images: at most this many images are kept.

    Raises:
        ExportError: no data, an empty dataset, or images of the wrong
            shape, dtype or range.
    """
    if data is None:
        raise ExportError("int8 quantization needs representative_data (training images); received None")
    images = _collect(data, model.rank, max_images)
    expected = f"(N, {', '.join(['H', 'W'][: model.rank] if model.rank == 2 else ['L'])}, {model.input_channels})"
    if images.size == 0 or images.shape[0] == 0:
        raise ExportError("the representative dataset is empty; int8 calibration needs at least one image")
    if images.ndim != model.rank + 2 or images.shape[-1] != model.input_channels:
        raise ExportError(f"representative images must be shaped {expected}; received shape {images.shape}")
    spatial = images.shape[1:-1]
    if any(s % model.downsample or s == 0 for s in spatial):
        raise ExportError(
            f"representative images must have sizes that are multiples of downsample={model.downsample}; "
            f"received shape {images.shape}"
        )
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    if not np.issubdtype(images.dtype, np.floating):
        raise ExportError(f"representative images must be float in [0, 1] or uint8; received dtype {images.dtype}")
    images = images.astype(np.float32)
    if not np.all(np.isfinite(images)):
        raise ExportError("representative images contain NaN or Inf; expected finite values in [0, 1]")
    low, high = float(images.min()), float(images.max())
    # Waveforms are signed; images are in [0, 1].
    floor, what = (-1.0, "audio samples") if model.rank == 1 else (0.0, "float images")
    if low < floor - 1e-3 or high > 1.0 + 1e-3:
        raise ExportError(f"representative {what} must lie in [{floor:g}, 1]; received values in [{low:g}, {high:g}]")
    return images


def _collect(data, rank, max_images):
    import tensorflow as tf

    if not isinstance(data, tf.data.Dataset):
        try:
            images = np.asarray(data)
        except ValueError as error:
            raise ExportError(f"representative data is not an array of images: {error}") from None
        if images.ndim == rank + 1:
            images = images[None]
        return images[:max_images]
    batches, count = [], 0
    for element in data:
        if isinstance(element, (tuple, list)):
            element = element[0]
        if isinstance(element, dict):
            raise ExportError("representative dataset elements must be images or (images, ...) tuples; received a dict")
        array = np.asarray(element)
        if array.ndim == rank + 1:
            array = array[None]
        if batches and array.shape[1:] != batches[0].shape[1:]:
            raise ExportError(
                f"representative images must all have one size; received {batches[0].shape[1:]} and {array.shape[1:]}"
            )
        batches.append(array)
        count += array.shape[0]
        if count >= max_images:
            break
    if not batches:
        return np.zeros((0,), np.float32)
    return np.concatenate(batches)[:max_images]

"""`mnist:DIR`: the IDX file format (`read_idx`) and the MNIST loader.

`DIR` holds `<split>-images-idx3-ubyte[.gz]` and `<split>-labels-idx1-ubyte[.gz]`.
With `train` and `t10k` (or `test`) the two are train and validation; with a
single split it is divided by `validation_fraction` (0.2 turns the 10,000
t10k digits into 8,000 / 2,000).
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from pathlib import Path

import numpy as np

from vqvae_tf.data.arrays import array_bundle, split_arrays
from vqvae_tf.data.errors import DatasetError

# IDX type code (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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
            f"{sorted(hex(k) for k in _IDX_DTYPES)} and the number of dimensions"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: IDX header declares {ndim} dimensions but the file has only {len(data)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DatasetError(
            f"{path}: IDX header declares shape {dims} ({expected} bytes) but the "
            f"file has {len(data)} bytes (truncated or corrupt)"
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def mnist_bundle(directory, config):
    """The `DatasetBundle` of the IDX files in `directory` (see the module docstring)."""
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f"MNIST directory {directory!r} does not exist")
    pattern = re.compile(r"(?P<split>.+)-(?P<kind>images|labels)[-.]idx[13]-ubyte(\.gz)?$")
    found = {}
    for path in sorted(root.iterdir()):
        match = pattern.match(path.name)
        if match:
            found.setdefault(match["split"], {}).setdefault(match["kind"], path)
    splits = {s: k for s, k in found.items() if "images" in k}
    if not splits:
        raise DatasetError(f"no IDX image files (<split>-images-idx3-ubyte[.gz]) in {directory!r}")

    def load(split):
        images = read_idx(splits[split]["images"])
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DatasetError(
                f"{splits[split]['images']}: expected uint8 images of shape "
                f"(N, H, W), got {images.dtype} {images.shape}"
            )
        if "labels" not in splits[split]:
            return images[..., None], None
        labels = read_idx(splits[split]["labels"])
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DatasetError(
                f"{splits[split]['labels']}: expected {images.shape[0]} labels, got shape {labels.shape}"
            )
        return images[..., None], labels.astype(np.int32)

    test = next((s for s in ("t10k", "test") if s in splits), None)
    if "train" in splits and test:
        (train_x, train_y), (val_x, val_y) = load("train"), load(test)
    elif len(splits) == 1:
        train_x, train_y, val_x, val_y = split_arrays(*load(next(iter(splits))), config)
    else:
        raise DatasetError(
            f"{directory!r} holds IDX splits {sorted(splits)}; expected one split, or 'train' with 't10k' or 'test'"
        )
    return array_bundle(
        train_x, train_y, val_x, val_y, config, f"mnist:{directory}", num_classes=10 if train_y is not None else None
    )

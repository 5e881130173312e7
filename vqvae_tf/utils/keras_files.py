"""Loading `.keras` files with a clear error for a missing, truncated or corrupt one.

Keras answers a truncated or non-zip `.keras` file with "File not found"
(the file exists) and a zip without `config.json` with a bare `KeyError`.
`load_keras_file` checks the archive first, so every loader of the project
(the exporter, prior training and sampling, the codec's prior, re-exporting
a finished run) says what is wrong with the file it was given.

No TensorFlow at module level: Keras is imported when a model is loaded.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

#: Members every `.keras` archive written by `model.save` holds.
REQUIRED_MEMBERS = ("config.json", "metadata.json")


class ModelFileError(ValueError):
    """A `.keras` or weights file that is truncated, corrupt or not what it should be; the message says which."""


def check_keras_file(path) -> Path:
    """`path` as a `Path` if it is a readable `.keras` archive.

    Raises:
        FileNotFoundError: nothing exists at `path`.
        ModelFileError: `path` is a directory, not a zip archive (truncated
            or another kind of file), lacks the members `model.save` writes,
            or has a member whose CRC does not match.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory; expected a .keras file")
    size = path.stat().st_size
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path} ({size} bytes) is not a .keras archive: it is truncated or not a zip file "
            "(model.save writes a zip holding config.json and the weights)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [name for name in REQUIRED_MEMBERS if name not in archive.namelist()]
            if missing:
                raise ModelFileError(f"{path} is a zip file but not a .keras model: it has no {', '.join(missing)}")
            corrupt = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ModelFileError(f"{path} ({size} bytes) is a damaged .keras archive: {error}") from None
    if corrupt is not None:
        raise ModelFileError(f"{path} is a damaged .keras archive: member {corrupt} fails its CRC check")
    return path


def load_keras_file(path, *, what: str = "model", compile: bool = True):
    """`keras.models.load_model(path)` after `check_keras_file`, with one-line errors.

    Args:
        path: the `.keras` file.
        what: what the file should hold, for messages ("VQ-VAE", "prior").
        compile: passed to `load_model`.

    Raises:
        FileNotFoundError: nothing exists at `path`.
        ModelFileError: the file is not a loadable Keras model.
    """
    import keras

    import vqvae_tf  # noqa: F401  (registers every serializable class of the project)

    path = check_keras_file(path)
    try:
        return keras.models.load_model(path, compile=compile)
    except (ValueError, KeyError, TypeError, OSError, AttributeError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise ModelFileError(f"cannot load {path} as a Keras {what}: {message[:300]}") from None


def load_weights_file(model, path, *, what: str = "weights") -> None:
    """`model.load_weights(path)` for a `.weights.h5` file, with one-line errors.

    h5py answers a truncated file with an `OSError` from deep inside its C
    library ("truncated file: eof = ...") and a file of another model with a
    `ValueError` naming layers; both become a `ModelFileError` naming `path`,
    its size and `what` it should hold. The file is never modified.

    Args:
        model: a built Keras model.
        path: the `.weights.h5` file.
        what: what the file is, for messages ("training backup").

    Raises:
        FileNotFoundError: nothing exists at `path`.
        ModelFileError: the file is not loadable weights of `model`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    size = path.stat().st_size
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise ModelFileError(f"{what} {path} ({size} bytes) cannot be loaded: {message[:300]}") from None

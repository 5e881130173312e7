"""Presets: pretrained models by name or directory, the KerasHub convention.

A preset is a directory holding `model.keras` (architecture and weights,
float32, no optimizer state) and `preset.json` (what the model is, how it
was trained, its figures). Shipped presets live in `vqvae_tf/pretrained/NAME/`,
beside the TFLite files of the codec model of the same name, so the Keras
side and the codec read one directory; a preset records the exporter's model
id, which equals the codec model's id when both hold the same weights.

    >>> from vqvae_tf import VQVAE
    >>> sorted(VQVAE.list_presets())                     # doctest: +SKIP
    ['d4k512']
    >>> model = VQVAE.from_preset("d4k512")              # doctest: +SKIP
    >>> model.save_to_preset("my_preset")                # doctest: +SKIP
    >>> VQVAE.from_preset("my_preset")                   # doctest: +SKIP

Loading goes through `keras.saving.load_model` in safe mode (no pickled
code runs) after `vqvae_tf.utils.keras_files` has checked the archive.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from vqvae_tf.models.float32 import float32_copy
from vqvae_tf.utils import atomic
from vqvae_tf.utils.checks import check_int
from vqvae_tf.utils.fingerprint import model_id
from vqvae_tf.utils.keras_files import load_keras_file

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
MODEL_FILE = "model.keras"
PRESET_FILE = "preset.json"
#: Fields every preset.json has; `save_to_preset` fills them.
REQUIRED_FIELDS = ("class_name", "model_id", "description")


def list_presets() -> dict[str, dict]:
    """{name: preset.json contents} of the presets shipped with the package, sorted by name."""
    found = {}
    for directory in sorted(PRETRAINED_DIR.iterdir()) if PRETRAINED_DIR.is_dir() else ():
        if (directory / PRESET_FILE).is_file() and (directory / MODEL_FILE).is_file():
            found[directory.name] = read_preset_metadata(directory)
    return found


def preset_directory(preset) -> Path:
    """The directory of `preset`: a shipped preset's name, or a directory made by `save_to_preset`.

    Raises:
        ValueError: `preset` is neither; the message lists the shipped names.
    """
    if not isinstance(preset, (str, Path)):
        raise ValueError(f"`preset` must be a preset name or a directory; received {preset!r}.")
    shipped = PRETRAINED_DIR / str(preset)
    if isinstance(preset, str) and "/" not in preset and (shipped / MODEL_FILE).is_file():
        return shipped
    directory = Path(preset)
    if (directory / MODEL_FILE).is_file():
        return directory
    names = ", ".join(list_presets()) or "none"
    raise ValueError(
        f"unknown preset {str(preset)!r}: not a shipped preset ({names}) and not a directory holding {MODEL_FILE}"
    )


def load_preset(preset, cls=None):
    """The Keras model of `preset`; when `cls` is given, it must be an instance of it.

    Raises:
        ValueError: unknown preset, or a preset of another class.
        vqvae_tf.utils.keras_files.ModelFileError: a damaged `model.keras`.
    """
    directory = preset_directory(preset)
    metadata = read_preset_metadata(directory) if (directory / PRESET_FILE).is_file() else {}
    expected = metadata.get("class_name")
    if cls is not None and expected is not None and expected != cls.__name__:
        raise ValueError(f"preset {str(preset)!r} holds a {expected}, not a {cls.__name__}")
    model = load_keras_file(directory / MODEL_FILE, what=f"preset {str(preset)!r}")
    if cls is not None and not isinstance(model, cls):
        raise ValueError(f"preset {str(preset)!r} holds a {type(model).__name__}, not a {cls.__name__}")
    return model


def save_preset(
    model, directory, *, description: str = "", overwrite: bool = False, significant_bits=None, **metadata
) -> Path:
    """Writes `model` as a preset into `directory` (created if needed); returns the directory.

    The saved model is the float32 twin of `model` with its weights and no
    optimizer state (`vqvae_tf.models.float32.float32_copy`), so a preset loads
    for inference or fine-tuning under any policy. Both files are written
    atomically; other files in `directory` (a codec model's TFLite files) are
    left alone.

    With `significant_bits` the preset is compact: every float32 weight is
    rounded to that many significant bits (to nearest, ties to even; the
    float32 exponent is kept, so unlike float16 nothing overflows or
    underflows) and the archive is deflated, which the zeroed low mantissa
    bits make pay: at 11 bits (float16's precision, relative error at most
    2**-11) about half the bytes. The preset then holds the rounded weights
    (its `model_id` is theirs): export the codec files from the preset's model,
    not from the original, so that both hold the same weights.

    Args:
        model: a built model of this project (a `VQVAE`).
        directory: where to write `model.keras` and `preset.json`.
        description: one line saying what the model is.
        overwrite: replace a preset already in `directory`. Defaults to False.
        significant_bits: None (exact float32 weights) or 8 .. 23: round the
            weights and compress the archive, see above.
        **metadata: more JSON-ready fields for `preset.json` (training
            data, command, wall time, figures with how they were measured).
    """
    directory = Path(directory)
    if (directory / MODEL_FILE).exists() and not overwrite:
        raise FileExistsError(f"{directory / MODEL_FILE} exists; pass overwrite=True to replace the preset")
    if not model.built:
        raise ValueError("the model has no weights yet; train it or call it on a batch before saving a preset")
    twin = float32_copy(model)
    copy = type(twin).from_config(twin.get_config())
    copy.build(tuple(twin.get_build_config()["input_shape"]))
    weights = twin.get_weights()
    if significant_bits is not None:
        significant_bits = check_int("significant_bits", significant_bits, minimum=8, maximum=23)
        weights = [round_significant_bits(w, significant_bits) for w in weights]
    copy.set_weights(weights)
    directory.mkdir(parents=True, exist_ok=True)
    atomic.save_model(copy, directory / MODEL_FILE)
    if significant_bits is not None:
        _deflate(directory / MODEL_FILE)
    fields = {"class_name": type(copy).__name__, "model_id": model_id(copy), "description": description, **metadata}
    if significant_bits is not None:
        fields["significant_bits"] = significant_bits
    fields["model_keras_bytes"] = (directory / MODEL_FILE).stat().st_size
    atomic.write_json(directory / PRESET_FILE, fields)
    return directory


def round_significant_bits(values, bits: int):
    """float32 `values` rounded to `bits` significant bits (nearest, ties to even); other dtypes unchanged.

    >>> round_significant_bits(np.float32([1 + 2**-12, 1 + 3 * 2**-12, 3.0]), 11).tolist()
    [1.0, 1.0009765625, 3.0]
    """
    values = np.asarray(values)
    if values.dtype != np.float32:
        return values
    drop = 24 - bits  # of float32's 24 significant bits
    raw = values.view(np.uint32).astype(np.uint64)
    half, keep = (1 << (drop - 1)) - 1, ~np.uint64((1 << drop) - 1)
    rounded = (raw + half + ((raw >> drop) & 1)) & keep
    finite = np.isfinite(values)  # inf and nan keep their bits
    return np.where(finite, rounded.astype(np.uint32).view(np.float32), values)


def _deflate(path: Path) -> None:
    """Recompresses the `.keras` zip at `path` with deflate, atomically."""
    with zipfile.ZipFile(path) as source, atomic.atomic_output(path) as temp:
        with zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
            for info in source.infolist():
                target.writestr(info.filename, source.read(info.filename))


def read_preset_metadata(directory) -> dict:
    """The preset.json of the preset directory `directory`, checked to hold `REQUIRED_FIELDS`.

    Raises:
        ValueError: the file is missing or unreadable, not a JSON object, or
            lacks a required field (the message names the path and the fields).
    """
    path = Path(directory) / PRESET_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a preset description: it holds a {type(data).__name__}, not an object")
    missing = [name for name in REQUIRED_FIELDS if name not in data]
    if missing:
        raise ValueError(f"{path} is not a preset description: it lacks {', '.join(missing)}")
    return data

"""Exports a trained VQVAE: SavedModel for serving, TFLite for devices, ONNX.

`export_model(model_or_path, out_dir, ...)` writes, atomically (a temporary
directory next to `out_dir`, renamed at the end; an interrupted export leaves
nothing), this layout:

    OUT/
      export.json                      model fields + every file, size, SHA-256
      saved_model/                     signatures encode, decode, reconstruct (= serving_default)
      tflite/encoder_<q>.tflite        images -> int32 codes        + encoder_<q>.json sidecar
      tflite/decoder_<q>.tflite        int32 codes -> images        + decoder_<q>.json
      tflite/vqvae_<q>.tflite          all three signatures         + vqvae_<q>.json
      onnx/encoder.onnx, decoder.onnx, reconstruct.onnx (float32)  + .json sidecars

with `<q>` each requested quantization (`float32`, `float16`, `dynamic`,
`int8`). See `vqvae_tf.export.saved_model` for serving commands and request bodies,
`vqvae_tf.export.tflite` for what each quantization does, `vqvae_tf.export.metadata` for the
sidecar schema, and `vqvae_tf.codec.lite_runtime` to run the TFLite models without
TensorFlow. Command line: `python -m export --help`.

Example:

>>> export_model("runs/x/model.keras", "runs/x/export",
...              quantizations=("float32", "int8"), representative_data=train_images)
"""

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from vqvae_tf.export.errors import ExportError
from vqvae_tf.export.opsets import check_opset
from vqvae_tf.export.tflite import QUANTIZATIONS  # the TFLite converter owns the list of its variants
from vqvae_tf.utils import atomic
from vqvae_tf.utils.keras_files import ModelFileError, load_keras_file

logger = logging.getLogger(__name__)

FORMATS = ("saved_model", "tflite", "onnx")
__all__ = ["ExportError", "FORMATS", "QUANTIZATIONS", "export_model", "load_vqvae"]


def export_model(
    model_or_path,
    out_dir,
    formats=FORMATS,
    quantizations=QUANTIZATIONS,
    representative_data=None,
    opset=17,
    overwrite=False,
    int8_io=False,
):
    """Exports a VQVAE to SavedModel, TFLite and ONNX, all in one directory.

    Args:
        model_or_path: a built `vqvae_tf.VQVAE` or the path of a `.keras`
            file holding one.
        out_dir: directory to create.
        formats: any of `"saved_model"`, `"tflite"`, `"onnx"`. Defaults to
            all three.
        quantizations: TFLite variants, any of `"float32"`, `"float16"`,
            `"dynamic"`, `"int8"`. Defaults to all four. (ONNX and the
            SavedModel are float32.)
        representative_data: images for int8 calibration (required with
            `"int8"`): an array `(N, H, W, C)` (float in [0, 1] or uint8),
            or a `tf.data.Dataset` of such images, batched or not, or of
            `(images, ...)` tuples. Up to 256 images are used; H and W must
            be multiples of the downsampling factor.
        opset: ONNX opset, 15 to 18. Defaults to 17.
        overwrite: replace an existing `out_dir`. Defaults to False.
        int8_io: int8 TFLite models take and give int8 images (integer-only
            graph, for microcontrollers). Defaults to False.

    Returns:
        `Path` of `out_dir`.

    Raises:
        ExportError: bad argument, model file or data, existing `out_dir`
            without `overwrite`, or a converted model that fails to run.
    """
    formats = _check_names("format", formats, FORMATS)
    quantizations = _check_names("quantization", quantizations, QUANTIZATIONS)
    if "onnx" in formats:
        check_opset(opset)
    target = Path(out_dir).absolute()
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise ExportError(f"output directory {target} already exists; pass overwrite=True (--overwrite) to replace it")
    model = load_vqvae(model_or_path)
    calibration = None
    if "tflite" in formats and "int8" in quantizations:
        calibration = _calibration(model, representative_data)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        staging.chmod(0o777 & ~_umask())
        _write_all(model, staging, formats, quantizations, calibration, opset, int8_io)
        _replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("Exported %s to %s.", ", ".join(formats), target)
    return target


def load_vqvae(model_or_path):
    """A built VQVAE from a model or a `.keras` path; `ExportError` otherwise."""
    from vqvae_tf.models.vqvae import VQVAE, float32_copy  # registers the serializable classes

    model = model_or_path
    if isinstance(model_or_path, (str, os.PathLike)):
        try:
            model = load_keras_file(model_or_path, what="VQ-VAE", compile=False)
        except (FileNotFoundError, ModelFileError) as error:
            raise ExportError(str(error)) from None
    if not isinstance(model, VQVAE):
        raise ExportError(f"expected a vqvae_tf.VQVAE model; received {type(model).__name__}")
    if model.num_speakers is not None:
        raise ExportError(
            f"export supports unconditioned VQVAEs only; received one with a speaker-conditioned decoder "
            f"(num_speakers={model.num_speakers}), whose decoder also needs speaker ids"
        )
    parts = (model.encoder, model.quantizer, model.decoder)
    if not model.built:
        if not all(part.built for part in parts):
            raise ExportError("the VQVAE has no weights yet; train it or call it on a batch before exporting")
        # A model trained through its own train_step builds its parts but is
        # never marked built itself; its weights are all there.
        model.built = True
    # TFLite builtins cannot convert bfloat16/float16 compute: export the
    # float32 twin (same float32 variables) of a mixed-precision model.
    return float32_copy(model)


def _check_names(kind, values, known):
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    values = tuple(values)
    unknown = [v for v in values if v not in known]
    if unknown or not values:
        received = ", ".join(map(repr, unknown)) if unknown else "nothing"
        raise ExportError(f"unknown {kind} {received}; expected some of {', '.join(known)}")
    return tuple(dict.fromkeys(values))


def _calibration(model, data):
    """Calibration images and their float codes, validated."""
    from vqvae_tf.export.representative import representative_images

    images = representative_images(data, model)
    return {"images": images, "codes": np.asarray(model.codes(images))}


def _write_all(model, root, formats, quantizations, calibration, opset, int8_io):
    from vqvae_tf.export import metadata, saved_model

    fields = metadata.model_fields(model, metadata.model_id(model))
    keep_saved_model = "saved_model" in formats
    saved_dir = root / ("saved_model" if keep_saved_model else ".saved_model_for_conversion")
    if keep_saved_model or "tflite" in formats:
        saved_model.write_saved_model(model, saved_dir)
    if "tflite" in formats:
        _write_tflite(model, saved_dir, root / "tflite", fields, quantizations, calibration, int8_io)
    if not keep_saved_model and saved_dir.exists():
        shutil.rmtree(saved_dir)
    if "onnx" in formats:
        _write_onnx(model, root / "onnx", fields, opset)
    files = {
        str(p.relative_to(root)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
    metadata.write_json(root / "export.json", dict(fields, formats=list(formats), files=files))


def _write_tflite(model, saved_dir, directory, fields, quantizations, calibration, int8_io):
    from vqvae_tf.export import metadata, saved_model, tflite

    directory.mkdir()
    for quantization in quantizations:
        for name, signatures in tflite.MODELS.items():
            content = tflite.convert(saved_dir, signatures, quantization, calibration, int8_io)
            tflite.check_runs(
                content, signatures, model.downsample, model.input_channels, model.rank, saved_model.code_axes(model)
            )
            stem = f"{name}_{quantization}"
            atomic.write_bytes(directory / f"{stem}.tflite", content)
            io = int8_io and quantization == "int8"
            metadata.write_json(
                directory / f"{stem}.json", metadata.sidecar(fields, "tflite", stem, signatures, quantization, io)
            )
            logger.info("Wrote %s.tflite (%d bytes).", stem, len(content))


def _write_onnx(model, directory, fields, opset):
    from vqvae_tf.export import metadata
    from vqvae_tf.export import onnx as onnx_export

    directory.mkdir()
    for name, endpoint in onnx_export.MODELS.items():
        content = onnx_export.convert(model, endpoint, opset)
        atomic.write_bytes(directory / f"{name}.onnx", content)
        entry = metadata.sidecar(fields, "onnx", name, (endpoint,))
        entry["opset"] = int(opset)
        metadata.write_json(directory / f"{name}.json", entry)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sha256(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _replace_directory(staging, target):
    """Moves `staging` to `target`, replacing an old `target` by two renames."""
    if not (target.exists() or target.is_symlink()):
        os.replace(staging, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    os.rmdir(old)
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(old, target)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()

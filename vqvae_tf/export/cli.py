"""Command line: export a trained VQVAE to SavedModel, TFLite and ONNX.

    python -m export --model runs/x/model.keras --out runs/x/export \\
        --formats saved_model,tflite,onnx --quantize float32,int8 \\
        --representative photos [--overwrite] [--int8_io] [--opset 17]

`--representative` (needed with int8) is `npz:FILE` or `npy:FILE` (an array
of images, float in [0, 1] or uint8, N x H x W x C; an npz's `images` entry
or its first array), or any dataset spec of `vqvae_tf.data.datasets.make_datasets`
(`photos`, `folder:DIR`, `tfrecord:PATTERN`, ...), cropped to
`--representative_size`. For a speech model, `audio:DIR` gives random crops of
`--representative_size` samples of its WAV files, without the clips of
`--representative_exclude` (a validation list: file or shipped name, as
`train.py --validation_list`), so that held-out clips stay out of
calibration too. Bad input prints one line and exits with code 2.
"""

import logging
import sys

from absl import app, flags

from vqvae_tf.export.api import FORMATS, QUANTIZATIONS, ExportError, export_model
from vqvae_tf.export.opsets import DEFAULT_OPSET, OPSETS

FLAGS = flags.FLAGS


def define_flags():
    """Defines the exporter's flags; called by `run()`, never at import (train.py defines some of the same names)."""
    flags.DEFINE_string("model", None, "Path of the trained model (.keras).", required=True)
    flags.DEFINE_string("out", None, "Output directory (must not exist unless --overwrite).", required=True)
    flags.DEFINE_list("formats", list(FORMATS), f"Formats to write: {', '.join(FORMATS)}.")
    flags.DEFINE_list("quantize", ["float32"], f"TFLite variants: {', '.join(QUANTIZATIONS)}.")
    flags.DEFINE_string("representative", None, "Calibration images for int8: npz:FILE, npy:FILE or a dataset spec.")
    flags.DEFINE_integer(
        "representative_size", 64, "Crop size of a dataset spec's calibration images (audio: samples).", lower_bound=1
    )
    flags.DEFINE_string(
        "representative_exclude",
        None,
        "audio:DIR: validation list (file or shipped name) of clips not to calibrate on.",
    )
    flags.DEFINE_integer("representative_count", 256, "Calibration images to use at most.", lower_bound=1)
    flags.DEFINE_integer("opset", DEFAULT_OPSET, "ONNX opset.", lower_bound=min(OPSETS), upper_bound=max(OPSETS))
    flags.DEFINE_bool("overwrite", False, "Replace an existing output directory.")
    flags.DEFINE_bool("int8_io", False, "int8 TFLite models take and give int8 images (microcontrollers).")

    flags.register_validator(
        "formats", lambda v: bool(v) and set(v) <= set(FORMATS), f"--formats takes some of {', '.join(FORMATS)}"
    )
    flags.register_validator(
        "quantize",
        lambda v: bool(v) and set(v) <= set(QUANTIZATIONS),
        f"--quantize takes some of {', '.join(QUANTIZATIONS)}",
    )
    flags.register_multi_flags_validator(
        ["quantize", "representative", "formats"],
        lambda f: not ("int8" in f["quantize"] and "tflite" in f["formats"]) or bool(f["representative"]),
        "--quantize int8 needs --representative (npz:FILE, npy:FILE or a dataset spec)",
    )


def load_representative(spec, size, count, exclude=None):
    """Calibration images from `npz:FILE`, `npy:FILE` or a dataset spec (audio: crops of `size` samples)."""
    import numpy as np

    scheme, _, argument = spec.partition(":")
    if scheme in ("npz", "npy"):
        try:
            loaded = np.load(argument, allow_pickle=False)
            if scheme == "npz":
                with loaded:
                    key = "images" if "images" in loaded.files else (loaded.files or [None])[0]
                    if key is None:
                        raise ExportError(f"representative file {argument} holds no arrays")
                    return loaded[key][:count]
            return np.asarray(loaded)[:count]
        except (OSError, ValueError, TypeError, AttributeError) as error:
            if isinstance(error, ExportError):
                raise
            raise ExportError(f"cannot read {scheme} representative images from {argument}: {error}") from None
    from vqvae_tf.data.audio import validation_list_file
    from vqvae_tf.data.datasets import make_datasets

    if exclude is not None and scheme != "audio":
        raise ExportError(f"--representative_exclude is for an audio:DIR spec; received --representative {spec!r}")
    sizes = dict(image_size=size) if scheme != "audio" else dict(crop_length=size)
    if exclude is not None:
        sizes["validation_list"] = validation_list_file(exclude)
    try:
        bundle = make_datasets(spec, **sizes, batch_size=min(count, 64), deterministic=True)
    except ValueError as error:
        raise ExportError(f"bad --representative {spec!r}: {error}") from None
    return bundle.train.take(-(-count // min(count, 64)))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.getLogger().setLevel(logging.INFO)
    try:
        data = None
        if FLAGS.representative and "int8" in FLAGS.quantize:
            data = load_representative(
                FLAGS.representative,
                FLAGS.representative_size,
                FLAGS.representative_count,
                FLAGS.representative_exclude,
            )
        out = export_model(
            FLAGS.model,
            FLAGS.out,
            formats=FLAGS.formats,
            quantizations=FLAGS.quantize,
            representative_data=data,
            opset=FLAGS.opset,
            overwrite=FLAGS.overwrite,
            int8_io=FLAGS.int8_io,
        )
    except ExportError as error:
        print(f"export: error: {error}", file=sys.stderr)
        return 2
    print(f"Exported to {out}")
    return 0


def _parse_flags(argv):
    """absl's parser, but a bad flag exits with code 2 like other bad input."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print(f"export: error: {error}\nSee python -m export --helpfull.", file=sys.stderr)
        sys.exit(2)


def run():
    define_flags()
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()

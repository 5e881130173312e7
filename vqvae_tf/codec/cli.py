"""The codec's command line: `python -m vqvae_tf.codec` (or `vqvae-codec` when installed).

    python -m vqvae_tf.codec compress photo.png photo.vqz [--model M] [--method packed|static|prior] [--prior P]
                                     [--quality Q | --bpp B]      # rate of a residual model (--kbps: audio)
                                     [--depth adaptive|uniform]   # --bpp: stages per position vary, or not
    python -m vqvae_tf.codec decompress photo.vqz photo_out.png [--model M] [--prior P]
    python -m vqvae_tf.codec compress speech.wav speech.vqz --model M [--method packed|static|prior] [--prior P]
                                     [--quality Q | --kbps K]     # prior: all stages kept
    python -m vqvae_tf.codec decompress speech.vqz speech_out.wav [--model M] [--prior P]
    python -m vqvae_tf.codec info photo.vqz
    python -m vqvae_tf.codec eval DIR [--model M]        # bpp, PSNR, MS-SSIM vs JPEG / WebP
    python -m vqvae_tf.codec package EXPORT_TFLITE_DIR OUT_DIR   # make a codec model (needs TF)
    python -m vqvae_tf.codec add-prior MODEL PRIOR.keras         # ship a prior with it (needs TF)
        [--audio_dir DIR --audio_exclude LIST] [--prior_quantization float16]   # an audio model's speech prior

Each command is a `Command` in a table; `package` and `add-prior` come from
`vqvae_tf.export.codec_cli` (the training side), which `__main__` adds only
when one of them is asked for, so the device commands never import it.
Flags are defined in `main()`, never at import.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable

from vqvae_tf.codec import audio
from vqvae_tf.codec.api import METHODS, compress, decompress, describe
from vqvae_tf.codec.bitstream.header import MAGIC, Kind
from vqvae_tf.codec.images import write_output
from vqvae_tf.codec.model import DEFAULT_MODEL, load_model


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its positional arguments and the function that runs it (prints, returns nothing)."""

    args: tuple[str, ...]
    run: Callable


def _model_flag(FLAGS, default=False):
    """The `--model` codec model; the default model when `default` and no flag was given."""
    if FLAGS.model is not None:
        return load_model(FLAGS.model, num_threads=FLAGS.threads)
    return load_model(num_threads=FLAGS.threads) if default else None


def _compress(args, FLAGS):
    # The input decides: a WAV file goes to the audio codec (the default
    # model then being the shipped audio model), anything else to the image codec.
    if audio.is_wav_file(args[0]):
        result = audio.compress_wav(
            args[0],
            args[1],
            _model_flag(FLAGS),
            FLAGS.method,
            quality=FLAGS.quality,
            kbps=FLAGS.kbps,
            bpp=FLAGS.bpp,
            prior=FLAGS.prior,
        )
        kept, total = result["stages"]
        print(
            f"{args[1]}: {result['bytes']} bytes, {result['kilobits_per_second']:.3f} kbps "
            f"({result['duration_seconds']:.3f} s at {result['sample_rate']} Hz, model {result['model']}, "
            f"{result['method']}, quality {result['quality']}: {kept} of {total} stages)"
        )
        return
    result = compress(
        args[0],
        args[1],
        _model_flag(FLAGS, default=True),
        FLAGS.method,
        FLAGS.prior,
        quality=FLAGS.quality,
        bpp=FLAGS.bpp,
        kbps=FLAGS.kbps,
        depth=FLAGS.depth,
    )
    height, width, channels = result["image_shape"]
    kept, total = result["stages"]
    mean = result["stages_per_position"]
    stages = f"{kept} of {total} stages" if mean == kept else f"{mean:.2f} of {total} stages per position"
    print(
        f"{args[1]}: {result['bytes']} bytes, {result['bits_per_pixel']:.4f} bpp "
        f"({height}x{width}x{channels}, model {result['model']}, {result['method']}, "
        f"quality {result['quality']}: {stages})"
    )


def _decompress(args, FLAGS):
    # The stream's header decides (a file too broken to say is left to the image path's errors).
    if _stream_kind(args[0]) == "audio":
        result = audio.decompress_wav(args[0], args[1], _model_flag(FLAGS), FLAGS.prior)
        print(f"{args[1]}: {result['num_samples']} samples at {result['sample_rate']} Hz")
        return
    shape = decompress(args[0], args[1], _model_flag(FLAGS), FLAGS.prior)
    print(f"{args[1]}: {'x'.join(str(s) for s in shape)}")


def _stream_kind(path) -> str | None:
    """ "audio" for a version-2 `.vqz` file of kind audio, else None (the full checks come when it is decoded)."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(7)
    except OSError:
        return None
    # magic (4 bytes), version, method, kind: the fixed header of `vqvae_tf.codec.bitstream`.
    if start[:4] == MAGIC and len(start) == 7 and start[4] >= 2 and start[6] == Kind.AUDIO:
        return "audio"
    return None


def _info(args, FLAGS):
    print(json.dumps(describe(args[0]), indent=2))


def _eval(args, FLAGS):
    from vqvae_tf.codec import evaluation

    rows = evaluation.evaluate_folder(args[0], _model_flag(FLAGS, default=True), FLAGS.method, FLAGS.quality)
    print(evaluation.format_table(rows))
    if FLAGS.json:
        write_output(FLAGS.json, (json.dumps(rows, indent=2) + "\n").encode())


COMMANDS = {
    "compress": Command(("IN_IMAGE|IN.wav", "OUT.vqz"), _compress),
    "decompress": Command(("IN.vqz", "OUT.png|OUT.wav"), _decompress),
    "info": Command(("IN.vqz",), _info),
    "eval": Command(("DIR",), _eval),
}
#: Commands implemented on the training side (`vqvae_tf.export.codec_cli`), with their arguments.
PACKAGING_COMMANDS = {"package": ("EXPORT_TFLITE_DIR", "OUT_DIR"), "add-prior": ("MODEL", "PRIOR.keras")}


def define_flags():
    from absl import flags

    flags.DEFINE_string(
        "model",
        None,
        "Codec model: shipped name or directory (default: "
        f"{DEFAULT_MODEL} to compress, the file's own model to decompress).",
    )
    flags.DEFINE_enum("method", "packed", list(METHODS), "Payload coding of compress.")
    flags.DEFINE_string(
        "prior",
        None,
        "compress/decompress --method prior: a prior.tflite, or a prior.keras (needs TensorFlow); "
        "default: the model's own prior.tflite, else prior.keras (the shipped d8k512 has both, d8k512x4 the TFLite).",
    )
    flags.DEFINE_integer(
        "quality",
        None,
        "compress, eval: stages kept, 1..S for a residual model of S stages (default S; 1 only for single-stage).",
    )
    flags.DEFINE_float("bpp", None, "compress (image models): the best stream whose file is <= this bits/pixel.")
    flags.DEFINE_enum(
        "depth",
        "adaptive",
        ["adaptive", "uniform"],
        "compress --bpp (residual image models): adaptive: each position keeps the stages that pay for their bits "
        "(a variable-depth stream); uniform: the highest quality that fits, the same stages everywhere.",
    )
    flags.DEFINE_float("kbps", None, "compress (audio models): the highest quality whose file is <= this kbit/s.")
    flags.DEFINE_integer("threads", 2, "Interpreter threads.", lower_bound=1)
    flags.DEFINE_string("encoder", "int8", "package: encoder quantization to ship.")
    flags.DEFINE_string("decoder", "float16", "package: decoder quantization to ship.")
    flags.DEFINE_string("command", "", "package, add-prior: the training command to record.")
    flags.DEFINE_string(
        "photos",
        None,
        "package, add-prior: folder of the model's training photos to count codes / measure the prior's rate on "
        "(default: the bundled).",
    )
    flags.DEFINE_integer(
        "max_photos", 200, "package, add-prior --photos: photos used at most (evenly spaced).", lower_bound=1
    )
    flags.DEFINE_bool(
        "keras_copy", True, "add-prior: also write prior.keras beside prior.tflite (--nokeras_copy: the TFLite only)."
    )
    flags.DEFINE_bool(
        "overwrite", False, "package: replace an existing output directory; add-prior: replace the model's prior."
    )
    flags.DEFINE_string(
        "audio_dir",
        None,
        "package, add-prior (audio models): folder of training WAVs to count codes / measure the prior's rate on.",
    )
    flags.DEFINE_string(
        "audio_exclude",
        None,
        "package, add-prior --audio_dir: validation list (file or shipped name) of clips not to use.",
    )
    flags.DEFINE_enum(
        "prior_quantization",
        "float32",
        ["float32", "float16"],
        "add-prior (audio models): weights of prior.tflite (float16: half the bytes, its own fingerprint).",
    )
    flags.DEFINE_string(
        "preset", None, "package: a preset directory of the exported model, to ship as a Keras preset beside it."
    )
    flags.DEFINE_string("json", None, "eval: also write the results as JSON here.")
    return flags.FLAGS


def _usage() -> str:
    usage = {name: command.args for name, command in COMMANDS.items()} | PACKAGING_COMMANDS
    commands = " | ".join(" ".join((name,) + args) for name, args in usage.items())
    return f"usage: python -m vqvae_tf.codec {{{commands}}} [--flags]"


def run(argv, FLAGS, commands=COMMANDS) -> int:
    """Runs `argv` (`[program, command, *args]`) with parsed `FLAGS`; returns the exit code."""
    command = commands.get(argv[1]) if len(argv) > 1 else None
    if command is None or len(argv) != 2 + len(command.args):
        print(_usage(), file=sys.stderr)
        return 2
    command.run(argv[2:], FLAGS)
    return 0


def main(commands=COMMANDS):
    """Entry point: flags are defined here, never at import."""
    from absl import app

    FLAGS = define_flags()

    def absl_main(argv):
        try:
            code = run(argv, FLAGS, commands)
        except (ValueError, OSError, TypeError) as error:
            print(f"vqvae_tf.codec: error: {' '.join(str(error).split())}", file=sys.stderr)
            code = 2
        sys.exit(code)

    app.run(absl_main)

"""The codec's packaging commands (`python -m vqvae_tf.codec package|add-prior`), which need TensorFlow."""

from vqvae_tf.codec.cli import PACKAGING_COMMANDS, Command
from vqvae_tf.codec.model import MANIFEST
from vqvae_tf.export.codec_package import add_prior, package_model


def _package(args, FLAGS):
    out = package_model(
        args[0],
        args[1],
        encoder=FLAGS.encoder,
        decoder=FLAGS.decoder,
        command=FLAGS.command,
        overwrite=FLAGS.overwrite,
        audio_dir=FLAGS.audio_dir,
        audio_exclude=FLAGS.audio_exclude,
        photos=FLAGS.photos,
        max_photos=FLAGS.max_photos,
        preset=FLAGS.preset,
    )
    print((out / MANIFEST).read_text().strip())


def _add_prior(args, FLAGS):
    out = add_prior(
        args[0],
        args[1],
        command=FLAGS.command,
        overwrite=FLAGS.overwrite,
        keras_copy=FLAGS.keras_copy,
        photos=FLAGS.photos,
        max_photos=FLAGS.max_photos,
        audio_dir=FLAGS.audio_dir,
        audio_exclude=FLAGS.audio_exclude,
        quantization=FLAGS.prior_quantization,
    )
    print(out.with_suffix(".json").read_text().strip())


COMMANDS = {
    "package": Command(PACKAGING_COMMANDS["package"], _package),
    "add-prior": Command(PACKAGING_COMMANDS["add-prior"], _add_prior),
}

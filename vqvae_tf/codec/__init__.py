"""The on-device codec: images and speech to `.vqz` files and back, without TensorFlow.

Compressing and decompressing run exported TFLite networks through LiteRT
and NumPy (`lite_runtime`); images go through `api`, audio (arrays and WAV
files) through `audio`; the file format is `bitstream`; shipped codec
models live in `vqvae_tf/pretrained/`. The command line is
`python -m vqvae_tf.codec` (`cli`). Nothing in this package imports
TensorFlow at module level or imports the training side; the `prior` method
loads a Keras prior on demand.
"""

from vqvae_tf.codec.api import (
    DEFAULT_HALO,
    DEFAULT_TILE,
    MAX_PIXELS,
    METHODS,
    compress,
    compress_image,
    decompress,
    decompress_bytes,
    describe,
    encode_codes,
)
from vqvae_tf.codec.audio import compress_audio, compress_wav, decompress_audio, decompress_wav
from vqvae_tf.codec.bitstream.header import BitstreamError, read_header
from vqvae_tf.codec.bitstream.stream import decode_stream, encode_stream
from vqvae_tf.codec.cli import main
from vqvae_tf.codec.images import read_image, write_png
from vqvae_tf.codec.model import (
    DEFAULT_MODEL,
    MANIFEST,
    PRETRAINED_DIR,
    CodecError,
    CodecModel,
    load_model,
    shipped_models,
    stream_model_id,
)

__all__ = [
    "DEFAULT_HALO",
    "DEFAULT_MODEL",
    "DEFAULT_TILE",
    "MANIFEST",
    "MAX_PIXELS",
    "METHODS",
    "PRETRAINED_DIR",
    "BitstreamError",
    "CodecError",
    "CodecModel",
    "compress",
    "compress_audio",
    "compress_image",
    "compress_wav",
    "decode_stream",
    "decompress",
    "decompress_audio",
    "decompress_bytes",
    "decompress_wav",
    "describe",
    "encode_codes",
    "encode_stream",
    "load_model",
    "main",
    "read_header",
    "read_image",
    "shipped_models",
    "stream_model_id",
    "write_png",
]


def __getattr__(name):
    # `package_model` and `add_prior` moved to the training side (vqvae_tf.export.codec_package).
    from vqvae_tf import _compat

    return _compat.moved_attribute(__name__, name)

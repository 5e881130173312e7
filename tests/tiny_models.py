"""Tiny models and codec packages shared by the codec and export tests.

Each test module still builds its own models in its own module-scoped
fixtures (so no test waits for a model it does not use); these helpers are
the one copy of how a tiny model is built, how its codebooks get varied
codes without a slow `fit`, how it is packaged as a codec model, and how a
training fixture is made reproducible.
"""

import contextlib

import numpy as np
from PIL import Image

#: Sizes of the tiny image VQVAE (hop 4, 8-dimensional codes).
TINY_IMAGE = dict(input_channels=3, downsample=4, hidden_units=16, residual_units=8, num_residual_blocks=1, code_dim=8)
#: What every tiny waveform VQVAE (the speech network, `strides=`) shares.
TINY_SPEECH = dict(input_channels=1, rank=1, num_residual_blocks=1)


def tiny_vqvae(num_codes, quantizer="vq", *, seed=None, **overrides):
    """A `VQVAE` of the `TINY_IMAGE` sizes (any of them overridden), after `set_random_seed(seed)` unless None."""
    return _vqvae(TINY_IMAGE, num_codes, quantizer, seed, overrides)


def tiny_speech_vqvae(num_codes, quantizer="vq", *, strides, hidden_units, code_dim, seed=None, **overrides):
    """A 1-D `VQVAE` (speech network of `strides`) with one residual block, seeded as `tiny_vqvae`."""
    sizes = dict(TINY_SPEECH, strides=strides, hidden_units=hidden_units, code_dim=code_dim)
    return _vqvae(sizes, num_codes, quantizer, seed, overrides)


def _vqvae(sizes, num_codes, quantizer, seed, overrides):
    import keras

    from vqvae_tf.models.vqvae import VQVAE

    if seed is not None:
        keras.utils.set_random_seed(seed)
    return VQVAE(**{**sizes, "num_codes": num_codes, "quantizer": quantizer, **overrides})


def codebooks_from_encoder(model, inputs):
    """Builds `model` on `inputs` and sets its quantizer's codebooks by k-means on the encoder's outputs.

    Untrained, nearly every position would pick the same code; codebooks
    drawn from the encoder's own outputs make each stage's codes vary, as
    a trained model's do.
    """
    import keras

    model(inputs)
    latents = keras.ops.convert_to_numpy(model.encoder(inputs))
    model.quantizer.initialize_codebook(latents.reshape(-1, latents.shape[-1]))
    return model


def package_tiny(model, root, name, **package_options):
    """`model` exported to float32 TFLite in `root/export`, packaged as the codec model `root/name` (its path)."""
    from vqvae_tf.export import codec_package
    from vqvae_tf.export.api import export_model

    out = export_model(model, root / "export", formats=("tflite",), quantizations=("float32",))
    return codec_package.package_model(
        out / "tflite", root / name, encoder="float32", decoder="float32", **package_options
    )


@contextlib.contextmanager
def deterministic_ops():
    """TensorFlow op determinism inside the block, switched off after unless it was on before.

    The quantized-export bars are measured on fixture models trained under
    it: seeds plus deterministic kernels make them the same model in every
    run; the other tests keep the faster nondeterministic kernels.
    """
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    was_deterministic = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_deterministic:
            tf_config.disable_op_determinism()


def smooth_image(height, width, channels=3, seed=0):
    """A smooth random uint8 image (photo-like, so codes vary across it): `(height, width, 3)` or `(height, width)`."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, height // 6 + 1), max(1, width // 6 + 1), channels), dtype=np.uint8)
    image = Image.fromarray(small.squeeze(2) if channels == 1 else small).resize((width, height), Image.BILINEAR)
    return np.asarray(image)

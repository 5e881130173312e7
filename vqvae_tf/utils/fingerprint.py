"""Model fingerprints: a hash over a Keras model's config and weights.

Two ids are built on it, and files in the field depend on both bit for bit:
the exporter's model id (`model_id` below, re-exported by `vqvae_tf.export.metadata`, SHA-256 with
a path, dtype and shape header per weight, in every sidecar and `.vqz`
header) and the prior's fingerprint (`vqvae_tf.codec.prior_coding.tiled.
prior_fingerprint`, BLAKE2b, in `.vqz` method-2 streams and `prior.json`).
Any change to what is fed to the hash here changes those ids.

No TensorFlow at import time: Keras is imported when a model is hashed.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

__all__ = ["config_bytes", "model_id", "update_with_model"]


def config_bytes(model) -> bytes:
    """`model.get_config()` as JSON with sorted keys (non-JSON values as `str`)."""
    return json.dumps(model.get_config(), sort_keys=True, default=str).encode()


def update_with_model(digest, model, *, weight_headers: bool = False):
    """Feeds `model`'s config, then each weight's bytes (C order), into `digest`.

    Args:
        digest: a `hashlib` hash object; updated in place.
        model: a Keras model (anything with `get_config()` and `weights`).
        weight_headers: put `"{path}:{dtype.str}:{shape}"` before each
            weight's bytes, so that weights of other names or shapes with the
            same bytes hash differently. Defaults to False.

    Returns:
        `digest`.

    Example:

    >>> import hashlib
    >>> update_with_model(hashlib.sha256(), model).hexdigest()[:16]  # doctest: +SKIP
    """
    import keras

    digest.update(config_bytes(model))
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        if weight_headers:
            digest.update(f"{weight.path}:{value.dtype.str}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest


def model_id(model) -> str:
    """16 hex digits of SHA-256 over the model's config and all its weights (each with its path, dtype, shape).

    The exporter writes it into every sidecar and the codec into every `.vqz`
    header; a preset records it, so a preset and a codec model made from the
    same weights carry the same id.
    """
    return update_with_model(hashlib.sha256(), model, weight_headers=True).hexdigest()[:16]

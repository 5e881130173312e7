"""The exporters' command line from a checkout: `python -m export --model M.keras --out DIR`.

The exporters themselves are `vqvae_tf.export` (installed as `vqvae-export`).
`export.export_model` and the `export.<module>` paths of earlier releases
still work for one release, with a `FutureWarning`.
"""

import importlib

from vqvae_tf import _compat


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    library = importlib.import_module("vqvae_tf.export")
    if not hasattr(library, name):
        raise AttributeError(f"module 'export' has no attribute {name!r}")
    _compat.warn_moved(f"export.{name}", f"vqvae_tf.export.{name}")
    return getattr(library, name)

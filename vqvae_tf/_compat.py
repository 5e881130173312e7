"""Old module paths (before the package layout) keep importing, with a warning, for one release.

`import vqvae_tf.lite_runtime` and `from vqvae_tf.bitstream import ...` give
the module's new home (`vqvae_tf.codec.lite_runtime`, ...) and a
`FutureWarning` naming it. A meta-path finder does this for every moved
module, so no file stands at the old path; `python -m vqvae_tf.sample`, which
needs a real file, has one (`vqvae_tf/sample.py`).
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: Old dotted path -> new dotted path. Removed in the release after 0.2.
MOVED = {
    "vqvae_tf.atomic": "vqvae_tf.utils.atomic",
    "vqvae_tf.image_grid": "vqvae_tf.utils.image_grid",
    "vqvae_tf.distributed_ops": "vqvae_tf.utils.distributed_ops",
    "vqvae_tf.residual_quantizer": "vqvae_tf.quantizers.residual",
    "vqvae_tf.fsq": "vqvae_tf.quantizers.fsq",
    "vqvae_tf.gumbel_quantizer": "vqvae_tf.quantizers.gumbel",
    "vqvae_tf.code_search": "vqvae_tf.quantizers.code_search",
    "vqvae_tf.codebook_init": "vqvae_tf.quantizers.codebook_init",
    "vqvae_tf.rotation": "vqvae_tf.quantizers.rotation",
    "vqvae_tf.networks": "vqvae_tf.models.networks",
    "vqvae_tf.vqvae": "vqvae_tf.models.vqvae",
    "vqvae_tf.gaussian_vae": "vqvae_tf.models.gaussian_vae",
    "vqvae_tf.image_inputs": "vqvae_tf.models.image_inputs",
    "vqvae_tf.metrics": "vqvae_tf.models.metrics",
    "vqvae_tf.prior": "vqvae_tf.priors",
    "vqvae_tf.pixelcnn": "vqvae_tf.priors.pixelcnn",
    "vqvae_tf.transformer_prior": "vqvae_tf.priors.transformer",
    "vqvae_tf.stage_tokens": "vqvae_tf.priors.stage_tokens",
    "vqvae_tf.image_io": "vqvae_tf.data.image_io",
    "vqvae_tf.config": "vqvae_tf.training.config",
    "vqvae_tf.callbacks": "vqvae_tf.training.callbacks",
    "vqvae_tf.distribute": "vqvae_tf.training.distribute",
    "vqvae_tf.prior_training": "vqvae_tf.training.prior_training",
    "vqvae_tf.codec_model": "vqvae_tf.codec.model",
    "vqvae_tf.codec_eval": "vqvae_tf.codec.evaluation",
    "vqvae_tf.bitstream": "vqvae_tf.codec.bitstream",
    "vqvae_tf.prior_coding": "vqvae_tf.codec.prior_coding",
    "vqvae_tf.tiling": "vqvae_tf.codec.tiling",
    "vqvae_tf.lite_runtime": "vqvae_tf.codec.lite_runtime",
    "export.errors": "vqvae_tf.export.errors",
    "export.metadata": "vqvae_tf.export.metadata",
    "export.onnx_export": "vqvae_tf.export.onnx",
    "export.opsets": "vqvae_tf.export.opsets",
    "export.representative": "vqvae_tf.export.representative",
    "export.saved_model": "vqvae_tf.export.saved_model",
    "export.tflite": "vqvae_tf.export.tflite",
}


#: (module, attribute) -> the module that holds the attribute now.
MOVED_ATTRIBUTES = {
    ("vqvae_tf.codec", "package_model"): "vqvae_tf.export.codec_package",
    ("vqvae_tf.codec", "add_prior"): "vqvae_tf.export.codec_package",
}


def moved_attribute(module, name):
    """A module `__getattr__` for attributes in `MOVED_ATTRIBUTES`; AttributeError for others."""
    new = MOVED_ATTRIBUTES.get((module, name))
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warn_moved(f"{module}.{name}", f"{new}.{name}")
    return getattr(importlib.import_module(new), name)


def warn_moved(old, new, stacklevel=3):
    warnings.warn(
        f"{old} moved to {new}; the old path stops working in the next release", FutureWarning, stacklevel=stacklevel
    )


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new):
        self.new = new

    def create_module(self, spec):
        # warnings skips importlib's own frames: level 3 is the importing line.
        warn_moved(spec.name, self.new, stacklevel=3)
        return importlib.import_module(self.new)

    def exec_module(self, module):
        # The module is the new one, already executed; nothing to run again.
        pass


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install():
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.append(_AliasFinder())

"""SavedModel for serving: `encode`, `decode` and `reconstruct` signatures.

The archive is written with `keras.export.ExportArchive`, so reloading it
needs TensorFlow only (no Keras, no `vqvae_tf`). Every endpoint is traced
with `autograph=False` (docs/design.md, fact 9) and accepts any batch and any
spatial size that is a multiple of the model's downsampling factor.

| signature                        | input                                  | output                                 |
|----------------------------------|----------------------------------------|----------------------------------------|
| `reconstruct`, `serving_default` | `images` float32 (B, H, W, C) in [0,1] | `reconstruction` float32 (B, H, W, C)  |
| `encode`                         | `images` float32 (B, H, W, C) in [0,1] | `codes` int32 (B, H/f, W/f) in [0, K)  |
| `decode`                         | `codes` int32 (B, H/f, W/f)            | `images` float32 (B, H, W, C)          |

(f = downsampling factor, K = number of codes; sequence models, rank 1,
drop the W axis.)

Inspect and run it with the tools that ship with TensorFlow:

    saved_model_cli show --dir OUT/saved_model --all
    saved_model_cli run --dir OUT/saved_model --tag_set serve \\
        --signature_def encode --input_exprs 'images=np.random.rand(1,32,32,3).astype("float32")'
    saved_model_cli run --dir OUT/saved_model --tag_set serve \\
        --signature_def decode --input_exprs 'codes=np.zeros((1,8,8),"int32")'

TF Serving (`tensorflow_model_server --rest_api_port=8501
--model_name=vqvae --model_base_path=/models/vqvae`, with the SavedModel
copied to `/models/vqvae/1/`) takes these REST bodies at
`POST /v1/models/vqvae:predict` (nested lists; a 2x2 image here, real
inputs must be multiples of the factor):

    {"signature_name": "encode",
     "inputs": {"images": [[[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]],
                            [[0.7, 0.8, 0.9], [1.0, 0.0, 0.5]]]]}}
    -> {"outputs": [[[17]]]}                  (int32 codes, B x H/f x W/f)

    {"signature_name": "decode", "inputs": {"codes": [[[17, 3], [5, 0]]]}}
    -> {"outputs": [[[[r, g, b], ...]]]}      (float32 images in [0, 1])

    {"signature_name": "reconstruct", "inputs": {"images": [...]}}
    -> {"outputs": [...]}                     (same as serving_default)
"""

import logging

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)

#: Signature names, in registration order (the first is `serving_default`).
SIGNATURES = ("reconstruct", "encode", "decode")
#: Input and output tensor names of each signature.
SIGNATURE_IO = {
    "reconstruct": ("images", "reconstruction"),
    "encode": ("images", "codes"),
    "decode": ("codes", "images"),
}


def image_spec(model, batch=None, size=None):
    """TensorSpec of the images a model takes; `None` dims are dynamic."""
    return tf.TensorSpec([batch] + [size] * model.rank + [model.input_channels], tf.float32, name="images")


def code_axes(model):
    """Trailing axes of a code map per position (`quantizer.code_shape`): () for one code."""
    return tuple(int(n) for n in getattr(model.quantizer, "code_shape", ()))


def code_spec(model, batch=None, size=None):
    """TensorSpec of the code maps a model takes; `None` dims are dynamic."""
    return tf.TensorSpec([batch] + [size] * model.rank + list(code_axes(model)), tf.int32, name="codes")


def endpoint_functions(model):
    """The three endpoints as plain Python callables returning named dicts."""

    # decode(encode(x)) rather than model(x): the same numbers without the
    # training-only ops (losses, histograms) of the quantizer's call().
    def reconstruct(images):
        return {"reconstruction": model.decode_codes(model.codes(images))}

    def encode(images):
        return {"codes": model.codes(images)}

    def decode(codes):
        return {"images": model.decode_codes(codes)}

    return {"reconstruct": reconstruct, "encode": encode, "decode": decode}


def input_specs(model, batch=None, size=None):
    """Input TensorSpec of each signature."""
    images, codes = image_spec(model, batch, size), code_spec(model, batch, size and size // model.downsample)
    return {"reconstruct": images, "encode": images, "decode": codes}


def write_saved_model(model, path):
    """Writes `model` as a SavedModel with the signatures above to `path`.

    Args:
        model: a built `vqvae_tf.VQVAE`.
        path: directory to create (must not exist).
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    functions, specs = endpoint_functions(model), input_specs(model)
    for name in SIGNATURES:
        archive.add_endpoint(name, functions[name], input_signature=[specs[name]])
    archive.write_out(str(path), verbose=False)
    logger.info("Wrote SavedModel with signatures %s to %s.", ", ".join(SIGNATURES), path)

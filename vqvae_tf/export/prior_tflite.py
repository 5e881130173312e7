"""A GatedPixelCNN prior as TFLite: logits position by position, computing only what each position needs.

Decoding a code map position by position with the whole prior costs one
full forward pass per position. In a gated PixelCNN with `L` layers and
kernel `k` (`h = k // 2`, reach `L*h`) the logits at `(r, c)` depend only on
the codes of rows `r - L*h - 1 .. r - 1` (columns `c - L*h .. c + L*h`) and
of row `r` left of `c` (columns `c - L*h - 1 .. c - 1`), and the vertical
stacks at row `r` depend on the rows above only. So the export has two
signatures:

* `rows` (`row_features`): once per map row, the vertical stacks'
  pre-activations at that row for every column ('valid' convolutions over
  the `L*h + 1` rows above);
* `position` (`position_logits`): once per position, the horizontal stacks
  on the row's codes left of it and the head.

The model's zero padding at the map's edges is reproduced by masks of the
window positions inside the map (every feature map is zero outside the map,
as the full model's `ops.pad` makes it). The logits equal the whole prior's
(bit-exact in Keras for `d8k512`'s prior; within 1e-5 through LiteRT, tested).
`vqvae_tf.codec.prior_coding.lite_prior.LitePrior` runs the file with LiteRT
and NumPy.
"""

from __future__ import annotations

import tensorflow as tf

from vqvae_tf.export.errors import ExportError

__all__ = [
    "check_exportable",
    "convert_endpoints",
    "convert_prior",
    "position_logits",
    "row_features",
    "split_geometry",
]


def check_exportable(prior, cls):
    """`ExportError` unless `prior` is an unconditional `cls` (the codec codes without labels)."""
    if not isinstance(prior, cls):
        raise ExportError(f"this TFLite prior export supports {cls.__name__}; received {type(prior).__name__}")
    if prior.num_classes:
        raise ExportError(f"the codec needs an unconditional prior; received one with {prior.num_classes} classes")


def _check(prior):
    from vqvae_tf.priors.pixelcnn import GatedPixelCNN

    check_exportable(prior, GatedPixelCNN)


def row_features(prior, codes, mask):
    """Signature `rows`: the vertical stacks' pre-activations at one row, for every column.

    `codes` int32 `(N, L*h + 2, W + 2*L*h + 1)`: map rows `r - L*h - 1 .. r`
    (row `r` unread) and columns `-L*h - 1 .. W - 1 + L*h`; `mask` float32 of
    the same window (1 inside the map). Returns float32 `(N, L, W, 2C)`: layer
    `l`'s vertical pre-activation at row `r`, columns `0 .. W-1`. They depend
    on the rows above only, so a decoder computes them once per row.
    """
    _check(prior)
    half, reach = prior.kernel_size // 2, prior.num_layers * (prior.kernel_size // 2)
    width = prior.map_shape[1]
    mask = tf.cast(mask, tf.float32)[None, :, :, None]
    embedded = prior.code_embedding(codes) * mask
    vertical, v_mask, rows = embedded[:, :-1], mask[:, 1:], []
    for layer, block in enumerate(prior.blocks, start=1):
        v_pre = block.vertical_conv(vertical)
        first = reach + 1 - layer * half  # v_pre's index of map column 0
        rows.append(v_pre[:, -1, first : first + width])
        v_mask = v_mask[:, half:, half : v_mask.shape[2] - half]
        vertical = block._gate(v_pre) * v_mask
    return tf.stack(rows, axis=1)


def position_logits(prior, codes, vertical, mask):
    """Signature `position`: the logits at `(r, c)` from row `r`'s codes on its left and `row_features`.

    `codes` int32 `(N, L*h + 1)`: row `r`, columns `c - L*h - 1 .. c - 1`;
    `vertical` float32 `(N, L, L*h + 1, 2C)`: `row_features` at columns
    `c - L*h .. c`; `mask` float32 `(L*h + 2,)`: columns `c - L*h - 1 .. c`
    inside the map. Returns float32 logits `(N, K)`.
    """
    _check(prior)
    half = prior.kernel_size // 2
    mask = tf.cast(mask, tf.float32)[None, None, :, None]
    horizontal = prior.code_embedding(codes)[:, None] * mask[:, :, :-1]  # h_0 at columns c - L*h .. c
    h_mask, skip = mask[:, :, 1:], 0
    for layer, block in enumerate(prior.blocks):
        skip += half
        h_pre = block.horizontal_conv(horizontal) + block.vertical_to_horizontal(vertical[:, layer : layer + 1, skip:])
        horizontal = horizontal[:, :, half:] + block.horizontal_out(block._gate(h_pre))
        h_mask = h_mask[:, :, half:]
        horizontal = horizontal * h_mask
    hidden = prior.head_hidden(tf.nn.relu(horizontal[:, 0, -1])[:, None, None, :])
    return prior.head_logits(hidden)[:, 0, 0]


def split_geometry(prior):
    """`(reach, width)`: `L*h` and the map width, which size the inputs of `rows` and `position`."""
    return prior.num_layers * (prior.kernel_size // 2), prior.map_shape[1]


def convert_prior(prior, quantization: str = "float32") -> bytes:
    """The TFLite flatbuffer of `prior`: signatures `rows` and `position` (builtins only).

    `rows` (`row_features`) runs once per map row, `position`
    (`position_logits`) once per position; together they compute the same
    logits as the whole prior (to float rounding), with the vertical stacks computed
    once per row instead of once per position.
    """
    _check(prior)
    reach, width = split_geometry(prior)
    channels = 2 * prior.channels
    endpoints = {
        "rows": (
            lambda codes, mask: {"vertical": row_features(prior, codes, mask)},
            [
                tf.TensorSpec((None, reach + 2, width + 2 * reach + 1), tf.int32, name="codes"),
                tf.TensorSpec((reach + 2, width + 2 * reach + 1), tf.float32, name="mask"),
            ],
        ),
        "position": (
            lambda codes, vertical, mask: {"logits": position_logits(prior, codes, vertical, mask)},
            [
                tf.TensorSpec((None, reach + 1), tf.int32, name="codes"),
                tf.TensorSpec((None, prior.num_layers, reach + 1, channels), tf.float32, name="vertical"),
                tf.TensorSpec((reach + 2,), tf.float32, name="mask"),
            ],
        ),
    }
    layers = [prior.code_embedding, *prior.blocks, prior.head_hidden, prior.head_logits]
    return convert_endpoints(layers, endpoints, quantization)


def convert_endpoints(layers, endpoints, quantization: str = "float32") -> bytes:
    """TFLite bytes of `endpoints` computed by `layers`, one signature per endpoint, builtin ops only.

    Shared by the priors' exports. The endpoints go through a SavedModel
    (`keras.export.ExportArchive`), whose signature keys become the TFLite
    signatures.

    Args:
        layers: the Keras layers whose variables the endpoints read. The
            layers, not the model: tracking a model adds a default endpoint
            that calls it on floats.
        endpoints: dict `name -> (fn, input_signature)`; `fn` returns a dict
            of named outputs, `input_signature` is a list of named
            `tf.TensorSpec` (the signature's input names).
        quantization: `"float32"` or `"float16"` (float16 weights).

    Returns:
        The flatbuffer bytes.

    Raises:
        ExportError: another quantization. A graph that needs ops outside
            `TFLITE_BUILTINS` (Flex ops) fails in the converter instead of
            producing a file that needs the TensorFlow runtime.
    """
    import tempfile

    import keras

    if quantization not in ("float32", "float16"):
        raise ExportError(f"prior quantization must be 'float32' or 'float16'; received {quantization!r}")
    archive = keras.export.ExportArchive()
    for layer in layers:
        archive.track(layer)
    for name, (fn, signature) in endpoints.items():
        archive.add_endpoint(name, fn, input_signature=signature)
    with tempfile.TemporaryDirectory() as directory:
        archive.write_out(directory, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=list(endpoints))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantization == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()

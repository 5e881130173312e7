"""A GatedPixelCNN prior as a TFLite "cone" model: the logits of ONE position per call, for a batch of maps.

Decoding a code map position by position with the whole prior costs one
full forward pass per position. The logits at `(r, c)` of a gated PixelCNN
with `L` layers and kernel `k` (`h = k // 2`) depend only on the codes of a
window of `R = L*h + 2` rows (`r - L*h - 1 .. r`) and `2*L*h + 2` columns
(`c - L*h - 1 .. c + L*h`), and only a cone of that window is needed: each
layer's vertical convolution shrinks the region by `h` on each side
('valid' convolutions), the horizontal stack runs on the last row only. The
exported function computes exactly that cone (about an eighth of the
window's work for `d8k512`'s prior), with the model's zero padding at the
map's edges reproduced by a mask of the window positions inside the map
(every feature map is zero outside the map, as the full model's `ops.pad`
makes it).

Inputs `codes` int32 `(N, R, W_win)` (the window, any value
outside the map), `mask` float32 `(R, W_win)` (1 inside the map) ->
`logits` float32 `(N, K)` at the window's position `(L*h + 1, L*h + 1)`.
`vqvae_tf.codec.prior_coding.lite_prior.LitePrior` runs it (LiteRT + NumPy).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vqvae_tf.export.errors import ExportError

__all__ = ["cone_geometry", "cone_logits", "convert_prior", "window_mask"]


def cone_geometry(prior):
    """`(rows, cols, target)` of the window: `target` is the coded position's `(row, col)` in it."""
    reach = prior.num_layers * (prior.kernel_size // 2)
    return reach + 2, 2 * reach + 2, (reach + 1, reach + 1)


def _check(prior):
    from vqvae_tf.priors.pixelcnn import GatedPixelCNN

    if not isinstance(prior, GatedPixelCNN):
        raise ExportError(f"the TFLite prior export supports GatedPixelCNN; received {type(prior).__name__}")
    if prior.num_classes:
        raise ExportError(f"the codec needs an unconditional prior; received one with {prior.num_classes} classes")


def cone_logits(prior, codes, mask):
    """The prior's logits at the window's target position: codes `(N, R, Wn)`, mask `(R, Wn)` -> `(N, K)`."""
    _check(prior)
    half = prior.kernel_size // 2
    rows, cols, (target_row, target_col) = cone_geometry(prior)
    mask = tf.reshape(tf.cast(mask, tf.float32), (1, rows, cols, 1))
    embedded = prior.code_embedding(codes) * mask
    # Vertical stack: v_0 at window rows 1..R-1 is the embedding of the row above (zero outside the map).
    vertical = embedded[:, : rows - 1]
    v_mask = mask[:, 1:]
    # Horizontal stack on the target row: h_0 at cols 1..target is the embedding of the code on the left.
    horizontal = embedded[:, rows - 1 :, :target_col]
    h_mask, h_first = mask[:, rows - 1 :, 1 : target_col + 1], 1
    for layer, block in enumerate(prior.blocks, start=1):
        v_pre = block.vertical_conv(vertical)  # valid: rows (1 + layer*h).., cols layer*h .. cols-1-layer*h
        v_first_col = layer * half
        # The target row of v_pre, at the columns the horizontal stack keeps (h_first + half .. target).
        h_first_new = h_first + half
        v_row = v_pre[:, -1:, h_first_new - v_first_col : target_col + 1 - v_first_col]
        h_pre = block.horizontal_conv(horizontal) + block.vertical_to_horizontal(v_row)
        horizontal = horizontal[:, :, half:] + block.horizontal_out(block._gate(h_pre))
        h_mask = h_mask[:, :, half:]
        horizontal = horizontal * h_mask
        h_first = h_first_new
        v_mask = v_mask[:, half:, half : v_mask.shape[2] - half]
        vertical = block._gate(v_pre) * v_mask
    del target_row
    features = horizontal[:, 0, -1]
    hidden = prior.head_hidden(tf.nn.relu(features)[:, None, None, :])
    return prior.head_logits(hidden)[:, 0, 0]


def convert_prior(prior, quantization: str = "float32") -> bytes:
    """The TFLite flatbuffer of `prior`'s cone function (builtins only)."""
    _check(prior)
    if quantization not in ("float32", "float16"):
        raise ExportError(f"prior quantization must be 'float32' or 'float16'; received {quantization!r}")
    rows, cols, _ = cone_geometry(prior)

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, rows, cols), tf.int32, name="codes"),
            tf.TensorSpec((rows, cols), tf.float32, name="mask"),
        ]
    )
    def logits(codes, mask):
        return {"logits": cone_logits(prior, codes, mask)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([logits.get_concrete_function()], prior)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def window_mask(prior, row, col):
    """float32 `(R, Wn)`: which window positions around `(row, col)` lie inside the prior's map."""
    rows, cols, (target_row, target_col) = cone_geometry(prior)
    height, width = prior.map_shape
    r = np.arange(rows)[:, None] + row - target_row
    c = np.arange(cols)[None, :] + col - target_col
    return ((r >= 0) & (r < height) & (c >= 0) & (c < width)).astype(np.float32)

"""A TransformerPrior as TFLite: one `step` signature that decodes a token with a key/value cache.

Coding a token sequence with the prior needs the logits at every position
given the tokens before it. The decoder only knows those tokens one at a
time, so the file computes one position per call, exactly as the Keras
prior's cached sampler (`TransformerPrior._sample_cached`) does: the input
at step `t` is the learned start token (`t == 0`) or the embedding of the
token at `t - 1`, plus the position embedding of `t`, through every block's
`CausalTransformerBlock.step`, then `head(final_norm(x))`.

Signature `step`:

* inputs: `previous` int32 `(B,)`, the tokens at `t - 1` (ignored at
  `t == 0`); `position` int32 scalar `t`; `cache` float32
  `(2 * layers, B, heads, T, head_dim)`, the keys (`2 * l`) and values
  (`2 * l + 1`) of layer `l` at the positions `< t` (zeros elsewhere; zeros
  everywhere at `t == 0`);
* outputs: `logits` float32 `(B, K)` at `t`, and `cache` with slot `t`
  filled.

The cache is one explicit tensor in and out rather than TFLite resource
variables or one tensor per layer: the whole decoder state is a single
NumPy array the caller owns (a decoder can keep, copy or discard it), and
the interface does not change with the number of layers. Rank 5 keeps
every op inside the ranks LiteRT's builtin kernels support. The batch `B`
is dynamic (LiteRT resizes the inputs per call). Builtin ops only (no
Flex), checked after conversion.

`vqvae_tf.codec.prior_coding.lite_transformer.LiteTransformerPrior` runs
the file with LiteRT and NumPy. Its logits match the Keras full pass
within 1e-5 (tested; measured 9e-7 on the test's small random prior and
7e-7 on a random one of the speech prior's size, K = 6144, T = 150, D = 128,
4 layers: below `quantized.MARGIN`, 1.5e-5 nats).

Example:

```python
prior = TransformerPrior(num_codes=1024 * 6, map_shape=(1, 150), num_layers=4)
convert_transformer_prior(prior, "speech_prior.tflite")
```
"""

from __future__ import annotations

import tensorflow as tf

from vqvae_tf.export import tflite_graph
from vqvae_tf.export.errors import ExportError
from vqvae_tf.export.prior_tflite import check_exportable, convert_endpoints

__all__ = ["SIGNATURE", "cache_shape", "convert_transformer_prior", "step_logits"]

#: The one signature of the file.
SIGNATURE = "step"


def _check(prior):
    from vqvae_tf.priors.transformer import TransformerPrior

    check_exportable(prior, TransformerPrior)


def cache_shape(prior, batch=None):
    """`(2 * layers, batch, heads, T, head_dim)`: the `cache` of `step` for `batch` sequences.

    `T = H * W` of the prior's `map_shape`. `batch=None` gives the
    signature's dynamic shape.
    """
    _check(prior)
    height, width = prior.map_shape
    return (2 * prior.num_layers, batch, prior.num_heads, height * width, prior.embed_dim // prior.num_heads)


def step_logits(prior, previous, position, cache):
    """Signature `step`: the logits at `position` and the cache with that position filled.

    Args:
        prior: an unconditional `TransformerPrior`.
        previous: int32 `(B,)`, the tokens at `position - 1` (any valid
            code at position 0, where the start token is used).
        position: int32 scalar `t`, `0 <= t < T` (the caller checks).
        cache: float32 `cache_shape(prior, B)`, filled at positions `< t`,
            zero at `t` and after.

    Returns:
        dict: `logits` float32 `(B, K)`, `cache` float32 like `cache`.
    """
    _check(prior)
    # The Keras cached sampler's own step, so the float operations (and
    # their order) are those of `TransformerPrior._sample_cached`.
    layers = tf.unstack(cache, num=2 * prior.num_layers, axis=0)
    pairs = tuple(zip(layers[0::2], layers[1::2]))
    start = prior._start(None, tf.shape(previous)[0])
    logits, pairs = prior._cached_step(start, prior._positions(), previous, position, pairs)
    return {"logits": logits, "cache": tf.stack([tensor for pair in pairs for tensor in pair], axis=0)}


def convert_transformer_prior(prior, path=None, quantization: str = "float32") -> bytes:
    """The TFLite flatbuffer of `prior` with the signature `step` (builtin ops, dynamic batch).

    Args:
        prior: an unconditional `TransformerPrior` (built: call it once or
            load it).
        path: optional file to write the bytes to (atomically).
        quantization: `"float32"` or `"float16"` (float16 weights, computed
            in float32: half the bytes; its logits differ from the Keras
            prior's by more than `quantized.MARGIN`, so it codes streams of
            its own, see `vqvae_tf.export.codec_package.add_prior`).

    Returns:
        The flatbuffer bytes.

    Raises:
        ExportError: `prior` is not a `TransformerPrior`, is conditional or
            not built, or the converted model holds custom (Flex) ops.

    Example:

    ```python
    lite = LiteTransformerPrior(convert_transformer_prior(prior))
    lite.logits(tokens)  # tokens (B, T_used) -> (B, T_used, K)
    ```
    """
    _check(prior)
    if not prior.built:
        raise ExportError(f"the prior must be built (call it once on codes {prior.map_shape}); received an unbuilt one")
    signature = [
        tf.TensorSpec((None,), tf.int32, name="previous"),
        tf.TensorSpec((), tf.int32, name="position"),
        tf.TensorSpec(cache_shape(prior), tf.float32, name="cache"),
    ]
    endpoint = (lambda previous, position, cache: step_logits(prior, previous, position, cache), signature)
    # `start_token` is a weight of the model itself, not of a layer: the
    # archive tracks the variables an endpoint reads on its own.
    layers = [prior.code_embedding, prior.row_embedding, prior.column_embedding, *prior.blocks]
    model_bytes = convert_endpoints([*layers, prior.final_norm, prior.head], {SIGNATURE: endpoint}, quantization)
    custom = tflite_graph.custom_ops(model_bytes)
    if custom:
        raise ExportError(f"the converted Transformer prior needs custom ops {custom}; expected builtin ops only")
    if path is not None:
        from vqvae_tf.utils import atomic

        atomic.write_bytes(path, model_bytes)
    return model_bytes

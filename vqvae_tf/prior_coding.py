"""Lossless entropy coding of code maps with an autoregressive prior.

Each code `z_i` of a map is coded with the prior's conditional distribution
`p(z_i | z_<i)` by an ANS coder (`constriction.stream.stack.AnsCoder` with
`constriction.stream.model.Categorical(perfect=False)`), so a map costs about
its prior NLL in bits (plus under 32 bits of coder state) instead of
`H * W * ceil(log2 K)` bits.

Encoding needs ONE forward pass: the prior is causal, so the logits at every
position given the true codes come out together. Decoding runs the prior
once per raster position on the partially decoded maps (the not-yet-decoded
positions hold 0, which a causal prior never looks at) and pops the codes of
that position from the stack.

Determinism, the one thing an entropy coder cannot get wrong: the decoder
must build bit-identical probability tables. Both sides therefore

1. run the SAME traced function (`tf.function` around the prior) on the CPU
   in float32, on inputs of the same shape `(N, H, W)`: a causal network's
   output at position i is then a function of the codes before i computed by
   the same kernels in the same order (tested bit-exact for `GatedPixelCNN`
   and `TransformerPrior`); the KV cache and the PixelCNN's row-cropped
   sampler use other shapes, hence other kernels, and are NOT used;
2. convert the logits of one position `(N, K)` to float64 probabilities with
   the same NumPy procedure (`probabilities_from_logits`) on an array of the
   same shape;
3. let constriction quantise them (deterministic for identical float64
   input).

Bit-identical logits across machines with different CPUs, thread counts or
TensorFlow builds are not guaranteed (no learned entropy coder can promise
that without integer arithmetic): code and decode with the same software
stack, and rely on the checksum (or the `.vqz` CRC) to turn a mismatch into
an error instead of wrong codes.

Payload (standalone, `checksum=True`): the ANS words as little-endian uint32,
then 4 bytes: CRC32 of the decoded codes (int32, little-endian, C order).
Inside a `.vqz` stream (method 2, see `encode_prior_payload`) the stream's
own CRC covers the bytes, so the payload is the words alone.
"""

from __future__ import annotations

import hashlib
import json
import struct
import weakref
import zlib

import numpy as np

__all__ = [
    "PriorCodingError",
    "decode_codes",
    "decode_prior_payload",
    "encode_codes",
    "encode_prior_payload",
    "prior_fingerprint",
    "probabilities_from_logits",
]

#: Method parameters of a `.vqz` method-2 stream: 8-byte prior fingerprint,
#: then the class label as uint16 (`NO_LABEL` for an unconditional prior).
PARAMS = struct.Struct("<8sH")
NO_LABEL = 0xFFFF
_FINGERPRINT_SIZE = 8
_CRC = struct.Struct("<I")
# One traced logits function per prior (weak keys: dies with the prior).
_LOGITS_FUNCTIONS = weakref.WeakKeyDictionary()


class PriorCodingError(ValueError):
    """A payload cannot be decoded with this prior, or bad arguments to code one."""


# ----------------------------------------------------------------------------
# The shared, deterministic probability model


def probabilities_from_logits(logits):
    """float32 logits `(n, K)` -> float64 probabilities `(n, K)`, deterministically.

    Softmax in float64 after subtracting the row maximum. Encoder and decoder
    call this on arrays of the same shape, so NumPy's reductions run in the
    same order and the tables are bit-identical.
    """
    x = np.array(logits, dtype=np.float64, order="C")
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def _logits_function(prior):
    """`codes (N, H, W) int32, labels -> float32 logits (N, H, W, K)` as NumPy."""
    import keras
    import tensorflow as tf

    if not isinstance(prior, keras.Model):
        # e.g. `UnigramPrior`: plain NumPy-backed logits, already deterministic.
        return lambda codes, labels: np.asarray(prior.logits(codes, labels), np.float32)
    function = _LOGITS_FUNCTIONS.get(prior)
    if function is None:

        @tf.function(autograph=False)
        def traced(codes, labels):
            return tf.cast(prior(codes, labels, training=False), tf.float32)

        def function(codes, labels):
            with tf.device("/CPU:0"):
                labels = None if labels is None else tf.constant(labels, tf.int32)
                return traced(tf.constant(codes, tf.int32), labels).numpy()

        _LOGITS_FUNCTIONS[prior] = function
    return function


def _check_prior(prior):
    for name in ("num_codes", "num_classes", "logits"):
        if not hasattr(prior, name):
            raise TypeError(
                "`prior` must be an autoregressive prior (GatedPixelCNN, TransformerPrior, "
                f"UnigramPrior); received {type(prior).__name__} without `{name}`."
            )


def _check_map_shape(prior, map_shape):
    if not isinstance(map_shape, (tuple, list)) or len(map_shape) not in (2, 3) or any(
        isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in map_shape
    ):
        raise PriorCodingError(
            f"`map_shape` must be (H, W) or (N, H, W) with positive ints; received {map_shape!r}."
        )
    expected = getattr(prior, "map_shape", None)
    if expected is not None and tuple(map_shape[-2:]) != tuple(expected):
        raise PriorCodingError(
            f"this prior codes maps of size {tuple(expected)}; received map_shape {tuple(map_shape)}."
        )
    return tuple(int(s) for s in map_shape)


def _check_codes(prior, codes):
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise PriorCodingError(f"`codes` must be integers; received dtype {codes.dtype}.")
    _check_map_shape(prior, codes.shape)
    if codes.min() < 0 or codes.max() >= prior.num_codes:
        raise PriorCodingError(
            f"`codes` must be in [0, {prior.num_codes}); received values in "
            f"[{codes.min()}, {codes.max()}]."
        )
    return codes.astype(np.int32)


def _check_labels(prior, labels, batch, single):
    if prior.num_classes == 0:
        if labels is not None:
            raise PriorCodingError("this prior is unconditional (num_classes=0); expected labels=None.")
        return None
    if labels is None:
        raise PriorCodingError(
            f"this prior is class-conditional (num_classes={prior.num_classes}); pass the "
            "label(s) the codes were coded with."
        )
    labels = np.asarray(labels)
    if single and labels.ndim == 0:
        labels = labels[None]
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (batch,):
        raise PriorCodingError(
            f"`labels` must be {'an int or ' if single else ''}integers of shape ({batch},); "
            f"received {labels.dtype} of shape {labels.shape}."
        )
    if labels.min() < 0 or labels.max() >= prior.num_classes:
        raise PriorCodingError(
            f"`labels` must be in [0, {prior.num_classes}); received values in "
            f"[{labels.min()}, {labels.max()}]."
        )
    return labels.astype(np.int32)


def _categorical():
    import constriction

    return constriction.stream.model.Categorical(perfect=False)


# ----------------------------------------------------------------------------
# Encoding and decoding


def encode_codes(prior, codes, labels=None, *, checksum=True):
    """Entropy-codes code maps with the prior's conditional distributions.

    Args:
        prior: a trained prior (`GatedPixelCNN`, `TransformerPrior` or
            `UnigramPrior`); the decoder must hold the same weights.
        codes: integer array `(H, W)` (one map) or `(N, H, W)`, values in
            `[0, prior.num_codes)`.
        labels: for a class-conditional prior, an int (one map) or ints
            `(N,)`; else None.
        checksum: append the CRC32 of the codes (4 bytes) so that a corrupt
            payload or another prior fails to decode instead of giving wrong
            codes. Defaults to True; a `.vqz` stream has its own CRC and
            passes False.

    Returns:
        `bytes`: the payload (see the module docstring for the layout).

    Raises:
        PriorCodingError: bad codes or labels.

    Example:

    >>> payload = encode_codes(prior, codes)             # codes (7, 7)
    >>> np.array_equal(decode_codes(prior, payload, (7, 7)), codes)
    True
    """
    _check_prior(prior)
    codes = _check_codes(prior, codes)
    single = codes.ndim == 2
    batch = codes[None] if single else codes
    labels = _check_labels(prior, labels, batch.shape[0], single)
    logits = _logits_function(prior)(batch, labels)
    n, height, width = batch.shape
    symbols = np.empty((height * width, n), np.int32)
    tables = np.empty((height * width, n, prior.num_codes), np.float64)
    for t in range(height * width):
        row, col = divmod(t, width)
        symbols[t] = batch[:, row, col]
        tables[t] = probabilities_from_logits(logits[:, row, col])
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    # Reverse-pushed, so the codes pop in raster order, all maps of a
    # position at a time: the order the decoder can compute them in.
    coder.encode_reverse(symbols.reshape(-1), _categorical(), tables.reshape(-1, prior.num_codes))
    payload = coder.get_compressed().astype("<u4").tobytes()
    if checksum:
        payload += _CRC.pack(_crc(batch))
    return payload


def decode_codes(prior, payload, map_shape, labels=None, *, checksum=True):
    """Decodes a payload of `encode_codes` back into the exact code maps.

    Args:
        prior: the prior the payload was coded with (same weights).
        payload: bytes from `encode_codes`.
        map_shape: `(H, W)` for one map or `(N, H, W)`, as encoded.
        labels: the label(s) used when encoding, or None.
        checksum: whether the payload ends with the codes' CRC32 (must match
            `encode_codes`). Defaults to True.

    Returns:
        int32 array of shape `map_shape`.

    Raises:
        PriorCodingError: a truncated or corrupt payload, a checksum
            mismatch (another prior or corrupted data), or bad arguments.
    """
    import constriction

    _check_prior(prior)
    map_shape = _check_map_shape(prior, map_shape)
    single = len(map_shape) == 2
    n, height, width = (1,) + map_shape if single else map_shape
    labels = _check_labels(prior, labels, n, single)
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise PriorCodingError(f"`payload` must be bytes; received {type(payload).__name__}.")
    payload = bytes(payload)
    stored_crc = None
    if checksum:
        if len(payload) < _CRC.size:
            raise PriorCodingError(f"truncated payload: {len(payload)} bytes, expected at least {_CRC.size}.")
        (stored_crc,) = _CRC.unpack(payload[-_CRC.size:])
        payload = payload[: -_CRC.size]
    if len(payload) % 4:
        raise PriorCodingError(
            f"corrupt payload: the coded part is {len(payload)} bytes, expected a multiple of 4."
        )
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    logits_of = _logits_function(prior)
    codes = np.zeros((n, height, width), np.int32)
    family = _categorical()
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        for t in range(height * width):
            row, col = divmod(t, width)
            table = probabilities_from_logits(logits_of(codes, labels)[:, row, col])
            codes[:, row, col] = coder.decode(family, table)
    except (ValueError, RuntimeError, KeyError, AssertionError) as error:
        raise PriorCodingError(f"corrupt payload: the ANS decoder failed ({error}).") from None
    if not coder.is_empty():
        raise PriorCodingError(
            f"corrupt payload: {coder.num_words()} words left after decoding {codes.size} codes."
        )
    if stored_crc is not None and stored_crc != _crc(codes):
        raise PriorCodingError(
            "corrupt payload or another prior: the decoded codes fail the CRC32 check "
            f"(stored {stored_crc:#010x}, decoded {_crc(codes):#010x})."
        )
    return codes[0] if single else codes


def _crc(codes):
    return zlib.crc32(np.ascontiguousarray(codes, dtype="<i4").tobytes())


# ----------------------------------------------------------------------------
# `.vqz` method 2 ("prior")


def prior_fingerprint(prior):
    """8-byte BLAKE2b of the prior's class, config and weights.

    Stored in a method-2 stream so that a decoder holding another prior (or
    other weights) refuses the stream instead of decoding garbage.
    """
    import keras

    digest = hashlib.blake2b(digest_size=_FINGERPRINT_SIZE)
    digest.update(type(prior).__name__.encode())
    if isinstance(prior, keras.Model):
        digest.update(json.dumps(prior.get_config(), sort_keys=True, default=str).encode())
        for weight in prior.weights:
            digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    else:
        digest.update(np.ascontiguousarray(prior.counts).tobytes())
        digest.update(struct.pack("<d", prior.alpha))
    return digest.digest()


def encode_prior_payload(prior, codes, label=None):
    """Method parameters and payload of a `.vqz` method-2 ("prior") stream.

    Args:
        prior: the prior.
        codes: integer code map `(h, w)`.
        label: int class id for a conditional prior, else None.

    Returns:
        `(params, payload)`: `params` is `PARAMS.pack(fingerprint, label)`
        (10 bytes; label `NO_LABEL` = 0xFFFF when unconditional), `payload`
        the ANS words (no checksum: the stream's CRC32 covers it).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise PriorCodingError(f"a .vqz stream holds one code map (h, w); received shape {codes.shape}.")
    if label is not None and not 0 <= int(label) < NO_LABEL:
        raise PriorCodingError(f"`label` must be in [0, {NO_LABEL}); received {label!r}.")
    payload = encode_codes(prior, codes, label, checksum=False)
    params = PARAMS.pack(prior_fingerprint(prior), NO_LABEL if label is None else int(label))
    return params, payload


def decode_prior_payload(prior, params, payload, code_shape):
    """Inverse of `encode_prior_payload`: `(params, payload)` -> codes `(h, w)`.

    Raises:
        PriorCodingError: malformed parameters, a stream made with another
            prior, or a corrupt payload.
    """
    if len(params) != PARAMS.size:
        raise PriorCodingError(
            f"method-2 parameters must be {PARAMS.size} bytes (fingerprint + label); received {len(params)}."
        )
    fingerprint, label = PARAMS.unpack(bytes(params))
    if fingerprint != prior_fingerprint(prior):
        raise PriorCodingError(
            f"the stream was coded with prior {fingerprint.hex()}, but this prior is "
            f"{prior_fingerprint(prior).hex()}."
        )
    return decode_codes(
        prior, payload, tuple(code_shape), None if label == NO_LABEL else label, checksum=False
    )

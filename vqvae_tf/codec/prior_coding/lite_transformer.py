"""A TransformerPrior exported to TFLite, run with LiteRT and NumPy: the speech side of prior coding.

The file has one signature, `step` (`vqvae_tf.export.transformer_prior_tflite`
explains it): the logits at one position from the token before it and a
key/value cache of the positions before that. The encoder knows every token
and gets the logits of a whole sequence with `logits(tokens)`; the decoder
knows the tokens before `t` only and asks for one position at a time with
`start(batch)` and `next(state, previous)`. Both run the same calls on the
same inputs, so on one machine (same LiteRT build, thread count and batch
size) they give bit-identical logits; `quantized` makes the probability
tables robust to the last-bit differences between machines. No TensorFlow
here.

Example:

>>> prior = LiteTransformerPrior("speech_prior.tflite")
>>> prior.logits(tokens).shape                   # tokens (B, T_used) int32
(B, T_used, K)
>>> state = prior.start(batch=B)
>>> logits, state = prior.next(state)            # position 0: no previous token
>>> logits, state = prior.next(state, tokens[:, 0])  # position 1
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from vqvae_tf.codec.prior_coding.lite_prior import open_signatures
from vqvae_tf.codec.prior_coding.probabilities import check_code_values, check_integers, is_shape

__all__ = ["DecodeState", "LiteTransformerPrior"]


class DecodeState(NamedTuple):
    """Where an incremental decode is: the next `position` and the `cache` filled before it.

    `cache` float32 `(2 * layers, B, heads, T, head_dim)` (the `step`
    signature's). The runner never modifies a state in place, so a decoder
    may keep an old one to retry from.
    """

    position: int
    cache: np.ndarray

    @property
    def batch(self) -> int:
        return self.cache.shape[1]


class LiteTransformerPrior:
    """The TFLite file of an unconditional `TransformerPrior`, run position by position.

    Args:
        model: path of the `.tflite` file, or its bytes
            (`convert_transformer_prior`'s return value).
        num_threads: interpreter threads. Defaults to 2.
        map_shape: optional `(H, W)` the prior's raster, `H * W` = the
            file's length; defaults to `(1, length)`, a speech prior's token
            row (`vqvae_tf.training.speech_prior`).
        fingerprint: optional 8 bytes identifying the prior (its
            `prior.json`'s, `prior_fingerprint` of the exported prior), which
            `.vqz` prior streams carry; None: the file cannot code streams.

    Attributes:
        num_codes: K, read from the file. num_classes: 0 (the export is
            unconditional). length: T, the positions the prior models.
        map_shape: `(H, W)`. fingerprint: bytes or None.

    Example:

    ```python
    prior = LiteTransformerPrior(convert_transformer_prior(keras_prior))
    logits = prior.logits(tokens)  # (B, T_used) -> float32 (B, T_used, K)
    ```
    """

    num_classes = 0

    def __init__(self, model, num_threads: int = 2, map_shape=None, fingerprint=None):
        self.fingerprint = None if fingerprint is None else bytes(fingerprint)
        self._step = open_signatures(model, ("step",), num_threads)["step"]
        inputs, outputs = self._step.get_input_details(), self._step.get_output_details()
        if set(inputs) != {"previous", "position", "cache"} or set(outputs) != {"logits", "cache"}:
            raise ValueError(
                f"signature 'step' has inputs {sorted(inputs)} and outputs {sorted(outputs)}; expected "
                "inputs ['cache', 'position', 'previous'] and outputs ['cache', 'logits']"
            )
        # (2 * layers, -1, heads, T, head_dim): the batch is the dynamic -1.
        self._cache_shape = tuple(int(s) for s in inputs["cache"]["shape_signature"])
        self.length = self._cache_shape[3]
        self.num_codes = int(outputs["logits"]["shape_signature"][-1])
        if map_shape is None:
            map_shape = (1, self.length)
        if not is_shape(map_shape, (2,)) or map_shape[0] * map_shape[1] != self.length:
            raise ValueError(
                f"`map_shape` must be (H, W) with H * W = {self.length} (the file's length); received {map_shape!r}"
            )
        self.map_shape = tuple(int(s) for s in map_shape)

    def start(self, batch: int) -> DecodeState:
        """The state before position 0 of `batch` sequences (an empty cache)."""
        if not is_shape((batch,), (1,)):
            raise ValueError(f"`batch` must be a positive int; received {batch!r}")
        shape = (self._cache_shape[0], int(batch)) + self._cache_shape[2:]
        return DecodeState(0, np.zeros(shape, np.float32))

    def next(self, state: DecodeState, previous=None):
        """The logits at `state.position` and the state after it.

        Args:
            state: from `start` or the previous `next`.
            previous: int `(B,)`, the tokens at `state.position - 1`; None
                at position 0 (the start token is used there).

        Returns:
            `(logits, state)`: float32 `(B, K)` and the state at the next
            position.
        """
        position, batch = state.position, state.batch
        if position >= self.length:
            raise ValueError(f"the prior models {self.length} positions; received a state at position {position}")
        if position == 0:
            if previous is not None:
                raise ValueError("position 0 has no previous token; expected previous=None")
            previous = np.zeros(batch, np.int32)  # read by no output: the start token replaces it
        else:
            previous = self._check_tokens(previous, (batch,), "previous")
        out = self._step(previous=previous, position=np.array(position, np.int32), cache=state.cache)
        return out["logits"], DecodeState(position + 1, out["cache"])

    def logits(self, tokens):
        """float32 logits `(B, T_used, K)` at every position of int tokens `(B, T_used)`, teacher-forced.

        Position `t` sees `tokens[:, :t]` only (the last column is checked
        but never read). The same `next` calls a decoder makes, so its
        logits are bit-identical to these for the same batch.
        """
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or not 1 <= tokens.shape[1] <= self.length or tokens.shape[0] < 1:
            raise ValueError(
                f"`tokens` must be (B, T_used) with B >= 1 and 1 <= T_used <= {self.length}; "
                f"received shape {tokens.shape}"
            )
        tokens = self._check_tokens(tokens, tokens.shape, "tokens")
        state, logits = self.start(tokens.shape[0]), []
        for t in range(tokens.shape[1]):
            step, state = self.next(state, None if t == 0 else tokens[:, t - 1])
            logits.append(step)
        return np.stack(logits, axis=1)

    def _check_tokens(self, tokens, shape, name):
        """int32 C-contiguous `tokens` of `shape` with values in `[0, K)`, else a one-line ValueError."""
        tokens = np.asarray(tokens)
        if tokens.shape != tuple(shape):
            raise ValueError(f"`{name}` must have shape {tuple(shape)}; received shape {tokens.shape}")
        check_integers(tokens, name)
        check_code_values(self, tokens, name)
        return np.ascontiguousarray(tokens, np.int32)

    def __repr__(self):
        return f"LiteTransformerPrior(num_codes={self.num_codes}, map_shape={self.map_shape})"

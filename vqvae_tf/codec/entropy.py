"""ANS entropy coding of integer symbols: the project's one wrapper around `constriction`.

Both entropy-coded `.vqz` methods use it: `static` (every code under one
fixed distribution, `vqvae_tf.codec.bitstream.static`) and `prior` (each
code under its own conditional distribution, `vqvae_tf.codec.prior_coding`).
The coder is `constriction.stream.stack.AnsCoder` (32-bit words) with
`constriction.stream.model.Categorical(perfect=False)`; a payload is the
coder's compressed words, each stored little-endian.

The coder is a stack: `AnsEncoder.push` encodes in reverse, so the symbols
of one push pop in the order given, and the pushes pop last one first.

constriction is imported on first use: reading headers and the `packed`
method need neither it nor TensorFlow.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AnsDecoder", "AnsEncoder", "AnsError", "categorical"]

# What constriction raises on words that do not decode under the given model.
_DECODE_ERRORS = (ValueError, KeyError, RuntimeError, AssertionError)
_WORD_BYTES = 4


class AnsError(ValueError):
    """A payload that is not a valid ANS word stream for the distributions it is decoded with."""


def _stack():
    import constriction

    return constriction.stream.stack


def categorical(probabilities=None):
    """`Categorical(perfect=False)` over float64 `probabilities` `(K,)`.

    Without `probabilities`, the model family whose table comes with each
    symbol (`(n, K)`, one row per symbol).
    """
    import constriction

    if probabilities is None:
        return constriction.stream.model.Categorical(perfect=False)
    return constriction.stream.model.Categorical(probabilities, perfect=False)


class AnsEncoder:
    """Pushes symbols onto an ANS stack; `payload()` gives the bytes.

    Example:

    >>> encoder = AnsEncoder()
    >>> encoder.push(np.array([0, 2, 1], np.int32), np.array([0.5, 0.25, 0.25]))
    >>> decoder = AnsDecoder(encoder.payload())
    >>> decoder.pop(np.array([0.5, 0.25, 0.25]), 3).tolist()
    [0, 2, 1]
    >>> decoder.finish()
    """

    def __init__(self):
        self._coder = _stack().AnsCoder()

    def push(self, symbols, probabilities) -> None:
        """Pushes int32 `symbols` `(n,)` so that they pop in this order.

        Args:
            symbols: int32 array `(n,)`, values in `[0, K)`.
            probabilities: float64 `(K,)`, one distribution for every
                symbol, or `(n, K)`, one row per symbol.
        """
        if np.ndim(probabilities) == 1:
            self._coder.encode_reverse(symbols, categorical(probabilities))
        else:
            self._coder.encode_reverse(symbols, categorical(), probabilities)

    def payload(self) -> bytes:
        """The compressed words as little-endian uint32 bytes."""
        return self._coder.get_compressed().astype("<u4").tobytes()


class AnsDecoder:
    """Pops the symbols of a payload of `AnsEncoder`, in the order they were pushed.

    Args:
        payload: bytes (or a memoryview) of 32-bit little-endian words.

    Raises:
        AnsError: the payload is not a whole number of words or does not
            decode (also from `pop` and `finish`).
    """

    def __init__(self, payload):
        if len(payload) % _WORD_BYTES:
            raise AnsError(f"the payload is {len(payload)} bytes, expected a multiple of {_WORD_BYTES}")
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        self.count = 0
        self._family = None
        try:
            self._coder = _stack().AnsCoder(words)
        except _DECODE_ERRORS as error:
            raise AnsError(f"the ANS decoder failed ({error})") from None

    def pop(self, probabilities, count: int | None = None) -> np.ndarray:
        """Pops symbols: `count` under one distribution `(K,)`, or one per row of `(n, K)`.

        Returns:
            int array of the popped symbols.
        """
        try:
            if np.ndim(probabilities) == 1:
                symbols = self._coder.decode(categorical(probabilities), count)
            else:
                if self._family is None:
                    self._family = categorical()
                symbols = self._coder.decode(self._family, probabilities)
        except _DECODE_ERRORS as error:
            raise AnsError(f"the ANS decoder failed ({error})") from None
        self.count += len(symbols)
        return symbols

    def finish(self) -> None:
        """Raises `AnsError` if words are left: the payload held more than was popped."""
        if not self._coder.is_empty():
            raise AnsError(f"{self._coder.num_words()} unused words after decoding {self.count} codes")

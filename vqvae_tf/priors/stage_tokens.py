"""Multi-stage code maps as token maps that a 2-D prior models.

A residual quantizer gives `S` codes per position: maps `(N, h, w, S)`. The
priors (`GatedPixelCNN`, `TransformerPrior`) model `(N, h, w)` maps of one
vocabulary. The stages are laid side by side along the width, each in a
vocabulary of its own:

    tokens[n, i, j * S + s] = codes[n, i, j, s] + s * K        (vocabulary S * K)

so in raster order a position's coarse code comes before its finer ones, and
each stage's code is predicted from every earlier position and from the
coarser stages of its own position. With `S = 1` the tokens are the codes.

Example:

>>> codes = np.array([[[[3, 1], [0, 2]]]])         # (1, 1, 2, 2): K = 4, S = 2
>>> stages_to_tokens(codes, num_codes=4)
array([[[3, 5, 0, 6]]], dtype=int32)
>>> tokens_to_stages(_, num_codes=4, num_stages=2).tolist() == codes.tolist()
True
"""

import numpy as np

__all__ = ["stages_to_tokens", "tokens_to_stages"]


def stages_to_tokens(codes, num_codes):
    """int codes `(N, h, w, S)` in `[0, K)` -> int32 tokens `(N, h, w * S)` in `[0, S * K)`.

    Raises:
        ValueError: `codes` is not 4-D.
    """
    codes = np.asarray(codes)
    if codes.ndim != 4:
        raise ValueError(f"stages_to_tokens expects code maps (N, h, w, stages); received shape {codes.shape}.")
    n, h, w, stages = codes.shape
    return (codes + num_codes * np.arange(stages)).reshape(n, h, w * stages).astype(np.int32)


def tokens_to_stages(tokens, num_codes, num_stages):
    """Inverse of `stages_to_tokens`: tokens `(N, h, w * S)` -> int32 codes `(N, h, w, S)`.

    A token from another stage's vocabulary (which a sampled prior can
    draw, with small probability) is read as its code index, `token % K`.

    Raises:
        ValueError: `tokens` is not 3-D or its width is not a multiple of
            `num_stages`.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 3 or tokens.shape[-1] % num_stages:
        raise ValueError(
            f"tokens_to_stages expects token maps (N, h, w * {num_stages}); received shape {tokens.shape}."
        )
    n, h, width = tokens.shape
    return (tokens % num_codes).reshape(n, h, width // num_stages, num_stages).astype(np.int32)

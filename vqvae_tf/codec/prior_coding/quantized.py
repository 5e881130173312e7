"""Deterministic probability tables from float logits: a coarse logit grid with margins.

Encoder and decoder compute the prior's logits in floating point, and two
machines (CPUs, runtimes, thread counts) may differ in the last bits. An
entropy coder needs bit-identical tables, so the tables depend on the
logits only through integers that a small float difference cannot change:

1. Grid. For grid `g` in `0 .. GRIDS-1`, each logit `x` (nats) becomes the
   integer `q = floor(x / STEP - g / GRIDS + 1/2)`.
2. Table. With `d = max(q) - q`, the weight of a code is `WEIGHTS[d]`
   (`round(2**16 * exp(-STEP * d))`, listed below) for `d <= DEPTH`, else 1;
   the probabilities are the weights over their sum (integer sum, one
   float64 division), which constriction quantises deterministically.
3. Margins. The encoder picks, per position, the first grid on which every
   logit that can reach the table (`x / STEP > max - DEPTH - 2`) lies more
   than `MARGIN` nats from a rounding boundary, and codes that grid's index
   (a "grid flag", under the fixed `FLAG_WEIGHTS`) before the code. The
   decoder pops the flag and rounds its own logits on that grid: any logit
   within `MARGIN` of the encoder's rounds to the same integer, so the
   table is the same. If no grid has the margin the flag is `ESCAPE` and
   the code is coded uniformly (`log2 K` bits), independently of the logits.

So a decoder whose logits differ from the encoder's by less than `MARGIN`
nats at every position decodes the exact codes; a larger difference may
change a table, and the stream's CRC of the codes turns that into an error.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SCHEME", "DEPTH", "ESCAPE", "FLAG_WEIGHTS", "GRIDS", "MARGIN", "STEP", "WEIGHTS", "choose_grids", "tables"]

#: Identifies this scheme in the prior fingerprint (`tiled.prior_fingerprint`).
SCHEME = b"grid-tables/1"
#: Logit grid step in nats (a power of two, so `x / STEP` is exact).
STEP = 0.5
#: Grid offsets per position: `g / GRIDS` steps, g in 0 .. GRIDS-1.
GRIDS = 4
#: Distance in nats a sensitive logit keeps from its grid's rounding boundaries.
MARGIN = 2.0**-16
#: Weights of the codes `d` steps below the most likely one: round(2**16 * exp(-STEP * d)), d = 0 .. DEPTH.
WEIGHTS = (
    65536, 39750, 24109, 14623, 8869, 5380, 3263, 1979, 1200, 728, 442, 268,
    162, 99, 60, 36, 22, 13, 8, 5, 3, 2, 1,
)  # fmt: skip
DEPTH = len(WEIGHTS) - 1
#: The grid flag's value that codes the position uniformly.
ESCAPE = GRIDS
#: Weights of the grid flags 0 .. GRIDS-1 and ESCAPE (fixed: the decoder needs them before any logit).
FLAG_WEIGHTS = (3990, 100, 4, 1, 1)

_WEIGHTS = np.array(WEIGHTS + (1,), np.int64)


def _grid_values(logits, grids):
    """float64 `x / STEP - g / GRIDS` (exact: STEP and 1/GRIDS are powers of two)."""
    return np.asarray(logits, np.float64) / STEP - np.asarray(grids, np.float64)[:, None] / GRIDS


def tables(logits, grids):
    """float64 probabilities `(n, K)` of float logits `(n, K)` rounded on `grids` `(n,)` (ESCAPE: uniform)."""
    grids = np.asarray(grids, np.int64)
    values = _grid_values(logits, np.minimum(grids, GRIDS - 1))
    levels = np.floor(values + 0.5).astype(np.int64)
    depth = np.minimum(levels.max(axis=1, keepdims=True) - levels, DEPTH + 1)
    weights = _WEIGHTS[depth]
    weights[grids == ESCAPE] = 1
    return weights / weights.sum(axis=1, keepdims=True, dtype=np.int64)


def choose_grids(logits):
    """The encoder's grid flag `(n,)` per row of float logits `(n, K)`: the first grid with the margin, or ESCAPE."""
    logits = np.asarray(logits, np.float64)
    scaled = logits / STEP
    sensitive = scaled > scaled.max(axis=1, keepdims=True) - DEPTH - 2
    chosen = np.full(len(logits), ESCAPE, np.int64)
    for grid in reversed(range(GRIDS)):
        values = scaled - grid / GRIDS
        distance = 0.5 - np.abs(values - np.floor(values + 0.5))
        safe = np.where(sensitive, distance > MARGIN / STEP, True).all(axis=1)
        chosen[safe] = grid
    return chosen


def flag_probabilities():
    """float64 `(GRIDS + 1,)`: the fixed distribution of the grid flags."""
    weights = np.array(FLAG_WEIGHTS, np.int64)
    return weights / weights.sum()

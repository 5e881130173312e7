"""Choosing how many stages each position of a residual image map keeps (variable depth).

A uniform stream keeps the same first `n` stages everywhere, so its rates
are S points apart. Spending the finer stages only where they remove much
error is a better use of the bits: flat sky gains little from stage 4, a
textured roof a lot. Given the image and its full code map, this module
measures, for every position `p` and depth `d`:

* `D[p, d]`: the squared error (summed over the position's pixels and
  channels, uint8 scale) of the image decoded with every position at depth
  `d` (S decoder runs). The decoder is convolutional, so a position's
  pixels also see its neighbours' codes; at uniform depth the neighbours
  are at the same depth, which is close to what a smooth depth map gives.
* `R[p, d]`: the bits of stages `1..d-1` at `p` under the model's static
  per-stage tables (`-log2 P_s(code)`); stage 0 is always kept, so its
  bits do not depend on `d`. `depths_for` adds the depth's own bits.

For a Lagrange multiplier `lam` the depth map minimises `D + lam * R`
position by position (`depths_for`), and `pick_depth` bisects `lam` for
the largest stream that fits a bits-per-pixel target, keeping the uniform
quality instead where its estimated error is lower. `compress_image(...,
bpp=B)` uses it unless `depth="uniform"`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np

from vqvae_tf.codec import tiling
from vqvae_tf.codec.model import CodecError, CodecModel

logger = logging.getLogger(__name__)

__all__ = ["DEPTH_MODES", "DepthCosts", "depth_costs", "depths_for", "pick_depth"]

#: `compress_image(depth=...)`: how a bits-per-pixel target is met.
DEPTH_MODES = ("adaptive", "uniform")
# Bisection steps of log(lam): 2**-24 of the bracket, far finer than one
# position's change of depth.
_STEPS = 24
# Rounds of `depths_for`: six instead move at most 1% of the positions (6 held-out photos, 30 lambdas each).
_DEPTH_ROUNDS = 3


@dataclasses.dataclass(frozen=True)
class DepthCosts:
    """What the depth choice weighs, per position of an `(h, w)` map of S stages.

    Attributes:
        distortion: float64 `(h, w, S)`, `D[p, d - 1]`: squared error of
            position `p`'s pixels decoded at depth `d`.
        bits: float64 `(h, w, S)`, `R[p, d - 1]`: bits of stages `1..d-1` at `p`.
    """

    distortion: np.ndarray
    bits: np.ndarray

    @property
    def stages(self) -> int:
        return self.distortion.shape[-1]


def depth_costs(
    image: np.ndarray, codes: np.ndarray, model: CodecModel, decode: Callable[[np.ndarray], np.ndarray]
) -> DepthCosts:
    """Measures `D` and `R` for a uint8 `(H, W, C)` image and its `(h, w, S)` code map.

    Args:
        image: the image the codes came from, at the model's channels.
        codes: its full code map (every stage).
        model: the residual codec model (its decoder's `absent_code`, its tables).
        decode: code map -> uint8 image of the padded size (the codec's tiled decoder).
    """
    height, width = image.shape[:2]
    factor, stages = model.downsample, codes.shape[-1]
    padded = tiling.pad_to_multiple(image, factor).astype(np.float32)
    inside = np.zeros(padded.shape[:2], np.float32)
    inside[:height, :width] = 1.0  # the edge padding is not the user's image
    rows, cols = codes.shape[:2]
    distortion = np.empty((rows, cols, stages))
    for depth in range(1, stages + 1):
        partial = codes.copy()
        partial[..., depth:] = model.absent_code
        error = np.square(decode(partial).astype(np.float32) - padded).sum(axis=-1) * inside
        distortion[..., depth - 1] = error.reshape(rows, factor, cols, factor).sum(axis=(1, 3))
    tables = model.code_probabilities(stages)
    stage_bits = -np.log2(np.stack([tables[s][codes[..., s]] for s in range(stages)], axis=-1))
    stage_bits[..., 0] = 0.0
    return DepthCosts(distortion=distortion, bits=np.cumsum(stage_bits, axis=-1))


def depths_for(costs: DepthCosts, lam: float) -> np.ndarray:
    """The int32 `(h, w)` depth map (`1..S`) minimising `D + lam * R` at every position.

    `R` includes the depth's own bits in the stream's depth section,
    `-log2 q(d)` under the map's depth frequencies `q`: a few rounds from
    none, as in entropy-constrained quantisation, so a rare depth has to
    pay for itself (about +0.01 dB at the same size on held-out photos).
    """
    depth_bits = np.zeros(costs.stages)
    for _ in range(_DEPTH_ROUNDS):
        depth = (np.argmin(costs.distortion + lam * (costs.bits + depth_bits), axis=-1) + 1).astype(np.int32)
        counts = np.bincount(depth.reshape(-1) - 1, minlength=costs.stages) + 0.5
        depth_bits = -np.log2(counts / counts.sum())
    return depth


def _estimated_error(costs: DepthCosts, depth: np.ndarray) -> float:
    return float(np.take_along_axis(costs.distortion, depth[..., None] - 1, axis=-1).sum())


def pick_depth(
    costs: DepthCosts, build: Callable[[np.ndarray], bytes], max_bytes: float, uniform: dict[int, bytes]
) -> tuple[np.ndarray, bytes]:
    """The depth map and stream of least estimated error whose stream is at most `max_bytes`.

    Args:
        costs: from `depth_costs`.
        build: depth map -> stream bytes.
        max_bytes: the target's size in bytes.
        uniform: the uniform streams measured already, `{quality: bytes}`;
            one that fits and has less estimated error wins.

    Returns:
        `(depth, stream)`; `depth` is uniform when a uniform stream won.

    Raises:
        CodecError: not even depth 1 everywhere fits (the caller measured that first).
    """
    stages, shape = costs.stages, costs.distortion.shape[:2]
    gains = costs.distortion[..., :1] - costs.distortion[..., 1:]
    extra = np.maximum(costs.bits[..., 1:], 1e-9)
    # Above `high` no deeper position pays for its bits: every depth is 1.
    high = max(float((gains / extra).max()), 1e-6) * 2
    low = high * 1e-9
    best = None
    for quality, data in uniform.items():
        if len(data) <= max_bytes:
            depth = np.full(shape, quality, np.int32)
            candidate = (_estimated_error(costs, depth), depth, data)
            best = candidate if best is None or candidate[0] < best[0] else best
    for _ in range(_STEPS):
        lam = float(np.sqrt(low * high))
        depth = depths_for(costs, lam)
        data = build(depth)
        if len(data) <= max_bytes:
            high = lam
            candidate = (_estimated_error(costs, depth), depth, data)
            best = candidate if best is None or candidate[0] < best[0] else best
        else:
            low = lam
        if high / low < 1.0 + 1e-3:
            break
    if best is None:
        raise CodecError(f"no depth map of {stages} stages fits {max_bytes:.0f} bytes")
    logger.debug("variable depth: %.3f stages per position", float(best[1].mean()))
    return best[1], best[2]

"""The depth choice of variable-depth streams (vqvae_tf.codec.depth_choice) on costs made by hand."""

import numpy as np
import pytest

from vqvae_tf.codec import depth_choice
from vqvae_tf.codec.model import CodecError

# Two positions, three stages: position 0 gains much from stage 2, position 1 little.
COSTS = depth_choice.DepthCosts(
    distortion=np.array([[[100.0, 20.0, 15.0], [100.0, 95.0, 94.0]]]),
    bits=np.array([[[0.0, 10.0, 20.0], [0.0, 10.0, 20.0]]]),
)


def test_depths_for_minimises_distortion_plus_lambda_rate_per_position():
    np.testing.assert_array_equal(depth_choice.depths_for(COSTS, 0.0), [[3, 3]])
    np.testing.assert_array_equal(depth_choice.depths_for(COSTS, 1.0), [[2, 1]])  # 30 < 100, 105 > 100
    np.testing.assert_array_equal(depth_choice.depths_for(COSTS, 100.0), [[1, 1]])


def _build(depth):
    """A stand-in stream: one byte per stage kept past the first."""
    return bytes(int((depth - 1).sum()))


def test_pick_depth_spends_the_bytes_where_the_error_falls_most():
    depth, data = depth_choice.pick_depth(COSTS, _build, max_bytes=1, uniform={1: b""})
    np.testing.assert_array_equal(depth, [[2, 1]])
    assert data == bytes(1)
    depth, _ = depth_choice.pick_depth(COSTS, _build, max_bytes=4, uniform={1: b""})
    np.testing.assert_array_equal(depth, [[3, 3]])


def test_pick_depth_keeps_a_uniform_stream_of_less_error():
    # A uniform stream of depth 2 that fits (its real coder being smaller than the stand-in's).
    depth, data = depth_choice.pick_depth(COSTS, _build, max_bytes=1, uniform={1: b"", 2: b"u"})
    np.testing.assert_array_equal(depth, [[2, 2]])
    assert data == b"u"


def test_pick_depth_fails_clearly_when_nothing_fits():
    with pytest.raises(CodecError, match="no depth map of 3 stages fits 0 bytes"):
        depth_choice.pick_depth(COSTS, lambda d: b"xx", max_bytes=0, uniform={1: b"x"})


def test_a_rare_depth_pays_for_its_own_bits_in_the_depth_section():
    # 99 positions gain nothing past stage 1; one gains 0.5 from stage 2 at 0.4 code bits.
    distortion = np.tile([10.0, 10.0], (1, 100, 1))
    distortion[0, 0] = [10.0, 9.5]
    bits = np.tile([0.0, 0.4], (1, 100, 1))
    costs = depth_choice.DepthCosts(distortion=distortion, bits=bits)
    # Without the depth's own bits (about 6.6 for a depth seen once in 100) it would be worth it at lam=1.
    assert depth_choice.depths_for(costs, 1.0).max() == 1
    assert depth_choice.depths_for(costs, 0.05)[0, 0] == 2

"""The Bjontegaard deltas of bench/bd.py against hand-computable cases."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bd  # noqa: E402

RATES = [0.12, 0.2, 0.31, 0.5, 0.8]
PSNRS = [24.0, 26.1, 27.9, 29.5, 31.2]
METHODS = bd.BD_METHODS


@pytest.mark.parametrize("method", METHODS)
def test_identical_curves_give_zero(method):
    assert bd.bd_psnr(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0.0, abs=1e-12)
    assert bd.bd_rate(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shift", [-1.5, 0.25, 3.0])
def test_a_curve_shifted_by_x_db_gives_bd_psnr_x(method, shift):
    assert bd.bd_psnr(RATES, PSNRS, RATES, np.add(PSNRS, shift), method) == pytest.approx(shift, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k", [0.5, 1.25, 2.0])
def test_a_curve_needing_k_times_the_rate_gives_k_minus_1(method, k):
    assert bd.bd_rate(RATES, PSNRS, np.multiply(RATES, k), PSNRS, method) == pytest.approx((k - 1) * 100, abs=1e-8)
    # The same curves seen from the other side: 1/k times the rate.
    assert bd.bd_rate(np.multiply(RATES, k), PSNRS, RATES, PSNRS, method) == pytest.approx((1 / k - 1) * 100)


def test_two_lines_of_different_slope():
    # Anchor PSNR = 30 + 10 t, test 30 + 20 t with t = log10(rate) on [0, 1]:
    # the mean difference is 10 * mean(t) = 5 dB; with two points PCHIP is the line.
    anchor_psnr, test_psnr = [30.0, 40.0], [30.0, 50.0]
    assert bd.bd_psnr([1.0, 10.0], anchor_psnr, [1.0, 10.0], test_psnr) == pytest.approx(5.0)
    # Over the common PSNR range 30..40 dB the test needs log10(rate) = (p - 30) / 20,
    # the anchor (p - 30) / 10: mean difference -0.25 in log10, so 10**-0.25 times the rate.
    expected = (10**-0.25 - 1) * 100
    assert bd.bd_rate([1.0, 10.0], anchor_psnr, [1.0, 10.0], test_psnr) == pytest.approx(expected)


def test_only_the_common_range_counts():
    # A PSNR linear in log-rate is interpolated exactly from any subset of its points;
    # the test curve covers the middle of the anchor's rates, 1 dB above it.
    rates = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    psnrs = 25.0 + 3.0 * np.log2(rates / 0.1)
    assert bd.bd_psnr(rates, psnrs, rates[1:4], psnrs[1:4] + 1.0) == pytest.approx(1.0)


def test_point_order_does_not_matter():
    reverse = slice(None, None, -1)
    shifted = np.add(PSNRS, 0.7)
    assert bd.bd_psnr(RATES[reverse], PSNRS[reverse], RATES, shifted) == pytest.approx(0.7)


@pytest.mark.parametrize(
    "args, message",
    [
        (([0.1, 0.2], [25, 27], [0.5, 0.9], [30, 32]), "do not overlap in rate: anchor 0.1..0.2, test 0.5..0.9"),
        (([0.1], [25], [0.1, 0.2], [25, 27]), "anchor curve needs at least 2 points; received 1"),
        (([0.1, 0.2], [25, 27], [0.1, 0.1], [25, 27]), "test curve needs distinct rates"),
        (([0.0, 0.2], [25, 27], [0.1, 0.2], [25, 27]), "finite positive rates"),
    ],
)
def test_bad_curves_are_refused_clearly(args, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        bd.bd_psnr(*args)


def test_polynomial_needs_four_points_and_unknown_methods_are_refused():
    with pytest.raises(ValueError, match="at least 4 points per curve; received 3"):
        bd.bd_psnr(RATES[:3], PSNRS[:3], RATES[:3], PSNRS[:3], "polynomial")
    with pytest.raises(ValueError, match=r"method must be one of \('pchip', 'polynomial'\); received 'akima'"):
        bd.bd_rate(RATES, PSNRS, RATES, PSNRS, "akima")


def test_psnr_overlap_is_checked_for_bd_rate():
    with pytest.raises(ValueError, match="do not overlap in PSNR: anchor 24.00 dB..31.20 dB"):
        bd.bd_rate(RATES, PSNRS, RATES, np.add(PSNRS, 10.0))

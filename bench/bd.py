"""Bjontegaard deltas between two rate-distortion curves (VCEG-M33, VCEG-AL22).

Both curves are (rate, PSNR) points; rates enter as log-rate. Two methods:

* ``"pchip"`` (default): piecewise cubic Hermite interpolation (the method of
  the later VCEG/JVET reference sheets): defined from two points on, follows
  the points exactly and does not overshoot between them;
* ``"polynomial"``: Bjontegaard's original least-squares cubic, which needs
  at least four points per curve.

`bd_psnr` is the mean PSNR difference over the common range of log-rate;
`bd_rate` the mean rate ratio over the common range of PSNR, in percent
(negative: the test curve needs fewer bits for the same PSNR).
"""

from __future__ import annotations

import numpy as np

__all__ = ["BD_METHODS", "bd_psnr", "bd_rate"]

BD_METHODS = ("pchip", "polynomial")


def _points(rates, psnrs, by: str, name: str):
    rates, psnrs = np.asarray(rates, dtype=np.float64), np.asarray(psnrs, dtype=np.float64)
    if rates.ndim != 1 or rates.shape != psnrs.shape:
        raise ValueError(f"{name} curve needs equal-length 1-D rates and PSNRs; received {rates.shape}, {psnrs.shape}")
    if len(rates) < 2:
        raise ValueError(f"{name} curve needs at least 2 points; received {len(rates)}")
    if not (np.all(np.isfinite(rates)) and np.all(rates > 0) and np.all(np.isfinite(psnrs))):
        raise ValueError(f"{name} curve needs finite positive rates and finite PSNRs; received {rates}, {psnrs}")
    log_rates = np.log(rates)
    x, y = (log_rates, psnrs) if by == "rate" else (psnrs, log_rates)
    order = np.argsort(x)
    x, y = x[order], y[order]
    if np.any(np.diff(x) <= 0):
        axis = "rates" if by == "rate" else "PSNRs"
        raise ValueError(f"{name} curve needs distinct {axis}; received {np.exp(x) if by == 'rate' else x}")
    return x, y


def _integral(x, y, low: float, high: float, method: str) -> float:
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        return float(PchipInterpolator(x, y).integrate(low, high))
    if method == "polynomial":
        if len(x) < 4:
            raise ValueError(f"the polynomial method needs at least 4 points per curve; received {len(x)}")
        antiderivative = np.polyint(np.polyfit(x, y, 3))
        return float(np.polyval(antiderivative, high) - np.polyval(antiderivative, low))
    raise ValueError(f"method must be one of {BD_METHODS}; received {method!r}")


def _mean_difference(anchor, test, by: str, method: str) -> float:
    xa, ya = _points(*anchor, by=by, name="anchor")
    xt, yt = _points(*test, by=by, name="test")
    low, high = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if high <= low:
        show = (lambda v: f"{np.exp(v):.4g}") if by == "rate" else (lambda v: f"{v:.2f} dB")
        raise ValueError(
            f"the curves do not overlap in {'rate' if by == 'rate' else 'PSNR'}: anchor {show(xa[0])}..{show(xa[-1])}, "
            f"test {show(xt[0])}..{show(xt[-1])}"
        )
    return (_integral(xt, yt, low, high, method) - _integral(xa, ya, low, high, method)) / (high - low)


def bd_psnr(anchor_rates, anchor_psnrs, test_rates, test_psnrs, method: str = "pchip") -> float:
    """Mean PSNR gain (dB) of the test curve over the anchor, over their common log-rate range.

    Example: a test curve 0.5 dB above the anchor at every rate gives 0.5.

        >>> round(bd_psnr([0.1, 0.2, 0.4], [25, 28, 31], [0.1, 0.2, 0.4], [25.5, 28.5, 31.5]), 6)
        0.5
    """
    return float(_mean_difference((anchor_rates, anchor_psnrs), (test_rates, test_psnrs), "rate", method))


def bd_rate(anchor_rates, anchor_psnrs, test_rates, test_psnrs, method: str = "pchip") -> float:
    """Mean rate change (%) of the test curve against the anchor, over their common PSNR range.

    Example: a test curve needing 1.5x the anchor's rate at every PSNR gives 50.

        >>> round(bd_rate([0.1, 0.2, 0.4], [25, 28, 31], [0.15, 0.3, 0.6], [25, 28, 31]), 6)
        50.0
    """
    difference = _mean_difference((anchor_rates, anchor_psnrs), (test_rates, test_psnrs), "psnr", method)
    return float((np.exp(difference) - 1.0) * 100.0)

"""The comparison of bench/codec_peer.py: our curve against the peer's point(s), the BD figures, the table.

Pure Python (NumPy, SciPy): tested without the peer's venv (tests/test_bench_codec_peer.py).
"""

import math

import bd
import numpy as np

METHODS = ("static", "packed")


def interpolate(rates, values, at):
    """`values` at rate `at` by PCHIP in log-rate over the points (None outside their range or with < 2)."""
    rates, values = np.asarray(rates, float), np.asarray(values, float)
    order = np.argsort(rates)
    rates, values = rates[order], values[order]
    if len(rates) < 2 or not rates[0] <= at <= rates[-1] or np.any(np.diff(rates) <= 0):
        return None
    from scipy.interpolate import PchipInterpolator

    return float(PchipInterpolator(np.log(rates), values)(math.log(at)))


def rate_for(rates, psnrs, target):
    """The rate at which the curve reaches PSNR `target` (inverse PCHIP; None outside it or if not increasing)."""
    rates, psnrs = np.asarray(rates, float), np.asarray(psnrs, float)
    order = np.argsort(rates)
    rates, psnrs = rates[order], psnrs[order]
    if len(rates) < 2 or np.any(np.diff(psnrs) <= 0) or not psnrs[0] <= target <= psnrs[-1]:
        return None
    from scipy.interpolate import PchipInterpolator

    return float(math.exp(PchipInterpolator(psnrs, np.log(rates))(target)))


def compare(ours, peer):
    """Our curve (points with bits_per_pixel, psnr, ms_ssim) against the peer's point(s), at the peer's rate."""
    rates = [p["bits_per_pixel"] for p in ours]
    out = []
    for point in peer:
        bpp, psnr = point["bits_per_pixel"], point["psnr"]
        ours_psnr = interpolate(rates, [p["psnr"] for p in ours], bpp)
        ours_ssim = interpolate(rates, [p["ms_ssim"] for p in ours], bpp)
        ours_rate = rate_for(rates, [p["psnr"] for p in ours], psnr)
        nearest = min(ours, key=lambda p: abs(math.log(p["bits_per_pixel"] / bpp)))
        out.append(
            dict(
                peer_bits_per_pixel=bpp,
                peer_psnr=psnr,
                ours_psnr_at_peer_rate=ours_psnr,
                psnr_difference_db=None if ours_psnr is None else ours_psnr - psnr,
                ours_ms_ssim_at_peer_rate=ours_ssim,
                ms_ssim_difference=None if ours_ssim is None else ours_ssim - point["ms_ssim"],
                ours_rate_for_peer_psnr=ours_rate,
                rate_change_percent=None if ours_rate is None else 100.0 * (ours_rate / bpp - 1.0),
                nearest=dict(
                    quality=nearest.get("quality"),
                    bpp_ratio=nearest["bits_per_pixel"] / bpp,
                    psnr_difference_db=nearest["psnr"] - psnr,
                ),
            )
        )
    return out


def bd_figures(ours, peer):
    """BD-rate and BD-PSNR of our curve against the peer's, or why not (bench/bd.py needs 2 points per curve)."""
    anchor = ([p["bits_per_pixel"] for p in peer], [p["psnr"] for p in peer])
    test = ([p["bits_per_pixel"] for p in ours], [p["psnr"] for p in ours])
    try:
        return dict(bd_rate_percent=bd.bd_rate(*anchor, *test), bd_psnr_db=bd.bd_psnr(*anchor, *test))
    except ValueError as error:
        return dict(bd_rate_percent=None, bd_psnr_db=None, why=str(error))


def verdict(comparison) -> str:
    """One sentence: who wins at the peer's rate, and by how much."""
    gain, rate = comparison["psnr_difference_db"], comparison["rate_change_percent"]
    if gain is None:
        nearest = comparison["nearest"]
        return (
            f"the peer's rate {comparison['peer_bits_per_pixel']:.3f} bpp is outside our curve; our nearest point "
            f"(q{nearest['quality']}, {nearest['bpp_ratio']:.2f}x its rate) is {nearest['psnr_difference_db']:+.2f} dB"
        )
    winner = "ours" if gain > 0 else "the peer"
    text = f"{winner} wins at {comparison['peer_bits_per_pixel']:.3f} bpp by {abs(gain):.2f} dB"
    if rate is not None:
        text += f"; for the peer's {comparison['peer_psnr']:.2f} dB we need {rate:+.1f}% bits"
    return text


def _cell(value, fmt):
    return "outside our curve" if value is None else format(value, fmt)


def markdown(result) -> str:
    lines = [
        f"| codec ({result['minutes']:g} min of training each) | steps | bpp | PSNR dB | MS-SSIM |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    ours, peer = result["ours"], result["peer"]
    for method in METHODS:
        for p in ours["points"][method]:
            lines.append(
                f"| ours q{p['quality']}, {method} | {ours['steps']} | {p['bits_per_pixel']:.3f} | {p['psnr']:.2f} | "
                f"{p['ms_ssim']:.4f} |"
            )
    for p in peer["points"]:
        lines.append(
            f"| bmshj2018-factorized, lambda {p['lambda']:g} | {p['steps']} | {p['bits_per_pixel']:.3f} | "
            f"{p['psnr']:.2f} | {p['ms_ssim']:.4f} |"
        )
    lines += ["", "| ours (method) against the peer at | our PSNR there | our MS-SSIM there | our bits for its PSNR |"]
    lines.append("| --- | ---: | ---: | ---: |")
    for method in METHODS:
        for c in result["comparison"][method]:
            cells = [
                _cell(c["psnr_difference_db"], "+.2f") + ("" if c["psnr_difference_db"] is None else " dB"),
                _cell(c["ms_ssim_difference"], "+.4f"),
                _cell(c["rate_change_percent"], "+.1f") + ("" if c["rate_change_percent"] is None else "%"),
            ]
            at = f"{c['peer_bits_per_pixel']:.3f} bpp, {c['peer_psnr']:.2f} dB"
            lines.append(f"| {method}, vs {at} | " + " | ".join(cells) + " |")
    lines.append("")
    for method in METHODS:
        entry = result["bd"][method]
        if entry["bd_rate_percent"] is None:
            lines.append(f"BD ({method} against the peer's curve): n/a, {entry['why']}.")
        else:
            lines.append(
                f"BD ({method} against the peer's curve): BD-rate {entry['bd_rate_percent']:+.1f}%, "
                f"BD-PSNR {entry['bd_psnr_db']:+.2f} dB."
            )
    return "\n".join(lines)

"""The pure-Python parts of bench/codec_peer.py and codec_peer_table.py: argument checks, our command, the table.

None of this needs the peer's venv or PyTorch (its side, bench/codec_peer_torch.py, runs only there).
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import codec_peer  # noqa: E402
import codec_peer_table as table  # noqa: E402

# A PSNR linear in log2-rate: PCHIP reproduces it exactly between the points.
RATES = [0.1, 0.2, 0.4, 0.8]
OURS = [dict(quality=q, bits_per_pixel=r, psnr=25.0 + 3.0 * math.log2(r / 0.1), ms_ssim=0.8 + 0.05 * q)
        for q, r in enumerate(RATES, 1)]  # fmt: skip


def fake_venv(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text("")
    return tmp_path


GOOD = dict(minutes=30, lam=0.0035, crop=96, batch=16, lr=1e-4, our_steps=6000, steps_per_epoch=500)


def test_the_project_side_never_imports_torch():
    assert "torch" not in sys.modules


def test_good_arguments_give_the_venvs_python(tmp_path):
    assert codec_peer.check_args(**GOOD, venv=fake_venv(tmp_path)) == tmp_path / "bin" / "python"


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("minutes", 0, "`--minutes` must be a finite number > 0; received 0"),
        ("lam", -1.0, "`--lambda` must be a finite number > 0; received -1.0"),
        ("crop", 100, "--crop must be a multiple of 16 (the peer's stride); received 100"),
        ("crop", 8, "`--crop` must be an int >= 16; received 8"),
        ("batch", 0, "`--batch` must be an int >= 1; received 0"),
    ],
)
def test_bad_arguments_say_what_was_received(tmp_path, field, value, words):
    with pytest.raises(ValueError) as error:
        codec_peer.check_args(**{**GOOD, field: value}, venv=fake_venv(tmp_path))
    assert words in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_venv_says_how_to_make_it(tmp_path):
    with pytest.raises(ValueError, match=r"--venv: .*/bin/python not found; make the peer's venv as bench/codec_peer_"):
        codec_peer.check_args(**GOOD, venv=tmp_path / "nowhere")


def test_our_command_is_the_shipped_design_with_this_runs_data_and_budget():
    shipped = json.loads(codec_peer.SHIPPED_DESIGN.read_text())["train_command"]
    argv = codec_peer.our_command(shipped, "/w", "/data/train", "/data/valid", 30, 6100, 500)
    assert argv[:4] == [
        "train.py",
        "--workdir=/w",
        "--dataset=folder:/data/train",
        "--validation_dataset=folder:/data/valid",
    ]
    # The design is kept flag for flag ...
    for flag in ("--quantizer=residual", "--num_stages=4", "--quantizer_dropout=0.5", "--hidden_units=192"):
        assert flag in argv
    assert "--image_size=96" in argv and "--batch_size=16" in argv
    # ... and the length, the budget and the export are this run's (export happens after training).
    assert "--epochs=13" in argv and "--steps_per_epoch=500" in argv and "--max_minutes=30" in argv
    assert "--export=false" in argv
    assert not [a for a in argv if a.startswith(("--export_formats", "--export_quantizations", "--epochs=40"))]
    with pytest.raises(ValueError, match="should start with 'python train.py'; received 'python -m export"):
        codec_peer.our_command("python -m export --model m", "/w", "t", "v", 30, 10, 5)


def test_interpolation_is_exact_on_a_curve_linear_in_log_rate():
    psnrs = [p["psnr"] for p in OURS]
    assert table.interpolate(RATES, psnrs, 0.3) == pytest.approx(25.0 + 3.0 * math.log2(3.0))
    assert table.interpolate(RATES[::-1], psnrs[::-1], 0.2) == pytest.approx(28.0)  # order does not matter
    assert table.interpolate(RATES, psnrs, 0.05) is None  # outside the curve: no extrapolation
    assert table.interpolate(RATES[:1], psnrs[:1], 0.1) is None
    assert table.rate_for(RATES, psnrs, 29.5) == pytest.approx(0.1 * 2**1.5)
    assert table.rate_for(RATES, psnrs, 40.0) is None
    assert table.rate_for(RATES, [25.0, 27.0, 26.0, 28.0], 26.5) is None  # not increasing: no inverse


def test_comparison_at_the_peers_rate_and_verdict():
    peer = dict(bits_per_pixel=0.2, psnr=27.0, ms_ssim=0.86, **{"lambda": 0.0035})
    (c,) = table.compare(OURS, [peer])
    assert c["psnr_difference_db"] == pytest.approx(1.0)  # ours 28 dB at 0.2 bpp
    assert c["ms_ssim_difference"] == pytest.approx(0.9 - 0.86)
    # Ours reaches 27 dB at 0.1 * 2**(2/3) bpp: that many bits fewer than the peer's 0.2.
    assert c["rate_change_percent"] == pytest.approx(100 * (2 ** (2 / 3) / 2 - 1))
    assert c["nearest"] == dict(quality=2, bpp_ratio=1.0, psnr_difference_db=pytest.approx(1.0))
    assert table.verdict(c) == "ours wins at 0.200 bpp by 1.00 dB; for the peer's 27.00 dB we need -20.6% bits"
    (far,) = table.compare(OURS, [dict(peer, bits_per_pixel=1.6, psnr=33.0)])
    assert far["psnr_difference_db"] is None
    assert table.verdict(far).startswith("the peer's rate 1.600 bpp is outside our curve; our nearest point (q4")


def test_bd_needs_two_peer_points_and_is_computed_with_them():
    one = table.bd_figures(OURS, [dict(bits_per_pixel=0.2, psnr=27.0)])
    assert one["bd_rate_percent"] is None and "at least 2 points" in one["why"]
    two = table.bd_figures(OURS, [dict(bits_per_pixel=r, psnr=p["psnr"] - 0.5) for r, p in zip(RATES, OURS)])
    assert two["bd_psnr_db"] == pytest.approx(0.5)


def test_the_table_lists_both_sides_and_the_differences():
    peer = dict(bits_per_pixel=0.2, psnr=27.0, ms_ssim=0.86, steps=300, **{"lambda": 0.0035})
    result = dict(
        minutes=30,
        ours=dict(steps=600, points={m: OURS for m in table.METHODS}),
        peer=dict(points=[peer]),
        comparison={m: table.compare(OURS, [peer]) for m in table.METHODS},
        bd={m: table.bd_figures(OURS, [peer]) for m in table.METHODS},
    )
    text = table.markdown(result)
    assert "| ours q2, static | 600 | 0.200 | 28.00 | 0.9000 |" in text
    assert "| bmshj2018-factorized, lambda 0.0035 | 300 | 0.200 | 27.00 | 0.8600 |" in text
    assert "| codec (30 min of training each) | steps |" in text
    assert "| static, vs 0.200 bpp, 27.00 dB | +1.00 dB | +0.0400 | -20.6% |" in text
    assert "BD (packed against the peer's curve): n/a, anchor curve needs at least 2 points; received 1." in text


def test_steps_come_from_the_time_limits_log_line():
    log = "I1201 loop.py:242] Stopped by max_minutes=30 after 1234 training steps in this run.\n"
    assert codec_peer.our_steps_done(log, 6000) == 1234
    assert codec_peer.our_steps_done("trained after 12 epochs", 6000) == 6000
    assert np.isfinite(table.interpolate(RATES, [p["ms_ssim"] for p in OURS], 0.5))

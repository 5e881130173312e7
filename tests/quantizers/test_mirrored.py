"""Quantizer state under MirroredStrategy equals one device (docs/design.md, fact 4)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

TOLERANCE = 1e-5  # absolute; float32 all-reduce sums in another order


@pytest.fixture(scope="module")
def report():
    out = subprocess.run(
        [sys.executable, str(REPO / "tests" / "children" / "mirrored_quantizers.py")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = [text for text in out.stdout.splitlines() if text.startswith("REPORT ")][-1]
    return json.loads(line[len("REPORT ") :])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ema", "ema_restart", "vq_restart_cosine"])
def test_layer_state_and_metrics_match_one_device(report, name):
    case = report[name]
    assert case["num_copies"] == 2 and case["replica_copies_equal"]
    assert case["single"].keys() == case["mirrored"].keys()
    for key in case["single"]:
        np.testing.assert_allclose(case["mirrored"][key], case["single"][key], atol=TOLERANCE, err_msg=key)
    np.testing.assert_allclose(case["mirrored_metrics"], case["single_metrics"], atol=TOLERANCE)


@pytest.mark.slow
def test_restarts_really_happened_in_the_compared_runs(report):
    # Guard against a vacuous comparison: the restart configs must have moved
    # codes away from their initial values differently from plain EMA.
    for name in ("ema_restart", "vq_restart_cosine"):
        steps = next(v for k, v in report[name]["single"].items() if k.endswith("steps"))
        assert steps == 4
    ema = np.array(next(v for k, v in report["ema"]["single"].items() if k.endswith("codebook")))
    restarted = np.array(next(v for k, v in report["ema_restart"]["single"].items() if k.endswith("codebook")))
    assert np.abs(ema - restarted).max() > 1e-3


@pytest.mark.slow
def test_model_fit_with_kmeans_init_and_restarts_matches_one_device(report):
    case = report["model"]
    for key in case["single"]:
        np.testing.assert_allclose(case["mirrored"][key], case["single"][key], atol=TOLERANCE, err_msg=key)
    for key in case["single_metrics"]:
        np.testing.assert_allclose(
            case["mirrored_metrics"][key], case["single_metrics"][key], atol=TOLERANCE, err_msg=key
        )

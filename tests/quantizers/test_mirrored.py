"""Quantizer state under MirroredStrategy equals one device (docs/design.md, fact 4).

One child process (tests/children/mirrored.py) sets up two logical CPUs and
trains every stateful configuration for a few steps on one device and on two
replicas at the same global batch: the EMA and restart quantizers
(`mirrored_quantizers.py`), and the residual stages (EMA, quantizer dropout,
restarts, a shared codebook), EMA with low-dimensional codes and the rotation
trick, and Gumbel sampling with a temperature variable
(`mirrored_quantizer_family.py`).
"""

import json
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest

from tests.conftest import REPO

TOLERANCE = 1e-5  # absolute; float32 all-reduce sums in another order
LAYER_CASES = ["residual_ema_dropout_restart", "residual_shared_ema", "ema_lookup_dim_rotation", "gumbel_hard"]


def _run_child():
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", str(REPO / "tests" / "children" / "mirrored.py")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def mirrored_report():
    """The child's report: `quantizers` and `family`, one dict of runs each."""
    out = _run_child()
    if out.returncode == -signal.SIGSEGV:
        # CI once saw this child die of SIGSEGV inside TensorFlow's runtime
        # (stop 26), which 12 reruns and the next CI run did not reproduce.
        # One rerun, reported with the crashed run's stack, keeps that rare
        # crash from failing the suite; a crash that repeats still fails.
        warnings.warn(f"mirrored child crashed (SIGSEGV), rerun once; its stack:\n{out.stderr[-3000:]}", stacklevel=2)
        out = _run_child()
    assert out.returncode == 0, out.stderr[-3000:]
    line = [text for text in out.stdout.splitlines() if text.startswith("REPORT ")][-1]
    return json.loads(line[len("REPORT ") :])


@pytest.fixture(scope="module")
def quantizers_report(mirrored_report):
    return mirrored_report["quantizers"]


@pytest.fixture(scope="module")
def family_report(mirrored_report):
    return mirrored_report["family"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ema", "ema_restart", "vq_restart_cosine"])
def test_layer_state_and_metrics_match_one_device(quantizers_report, name):
    case = quantizers_report[name]
    assert case["num_copies"] == 2 and case["replica_copies_equal"]
    assert case["single"].keys() == case["mirrored"].keys()
    for key in case["single"]:
        np.testing.assert_allclose(case["mirrored"][key], case["single"][key], atol=TOLERANCE, err_msg=key)
    np.testing.assert_allclose(case["mirrored_metrics"], case["single_metrics"], atol=TOLERANCE)


@pytest.mark.slow
def test_restarts_really_happened_in_the_compared_runs(quantizers_report):
    # Guard against a vacuous comparison: the restart configs must have moved
    # codes away from their initial values differently from plain EMA.
    for name in ("ema_restart", "vq_restart_cosine"):
        steps = next(v for k, v in quantizers_report[name]["single"].items() if k.endswith("steps"))
        assert steps == 4
    ema = np.array(next(v for k, v in quantizers_report["ema"]["single"].items() if k.endswith("codebook")))
    restarted = np.array(
        next(v for k, v in quantizers_report["ema_restart"]["single"].items() if k.endswith("codebook"))
    )
    assert np.abs(ema - restarted).max() > 1e-3


@pytest.mark.slow
def test_model_fit_with_kmeans_init_and_restarts_matches_one_device(quantizers_report):
    case = quantizers_report["model"]
    for key in case["single"]:
        np.testing.assert_allclose(case["mirrored"][key], case["single"][key], atol=TOLERANCE, err_msg=key)
    for key in case["single_metrics"]:
        np.testing.assert_allclose(
            case["mirrored_metrics"][key], case["single_metrics"][key], atol=TOLERANCE, err_msg=key
        )


@pytest.mark.slow
@pytest.mark.parametrize("name", LAYER_CASES)
def test_layer_state_and_outputs_match_one_device(family_report, name):
    case = family_report[name]
    assert case["replica_copies_equal"]
    assert case["single"].keys() == case["mirrored"].keys()
    for key in case["single"]:
        np.testing.assert_allclose(case["mirrored"][key], case["single"][key], atol=TOLERANCE, err_msg=key)
    for t, (one, two) in enumerate(zip(case["single_outputs"], case["mirrored_outputs"])):
        np.testing.assert_array_equal(two["indices"], one["indices"], err_msg=f"step {t}")
        np.testing.assert_allclose(two["quantized"], one["quantized"], atol=TOLERANCE, err_msg=f"step {t}")
        np.testing.assert_allclose(two["perplexity"], one["perplexity"], atol=1e-4, err_msg=f"step {t}")


@pytest.mark.slow
def test_the_compared_runs_exercise_the_state(family_report):
    # Guard against vacuous comparisons: the stateful pieces really moved.
    dropout = family_report["residual_ema_dropout_restart"]["single_outputs"]
    full = [np.asarray(o["quantized"]) for o in dropout]
    assert len({float(np.round(np.abs(q).mean(), 4)) for q in full}) == len(full)
    steps = [v for k, v in family_report["residual_ema_dropout_restart"]["single"].items() if k.endswith("steps")]
    assert steps and all(s == 4 for s in steps)
    gumbel = family_report["gumbel_hard"]["single"]
    assert next(v for k, v in gumbel.items() if k.endswith("temperature")) == pytest.approx(0.8**3)
    assert next(v for k, v in gumbel.items() if k.endswith("steps")) == 4


@pytest.mark.slow
@pytest.mark.parametrize("name", ["model_residual", "model_gumbel"])
def test_model_fit_matches_one_device(family_report, name):
    case = family_report[name]
    for key in case["single"]:
        np.testing.assert_allclose(case["mirrored"][key], case["single"][key], atol=TOLERANCE, err_msg=key)
    for key in case["single_history"]:
        np.testing.assert_allclose(case["mirrored_history"][key], case["single_history"][key], atol=1e-4, err_msg=key)
    if name == "model_residual":  # the projection pair around the stages was compared too
        assert any(k.endswith("in_projection_kernel") for k in case["single"])
        assert any(k.endswith("out_projection_kernel") for k in case["single"])
    if name == "model_gumbel":
        temperature = next(v for k, v in case["single"].items() if k.endswith("temperature"))
        assert temperature == pytest.approx(max(0.5, np.exp(-0.3 * 3)))  # annealed before the 4th step

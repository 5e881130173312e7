"""Shared pytest setup: quiet TensorFlow, the repo on sys.path, common paths."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pytest  # noqa: E402

MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def _float32_policy():
    """Tests that change the global dtype policy must not leak it."""
    import keras

    yield
    keras.mixed_precision.set_global_policy("float32")

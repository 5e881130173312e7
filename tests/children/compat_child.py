"""Loads the compatibility fixtures in a fresh process (run by test_compat.py).

Prints one line per fixture, `OK name` or `FAIL name: why`, and exits 0 only
when every fixture matched: a fresh process proves that `import vqvae_tf`
alone registers every class that the saved files name.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import vqvae_tf  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Float outputs of the same weights on the same CPU: only op-order noise.
ATOL = 1e-5


def check_keras(path):
    expected = np.load(path.with_suffix(".npz"))
    model = keras.models.load_model(path)
    if path.stem.startswith("vqvae"):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.codes(expected["x"])), expected["codes"])
        got = model(expected["x"], training=False)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected["reconstruction"], atol=ATOL)
    elif path.stem == "gaussian_vae":
        got = model(expected["x"], training=False)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected["reconstruction"], atol=ATOL)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(model.likelihood_scale()), expected["scale"], atol=ATOL)
    else:
        got = model(expected["codes"], training=False)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected["logits"], atol=ATOL)


def check_stream(path, tmp):
    out = Path(tmp) / (path.stem + ".png")
    vqvae_tf.decompress(path, out)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.load(path.with_suffix(".npy")))


def main():
    import tempfile

    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        checks = [(p, check_keras, ()) for p in sorted((FIXTURES / "keras").glob("*.keras"))]
        checks += [(p, check_stream, (tmp,)) for p in sorted((FIXTURES / "streams").glob("*.vqz"))]
        for path, check, args in checks:
            try:
                check(path, *args)
                print(f"OK {path.name}")
            except Exception as error:  # report every fixture, not just the first failure
                failures += 1
                print(f"FAIL {path.name}: {type(error).__name__}: {error}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

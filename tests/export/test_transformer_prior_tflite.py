"""The Transformer prior's TFLite export (`transformer_prior_tflite`) and its LiteRT runner (`LiteTransformerPrior`)."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from vqvae_tf.codec.prior_coding.lite_transformer import LiteTransformerPrior
from vqvae_tf.export import tflite_graph
from vqvae_tf.export.errors import ExportError
from vqvae_tf.export.transformer_prior_tflite import cache_shape, convert_transformer_prior
from vqvae_tf.priors.pixelcnn import GatedPixelCNN
from vqvae_tf.priors.transformer import TransformerPrior

REPO = Path(__file__).resolve().parents[2]
K, MAP = 12, (2, 5)  # two rows: the raster's row and column position embeddings both matter
LENGTH = MAP[0] * MAP[1]
# LiteRT's float32 kernels vs TensorFlow's on the full causal pass. Measured
# max |difference| on this prior: 8.3e-7 (batch 1), 8.9e-7 (batch 3), with
# logits up to 2.1 in size (2026-12-02).
ATOL = 1e-5


@pytest.fixture(scope="module")
def prior():
    keras.utils.set_random_seed(0)
    prior = TransformerPrior(K, MAP, embed_dim=16, num_heads=2, num_layers=2)
    prior(np.zeros((1,) + MAP, np.int32))
    return prior


@pytest.fixture(scope="module")
def model_bytes(prior):
    return convert_transformer_prior(prior)


@pytest.fixture(scope="module")
def lite(model_bytes):
    return LiteTransformerPrior(model_bytes, map_shape=MAP)


def _tokens(batch, length=LENGTH, seed=0):
    return np.random.default_rng(seed).integers(0, K, (batch, length)).astype(np.int32)


@pytest.mark.parametrize("batch", [1, 3])
def test_litert_logits_match_the_keras_full_pass(prior, lite, batch):
    tokens = _tokens(batch, seed=batch)
    expected = np.asarray(prior(tokens.reshape((batch,) + MAP))).reshape(batch, LENGTH, K)
    logits = lite.logits(tokens)
    assert logits.shape == (batch, LENGTH, K) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected, rtol=0, atol=ATOL)
    # A prefix: causal, so its logits are the full map's first positions.
    np.testing.assert_allclose(lite.logits(tokens[:, :4]), expected[:, :4], rtol=0, atol=ATOL)


def test_the_incremental_decoder_gets_bit_identical_logits(lite, model_bytes, tmp_path):
    tokens = _tokens(3, seed=7)
    encoded = lite.logits(tokens)
    lite.logits(_tokens(1))  # another batch size in between resizes the interpreter
    state, kept = lite.start(batch=3), None
    for t in range(LENGTH):
        # The decoder knows the tokens before t only.
        logits, state = lite.next(state, None if t == 0 else tokens[:, t - 1].copy())
        np.testing.assert_array_equal(logits, encoded[:, t])
        kept = state if t == 3 else kept
    # States are never changed in place: decoding resumes from a kept one.
    logits, _ = lite.next(kept, tokens[:, 3])
    np.testing.assert_array_equal(logits, encoded[:, 4])
    # A decoder with its own interpreter on the written file.
    path = tmp_path / "prior.tflite"
    path.write_bytes(model_bytes)
    np.testing.assert_array_equal(LiteTransformerPrior(path, map_shape=MAP).logits(tokens), encoded)


def test_the_file_describes_itself(prior, lite, model_bytes, tmp_path):
    assert (lite.num_codes, lite.length, lite.map_shape, lite.num_classes) == (K, LENGTH, MAP, 0)
    assert LiteTransformerPrior(model_bytes).map_shape == (1, LENGTH)  # a speech prior's token row
    assert lite.start(2).cache.shape == cache_shape(prior, 2) == (4, 2, 2, LENGTH, 8)
    assert tflite_graph.custom_ops(model_bytes) == []  # builtins only: no Flex ops
    path = tmp_path / "written.tflite"
    assert convert_transformer_prior(prior, path) == path.read_bytes()


def _one_line(error):
    message = str(error.value)
    assert "\n" not in message
    return message


def test_unsupported_priors_are_refused_in_one_line():
    with pytest.raises(ExportError, match="unconditional prior; received one with 3 classes") as error:
        convert_transformer_prior(TransformerPrior(K, MAP, num_classes=3, embed_dim=16, num_heads=2, num_layers=1))
    _one_line(error)
    with pytest.raises(ExportError, match="supports TransformerPrior; received GatedPixelCNN") as error:
        convert_transformer_prior(GatedPixelCNN(K, channels=8, num_layers=1, map_shape=MAP))
    _one_line(error)
    with pytest.raises(ExportError, match="must be built") as error:
        convert_transformer_prior(TransformerPrior(K, MAP, embed_dim=16, num_heads=2, num_layers=1))
    _one_line(error)


@pytest.mark.parametrize(
    "tokens, message",
    [
        (np.full((2, 4), K, np.int32), r"`tokens` must be in \[0, 12\); received values in \[12, 12\]"),
        (np.full((2, 4), -1, np.int64), r"`tokens` must be in \[0, 12\); received values in \[-1, -1\]"),
        (np.zeros((4,), np.int32), r"\(B, T_used\) with B >= 1 and 1 <= T_used <= 10; received shape \(4,\)"),
        (np.zeros((1, 11), np.int32), r"1 <= T_used <= 10; received shape \(1, 11\)"),
        (np.zeros((1, 0), np.int32), r"received shape \(1, 0\)"),
        (np.zeros((1, 4), np.float32), "`tokens` must be integers; received dtype float32"),
    ],
)
def test_bad_tokens_are_refused_in_one_line(lite, tokens, message):
    with pytest.raises(ValueError, match=message) as error:
        lite.logits(tokens)
    _one_line(error)


def test_bad_decoder_calls_are_refused_in_one_line(lite, model_bytes, tmp_path):
    state = lite.start(2)
    with pytest.raises(ValueError, match="position 0 has no previous token; expected previous=None") as error:
        lite.next(state, np.zeros(2, np.int32))
    _one_line(error)
    _, state = lite.next(state)
    for previous, message in [
        (None, r"`previous` must have shape \(2,\); received shape \(\)"),
        (np.zeros(3, np.int32), r"`previous` must have shape \(2,\); received shape \(3,\)"),
        (np.array([0, K]), r"`previous` must be in \[0, 12\); received values in \[0, 12\]"),
    ]:
        with pytest.raises(ValueError, match=message) as error:
            lite.next(state, previous)
        _one_line(error)
    with pytest.raises(ValueError, match="models 10 positions; received a state at position 10"):
        lite.next(state._replace(position=LENGTH), np.zeros(2, np.int32))
    with pytest.raises(ValueError, match=r"`batch` must be a positive int; received 0"):
        lite.start(0)
    with pytest.raises(ValueError, match=r"H \* W = 10 \(the file's length\); received \(3, 3\)"):
        LiteTransformerPrior(model_bytes, map_shape=(3, 3))
    with pytest.raises(FileNotFoundError, match="not found"):
        LiteTransformerPrior(tmp_path / "missing.tflite")


# The runner on a simulated device: importing TensorFlow or Keras raises
# ImportError (a None entry in sys.modules), so the run proves it needs neither.
_DEVICE = """
import sys
for name in ("tensorflow", "keras", "tf_keras"):
    sys.modules[name] = None
import numpy as np
from vqvae_tf.codec.prior_coding.lite_transformer import LiteTransformerPrior
logits = LiteTransformerPrior(sys.argv[1]).logits(np.zeros((2, 3), np.int32))
print(logits.shape)
"""


def test_the_runner_needs_no_tensorflow(model_bytes, tmp_path):
    path = tmp_path / "prior.tflite"
    path.write_bytes(model_bytes)
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-c", _DEVICE, str(path)], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"(2, 3, {K})"

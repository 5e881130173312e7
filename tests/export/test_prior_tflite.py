"""The prior's TFLite export (`vqvae_tf.export.prior_tflite`) and its LiteRT runner (`LitePrior`)."""

import json

import keras
import numpy as np
import pytest

from vqvae_tf.codec.prior_coding import decode_prior_payload, encode_prior_payload, prior_fingerprint
from vqvae_tf.codec.prior_coding.lite_prior import LitePrior
from vqvae_tf.export.prior_tflite import convert_prior, split_geometry
from vqvae_tf.priors.pixelcnn import GatedPixelCNN

K, MAP = 32, (6, 6)


@pytest.fixture(scope="module")
def prior():
    keras.utils.set_random_seed(0)
    prior = GatedPixelCNN(K, channels=16, num_layers=2, map_shape=MAP)
    prior(np.zeros((1,) + MAP, np.int32))
    return prior


def _write(prior, directory, quantization="float32"):
    path = directory / f"prior_{quantization}.tflite"
    path.write_bytes(convert_prior(prior, quantization))
    sidecar = dict(num_codes=K, map_shape=list(MAP), fingerprint=prior_fingerprint(prior).hex())
    sidecar["tflite"] = dict(reach=split_geometry(prior)[0])
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    return LitePrior(path)


def test_litert_logits_match_keras(prior, tmp_path):
    lite = _write(prior, tmp_path)
    codes = np.random.default_rng(0).integers(0, K, (4,) + MAP).astype(np.int32)
    expected = np.asarray(prior(codes))
    for row in range(MAP[0]):
        for col in range(MAP[1]):
            # Stated tolerance: float32 kernels of TFLite vs TensorFlow.
            np.testing.assert_allclose(lite.logits_at(codes, row, col), expected[:, row, col], rtol=0, atol=1e-5)


def test_keras_encoded_stream_decodes_with_litert(prior, tmp_path):
    lite = _write(prior, tmp_path)
    codes = np.random.default_rng(1).integers(0, K, (9, 14)).astype(np.int32)
    params, payload = encode_prior_payload(prior, codes)  # TensorFlow, whole maps in one call
    np.testing.assert_array_equal(decode_prior_payload(lite, params, payload, codes.shape), codes)
    params, payload = encode_prior_payload(lite, codes)
    np.testing.assert_array_equal(decode_prior_payload(lite, params, payload, codes.shape), codes)


def test_a_prior_without_its_sidecar_fields_is_refused_clearly(prior, tmp_path):
    path = _write(prior, tmp_path).path
    path.with_suffix(".json").write_text(json.dumps({"num_codes": K}))
    with pytest.raises(ValueError, match="tflite.reach"):
        LitePrior(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        LitePrior(tmp_path / "missing.tflite")

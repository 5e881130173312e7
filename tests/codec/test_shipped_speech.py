"""The shipped speech model `speech16k`: a held-out LJ Speech clip through the codec at every quality, and its preset.

The clip is the first of `vqvae_tf/data/splits/ljspeech16k_validation.txt`
(never trained on), read from `../shared/data/speech/ljspeech16k`.
"""

import numpy as np
import pytest

from vqvae_tf import codec
from vqvae_tf.codec import audio_quality
from vqvae_tf.data.audio import LJSPEECH16K_VALIDATION, read_name_list
from vqvae_tf.utils.wav import read_wav

from ..conftest import REPO

CLIP = REPO.parent / "shared" / "data" / "speech" / "ljspeech16k" / read_name_list(LJSPEECH16K_VALIDATION)[0]
# SI-SNR (dB) and wide-band PESQ of the clip through the codec (static method) at each quality,
# measured when the model was shipped: a regression floor.
SHIPPED_SPEECH = {
    "speech16k": {
        1: (-2.30, 1.318),
        2: (1.55, 1.617),
        3: (3.15, 1.793),
        4: (3.90, 1.793),
        5: (4.26, 1.837),
        6: (4.46, 1.859),
    }
}
#: Bytes of the prior stream over the static one's, all stages, on the clip (measured at shipping: 1278 / 1518).
PRIOR_BYTES_RATIO = 0.842


@pytest.fixture(scope="module")
def clip():
    samples, rate = read_wav(CLIP)
    assert rate == 16000
    return samples[: 5 * rate]  # 5 s keeps PESQ quick


@pytest.mark.parametrize("name", sorted(SHIPPED_SPEECH))
def test_shipped_speech_model_keeps_its_measured_quality(name, clip):
    audio_models = [n for n in codec.shipped_models() if codec.load_model(n).kind == "audio"]
    assert sorted(audio_models) == sorted(SHIPPED_SPEECH)  # a new speech model needs its figures here
    model = codec.load_model(name)
    assert (model.sample_rate, model.causal) == (16000, True)
    for quality, (si_snr, pesq) in SHIPPED_SPEECH[name].items():
        data = codec.compress_audio(clip, 16000, model, "static", quality=quality)
        decoded, rate = codec.decompress_audio(data)  # the model found from the stream's id
        assert rate == 16000 and decoded.shape == clip.shape
        # 0.1 dB and 0.05 PESQ: room for another CPU's float rounding, far below a broken encoder's cost.
        assert audio_quality.si_snr(clip, decoded) >= si_snr - 0.1, quality
        assert audio_quality.pesq_wb(clip, decoded) >= pesq - 0.05, quality
    assert 8 * len(data) / 5 / 1000 <= 3.0  # all six stages: 3 kbps packed, 2.43 with static coding here


def test_the_speech_preset_is_its_codec_model(clip):
    from vqvae_tf.models.presets import list_presets
    from vqvae_tf.models.vqvae import VQVAE
    from vqvae_tf.utils.fingerprint import model_id

    meta = list_presets()["speech16k"]
    model = VQVAE.from_preset("speech16k")  # safe mode, no custom_objects
    shipped = codec.load_model("speech16k")
    assert meta["model_id"] == model_id(model) == shipped.model_id
    assert (model.rank, model.sample_rate, model.downsample) == (1, 16000, 320)
    frames = clip[: 320 * 50]  # one second
    lite_codes = shipped.encoder.encode(frames[:, None])
    assert lite_codes.shape == (50, 6)
    # The same weights: the Keras decoder turns the codec's codes into the codec's samples (the float16
    # decoder of a compact preset's weights: 6.0e-5 at most on held-out clips, measured).
    keras_samples = np.asarray(model.decode_codes(lite_codes[None]))[0, :, 0]
    np.testing.assert_allclose(keras_samples, shipped.decoder.decode(lite_codes)[:, 0], atol=1e-4)
    # The float16 encoder picks the float model's codes on most frames (Dec 2 model: 0.63-1.0 of first-stage codes
    # agree on held-out clips, measured: the codebook holds many near-equal codes) and costs 0.002 dB
    # SI-SNR on this second, measured (Dec 3 model). Hold it to 0.05 dB here.
    float_si_snr = audio_quality.si_snr(frames, np.asarray(model(frames[None, :, None]))[0, :, 0])
    lite_si_snr = audio_quality.si_snr(frames, shipped.decoder.decode(lite_codes)[:, 0])
    assert lite_si_snr >= float_si_snr - 0.05


def test_the_shipped_speech_prior_codes_the_same_audio_in_fewer_bytes(clip):
    model = codec.load_model("speech16k")
    assert model.prior_path is not None and model.prior_path.name == "prior.tflite"
    static = codec.compress_audio(clip, 16000, model, "static")
    prior = codec.compress_audio(clip, 16000, model, "prior")
    decoded, rate = codec.decompress_audio(prior)  # model and prior found from the stream
    assert rate == 16000 and decoded.shape == clip.shape
    np.testing.assert_array_equal(decoded, codec.decompress_audio(static)[0])  # the same codes, all six stages
    # Measured when the prior was shipped: PRIOR_BYTES_RATIO of the static stream's bytes on this clip;
    # 0.02 of room for another CPU's rounding (which changes a grid flag, not the codes).
    assert len(prior) <= (PRIOR_BYTES_RATIO + 0.02) * len(static)

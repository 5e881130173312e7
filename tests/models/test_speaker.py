"""The speaker-conditioned decoder of `VQVAE` (`num_speakers=`): conditioning, checks, saving and training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.layer_checks import run_model_saving_test
from tests.tiny_models import tiny_speech_vqvae
from vqvae_tf.models.speaker import SpeakerEmbedding
from vqvae_tf.models.vqvae import VQVAE

SIZES = dict(strides=(4, 5), hidden_units=4, code_dim=8)


def waves(n=4, steps=400, seed=0):
    """Harmonic tones of different pitches with a little noise: clips that give varied codes."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps) / 8000.0
    pitch = rng.uniform(100, 400, (n, 1))
    x = (
        0.1 * np.sin(2 * np.pi * pitch * t)
        + 0.05 * np.sin(4 * np.pi * pitch * t)
        + 0.01 * rng.standard_normal((n, steps))
    )
    return x[..., None].astype("float32")


def conditioned(num_speakers=3, seed=0, **overrides):
    """A tiny conditioned model, built, with speaker vectors far apart (trained ones are; the initial ones are tiny)."""
    model = tiny_speech_vqvae(16, seed=seed, num_speakers=num_speakers, **SIZES, **overrides)
    model((waves(), np.zeros(4, "int32")))
    embeddings = model.speaker_embedding.embeddings
    embeddings.assign(np.random.default_rng(seed).standard_normal(embeddings.shape).astype("float32"))
    return model


def paths(model):
    """Weight paths without the model's own (numbered) name."""
    return [w.path.split("/", 1)[1] for w in model.weights]


def test_default_model_has_no_speaker_config_or_weights():
    plain = tiny_speech_vqvae(16, seed=0, **SIZES)
    plain(waves())
    config = plain.get_config()
    assert not {"num_speakers", "speaker_dim", "speaker_conditioning"} & set(config)
    assert plain.speaker_embedding is None and plain.speaker_film is None
    assert not [p for p in paths(plain) if "speaker" in p]
    # The conditioned model adds exactly the embedding (and the stages' FiLM tables) after the same weights.
    model = conditioned()
    assert paths(model) == paths(plain) + ["speaker_embedding/embeddings"]
    staged = conditioned(speaker_conditioning="stages")
    film = [f"speaker_film/{kind}{i}" for i in range(2) for kind in ("scale", "shift")]
    assert paths(staged) == paths(plain) + ["speaker_embedding/embeddings"] + film
    # One FiLM pair per decoder stage, as wide as the stage's input: 4 * 2**2 channels, then 4 * 2.
    assert [tuple(w.shape) for w in staged.speaker_film.weights] == [(3, 16), (3, 16), (3, 8), (3, 8)]


def test_speaker_changes_the_decoded_waveform_and_nothing_else():
    model = conditioned()
    x = waves()
    codes = model.codes(x)
    as_0, as_1 = model.decode_codes(codes, speaker=0).numpy(), model.decode_codes(codes, speaker=1).numpy()
    assert np.abs(as_0 - as_1).mean() > 0.1 * np.abs(as_0).mean()
    # The codes do not depend on the speaker; call((x, ids)) decodes them as each clip's speaker.
    np.testing.assert_array_equal(model.codes((x, np.ones(4, "int32"))).numpy(), codes.numpy())
    ids = np.array([0, 1, 1, 0], "int32")
    np.testing.assert_allclose(model((x, ids)).numpy(), np.where(ids[:, None, None] == 0, as_0, as_1), atol=1e-6)
    np.testing.assert_allclose(model({"waveform": x, "speaker": ids}).numpy(), model((x, ids)).numpy())


def test_stage_film_conditions_the_decoder_without_the_input_vector():
    model = conditioned(speaker_conditioning="stages")
    model.speaker_embedding.embeddings.assign(np.zeros((3, 8), "float32"))
    codes = model.codes(waves())
    # FiLM tables start at zero: the identity, so the speakers decode alike ...
    np.testing.assert_allclose(model.decode_codes(codes, speaker=0), model.decode_codes(codes, speaker=1))
    # ... until a speaker's scale or shift moves.
    model.speaker_film.tables[1][1].assign(np.tile(np.array([[0.0], [0.5], [0.0]], "float32"), (1, 8)))
    as_0, as_1 = model.decode_codes(codes, speaker=0).numpy(), model.decode_codes(codes, speaker=1).numpy()
    np.testing.assert_allclose(as_0, model.decode_codes(codes, speaker=2).numpy())
    assert np.abs(as_0 - as_1).mean() > 0.05 * np.abs(as_0).mean()


def test_speaker_dim_projects_a_smaller_embedding():
    model = conditioned(speaker_dim=2)
    shapes = {w.path.split("/", 1)[1]: tuple(w.shape) for w in model.speaker_embedding.weights}
    assert shapes == {"speaker_embedding/embeddings": (3, 2), "speaker_embedding/projection": (2, 8)}
    codes = model.codes(waves())
    assert not np.allclose(model.decode_codes(codes, speaker=0), model.decode_codes(codes, speaker=2))


def test_speaker_embedding_layer_config_and_shapes():
    layer = SpeakerEmbedding(num_speakers=5, units=8, speaker_dim=3)
    assert SpeakerEmbedding.from_config(layer.get_config()).get_config() == layer.get_config()
    assert layer(np.array([0, 4])).shape == (2, 8)
    assert layer(np.array([[1], [2], [3]])).shape == (3, 8)


@pytest.mark.parametrize(
    "speaker, error, message",
    [
        (3, ValueError, r"speaker ids must be in \[0, 3\); received \[3\]"),
        (np.array([0, -1, 2, 5]), ValueError, r"must be in \[0, 3\); received \[-1, 5\]"),
        (np.zeros(4, "float32"), TypeError, "speaker ids must be integers in \\[0, 3\\); received dtype float32"),
        (np.zeros((4, 2), "int32"), ValueError, r"shaped \(batch,\) or \(batch, 1\); received shape \(4, 2\)"),
        (None, ValueError, "decodes for a speaker: pass speaker="),
    ],
)
def test_bad_speaker_ids_in_decode_codes_fail_clearly(speaker, error, message):
    model = conditioned()
    with pytest.raises(error, match=message):
        model.decode_codes(model.codes(waves()), speaker=speaker)


def test_missing_or_unexpected_speaker_inputs_fail_clearly():
    model = conditioned()
    x = waves()
    with pytest.raises(ValueError, match=r"takes \(waveform, speaker_id\) inputs .*received a EagerTensor|ndarray"):
        model(x)
    with pytest.raises(ValueError, match=r"dict with keys \['waveform', 'speaker'\]; received keys \['audio'"):
        model({"audio": x, "speaker": np.zeros(4, "int32")})
    model.compile(optimizer="adam")
    with pytest.raises(
        ValueError, match="needs speaker ids: batches of \\(waveform, speaker_id\\); received waveforms"
    ):
        model.fit(x, batch_size=2, epochs=1, verbose=0)
    plain = tiny_speech_vqvae(16, seed=0, **SIZES)
    with pytest.raises(ValueError, match=r"no speaker embedding \(num_speakers=None\); received speaker=0"):
        plain.decode_codes(plain.codes(x), speaker=0)
    with pytest.raises(ValueError, match="speaker_dim and speaker_conditioning need num_speakers"):
        VQVAE(input_channels=1, rank=1, speaker_dim=4, **SIZES)
    with pytest.raises(ValueError, match="`speaker_conditioning` must be one of"):
        VQVAE(input_channels=1, rank=1, num_speakers=2, speaker_conditioning="film", **SIZES)
    with pytest.raises(ValueError, match="'stages' needs the speech network"):
        VQVAE(input_channels=3, num_speakers=2, speaker_conditioning="stages")
    with pytest.raises(ValueError, match="`num_speakers` must be an int >= 1; received 0"):
        VQVAE(input_channels=1, rank=1, num_speakers=0, **SIZES)


def test_out_of_range_ids_in_fit_fail_with_the_range():
    model = conditioned()
    model.compile(optimizer="adam")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"speaker ids must be in \[0, 3\)"):
        model.fit(waves(), np.array([0, 1, 2, 3], "int32"), batch_size=4, epochs=1, verbose=0)


@pytest.mark.parametrize("structure", ["pairs", "nested", "arrays"])
def test_fit_one_step_trains_the_speaker_vectors_of_the_batch(structure):
    model = conditioned()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x, ids = waves(), np.array([0, 0, 1, 1], "int32")
    before = model.speaker_embedding.embeddings.numpy().copy()
    if structure == "arrays":
        history = model.fit(x, ids, batch_size=4, epochs=1, verbose=0)
    else:
        data = tf.data.Dataset.from_tensor_slices((x, ids)).batch(4)
        history = model.fit(data.map(lambda a, b: ((a, b),)) if structure == "nested" else data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = np.abs(model.speaker_embedding.embeddings.numpy() - before).max(axis=1) > 0
    # Speakers 0 and 1 were in the batch; speaker 2 got no gradient.
    assert changed.tolist() == [True, True, False]
    assert model.predict((x, ids), verbose=0).shape == x.shape
    assert model.evaluate(x, ids, verbose=0, return_dict=True)["loss"] > 0


@pytest.mark.parametrize("options", [dict(speaker_dim=4), dict(speaker_conditioning="stages")])
def test_conditioned_model_round_trips_through_a_keras_file(tmp_path, options):
    model = conditioned(**options)
    x, ids = waves(), np.array([2, 0, 1, 2], "int32")
    model.compile(optimizer="adam")
    model.fit(x, ids, batch_size=4, epochs=1, verbose=0)
    reloaded = run_model_saving_test(model, (x, ids), tmp_path)
    assert reloaded.get_config() == model.get_config()
    assert reloaded.get_config()["num_speakers"] == 3
    assert {k: reloaded.get_config()[k] for k in options} == options
    codes = model.codes(x)
    np.testing.assert_allclose(
        reloaded.decode_codes(codes, speaker=ids).numpy(), model.decode_codes(codes, speaker=ids).numpy(), atol=1e-6
    )

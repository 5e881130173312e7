"""A speaker-conditioned decoder for `VQVAE`: a learned vector per speaker added to the decoder's input frames.

The paper's voice conversion (van den Oord et al. 2017, sec. 4.3) decodes
one speaker's codes with another speaker's conditioning: the codes carry
what was said, the speaker vector how it sounds. `VQVAE(num_speakers=N)`
builds a `SpeakerEmbedding` and takes `(waveform, speaker_id)` inputs (or a
dict with the keys of `INPUT_KEYS`); `SpeakerInputsMixin` holds what the
model needs for that (splitting the inputs, the checks, the config), so that
`vqvae.py` stays one model.
"""

import keras
import numpy as np
import tensorflow as tf

from vqvae_tf.utils.checks import check_choice, check_int

#: Keys of a conditioned model's dict inputs: `{"waveform": (batch, T, C), "speaker": (batch,) int}`.
INPUT_KEYS = ("waveform", "speaker")
#: `speaker_conditioning` choices: "input" (a vector added to the decoder's input frames) and
#: "stages" (that, plus a per-speaker FiLM scale and shift at each stage of the speech decoder).
SPEAKER_CONDITIONINGS = ("input", "stages")


@keras.saving.register_keras_serializable(package="vqvae_tf")
class SpeakerEmbedding(keras.layers.Layer):
    """A learned `units`-vector per speaker id.

    Args:
        num_speakers: int >= 1, how many speakers (ids 0 .. num_speakers - 1).
        units: int, size of the vectors returned (the decoder's input
            channels, `code_dim`, for `VQVAE`).
        speaker_dim: int or None, size of the learned embedding; None means
            `units`. Another size is projected to `units` by a bias-free
            dense layer (a low-rank embedding).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        speaker_ids: int tensor `(batch,)` or `(batch, 1)`. Ids outside
            `[0, num_speakers)` raise an error (eagerly a `ValueError`; in a
            graph an `InvalidArgumentError` with the same message), never a
            silent zero vector.

    Output shape: `(batch, units)`.

    Example:

    >>> layer = SpeakerEmbedding(num_speakers=5, units=8)
    >>> layer(np.array([0, 4])).shape
    TensorShape([2, 8])
    """

    def __init__(self, num_speakers, units, speaker_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.num_speakers = check_int("num_speakers", num_speakers, minimum=1)
        self.units = check_int("units", units, minimum=1)
        self.speaker_dim = None if speaker_dim is None else check_int("speaker_dim", speaker_dim, minimum=1)

    def build(self, input_shape=None):
        size = self.units if self.speaker_dim is None else self.speaker_dim
        # Small random vectors: training starts from near the unconditioned decoder.
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_speakers, size),
            initializer=keras.initializers.RandomNormal(stddev=0.01),
        )
        self.projection = None
        if self.speaker_dim is not None and self.speaker_dim != self.units:
            self.projection = self.add_weight(name="projection", shape=(size, self.units), initializer="glorot_uniform")

    def call(self, speaker_ids):
        ids = check_speaker_ids(speaker_ids, self.num_speakers)
        vectors = tf.gather(tf.convert_to_tensor(self.embeddings), ids)
        if self.projection is not None:
            vectors = tf.matmul(vectors, tf.convert_to_tensor(self.projection))
        return vectors

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(num_speakers=self.num_speakers, units=self.units, speaker_dim=self.speaker_dim)
        return config


@keras.saving.register_keras_serializable(package="vqvae_tf")
class SpeakerFiLM(keras.layers.Layer):
    """A learned FiLM scale and shift per speaker for each of several feature widths.

    Args:
        num_speakers: int >= 1.
        channels: list of ints, the width of each modulated stage (a
            `SpeechDecoder`'s `film_points` widths).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        speaker_ids: int tensor `(batch,)` or `(batch, 1)`, checked as by
            `SpeakerEmbedding`.

    Output: a list of `(scale, shift)` pairs, each `(batch, channels[i])`;
    both start at zero (the identity `x * (1 + 0) + 0`).

    Example:

    >>> film = SpeakerFiLM(num_speakers=5, channels=[16, 8])
    >>> [tuple(scale.shape) for scale, shift in film(np.array([0, 4]))]
    [(2, 16), (2, 8)]
    """

    def __init__(self, num_speakers, channels, **kwargs):
        super().__init__(**kwargs)
        self.num_speakers = check_int("num_speakers", num_speakers, minimum=1)
        self.channels = [check_int("channels", c, minimum=1) for c in channels]

    def build(self, input_shape=None):
        self.tables = [
            (
                self.add_weight(name=f"scale{i}", shape=(self.num_speakers, c), initializer="zeros"),
                self.add_weight(name=f"shift{i}", shape=(self.num_speakers, c), initializer="zeros"),
            )
            for i, c in enumerate(self.channels)
        ]

    def call(self, speaker_ids):
        ids = check_speaker_ids(speaker_ids, self.num_speakers)
        return [tuple(tf.gather(tf.convert_to_tensor(t), ids) for t in pair) for pair in self.tables]

    def get_config(self):
        config = super().get_config()
        config.update(num_speakers=self.num_speakers, channels=list(self.channels))
        return config


def check_speaker_ids(speaker_ids, num_speakers):
    """`speaker_ids` as an int32 `(batch,)` tensor; a clear error for a float dtype, a bad shape or a bad id."""
    ids = tf.convert_to_tensor(speaker_ids)
    if not ids.dtype.is_integer:
        raise TypeError(f"speaker ids must be integers in [0, {num_speakers}); received dtype {ids.dtype.name}.")
    if ids.shape.rank == 2 and ids.shape[-1] == 1:
        ids = ids[:, 0]
    if ids.shape.rank != 1:
        raise ValueError(f"speaker ids must be shaped (batch,) or (batch, 1); received shape {tuple(ids.shape)}.")
    ids = tf.cast(ids, tf.int32)
    message = f"speaker ids must be in [0, {num_speakers})"
    if tf.executing_eagerly():
        values = ids.numpy()
        bad = values[(values < 0) | (values >= num_speakers)]
        if bad.size:
            raise ValueError(f"{message}; received {sorted(set(bad.tolist()))}.")
        return ids
    checks = [
        tf.debugging.assert_non_negative(ids, message=message),
        tf.debugging.assert_less(ids, num_speakers, message=message),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(ids)


class SpeakerInputsMixin:
    """What `VQVAE` needs for its optional speaker-conditioned decoder.

    The model calls `_init_speakers` in `__init__`, reads its inputs through
    `_split_speaker` (a `(waveform, speaker)` pair, a dict with `INPUT_KEYS`,
    or, unconditioned, one tensor) and adds `_speaker_vectors` to the
    decoder's input frames.
    """

    def _init_speakers(self, num_speakers, speaker_dim, speaker_conditioning, units):
        check_choice("speaker_conditioning", speaker_conditioning, SPEAKER_CONDITIONINGS)
        if num_speakers is None and (speaker_dim is not None or speaker_conditioning != "input"):
            raise ValueError(
                f"speaker_dim and speaker_conditioning need num_speakers; received speaker_dim={speaker_dim!r}, "
                f"speaker_conditioning={speaker_conditioning!r} and num_speakers=None."
            )
        if speaker_conditioning == "stages" and not hasattr(self.decoder, "film_points"):
            raise ValueError("speaker_conditioning='stages' needs the speech network (strides=...); received none.")
        self.num_speakers = None if num_speakers is None else check_int("num_speakers", num_speakers, minimum=1)
        self.speaker_dim = speaker_dim
        self.speaker_conditioning = speaker_conditioning
        self.speaker_embedding = self.speaker_film = None
        if self.num_speakers is not None:
            self.speaker_embedding = SpeakerEmbedding(
                self.num_speakers, units, speaker_dim, name="speaker_embedding", dtype=self.dtype_policy
            )
        if speaker_conditioning == "stages":
            widths = [c for _, c in self.decoder.film_points]
            self.speaker_film = SpeakerFiLM(self.num_speakers, widths, name="speaker_film", dtype=self.dtype_policy)

    def _speaker_config(self):
        """`num_speakers` / `speaker_dim` for `get_config`, only when set (unconditioned configs stay as they were)."""
        config = {} if self.num_speakers is None else {"num_speakers": self.num_speakers}
        if self.speaker_dim is not None:
            config["speaker_dim"] = self.speaker_dim
        if self.speaker_conditioning != "input":
            config["speaker_conditioning"] = self.speaker_conditioning
        return config

    def _split_speaker(self, inputs):
        """`(waveform, speaker ids or None)` of a call's inputs; a clear error for the wrong structure."""
        if self.num_speakers is None:
            if isinstance(inputs, (dict, list, tuple)):
                raise ValueError(
                    f"{type(self).__name__} has no speaker embedding (num_speakers=None) and takes one tensor; "
                    f"received a {type(inputs).__name__}."
                )
            return inputs, None
        if isinstance(inputs, dict) and set(inputs) == set(INPUT_KEYS):
            return tuple(inputs[key] for key in INPUT_KEYS)
        if isinstance(inputs, (list, tuple)) and len(inputs) == 2:
            return tuple(inputs)
        received = f"keys {sorted(inputs)}" if isinstance(inputs, dict) else f"a {type(inputs).__name__}"
        raise ValueError(
            f"{type(self).__name__} with num_speakers={self.num_speakers} takes (waveform, speaker_id) inputs "
            f"or a dict with keys {list(INPUT_KEYS)}; received {received}."
        )

    def _unpack_speaker(self, data, unpack):
        """A batch of `fit` / `evaluate` / `predict` data as the model's inputs (`unpack` checks one tensor).

        A conditioned model reads `((waveform, speaker), ...)` or `(waveform, speaker)`: an audio
        dataset with labels (`make_datasets(..., with_labels=True)`) yields the speaker as its `y`,
        which an autoencoder has no other use for.
        """
        if self.num_speakers is None:
            return unpack(data)
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if not isinstance(x, (dict, list, tuple)):
            if y is None:
                raise ValueError(
                    f"{type(self).__name__} with num_speakers={self.num_speakers} needs speaker ids: "
                    "batches of (waveform, speaker_id); received waveforms alone."
                )
            x = (x, y)
        waveform, speaker = self._split_speaker(x)
        return unpack(waveform), check_speaker_ids(speaker, self.num_speakers)

    def _waveform_of(self, inputs):
        """The waveform of `(waveform, speaker)` inputs, or the inputs themselves when they are one tensor."""
        if self.num_speakers is not None and isinstance(inputs, (dict, list, tuple)):
            return self._split_speaker(inputs)[0]
        return inputs

    def _waveform_shape(self, input_shape):
        """The waveform's shape from a build shape: one shape, or (for a conditioned model) a pair or dict of them."""
        if isinstance(input_shape, dict):
            return tuple(input_shape[INPUT_KEYS[0]])
        if len(input_shape) == 2 and isinstance(input_shape[0], (list, tuple, tf.TensorShape)):
            return tuple(input_shape[0])
        return tuple(input_shape)

    def _decode(self, frames, speaker, training=None):
        """The decoder on `frames` (batch, steps..., code_dim), conditioned on `speaker` if the model is."""
        frames, ids = self._speaker_vectors(frames, speaker)
        if self.speaker_film is None:
            return self.decoder(frames, training=training)
        return self.decoder(frames, stage_film=self.speaker_film(ids), training=training)

    def _speaker_vectors(self, frames, speaker):
        """`(frames plus each clip's speaker vector, the ids)`; `(frames, None)` when unconditioned."""
        if self.num_speakers is None:
            if speaker is not None:
                raise ValueError(
                    f"{type(self).__name__} has no speaker embedding (num_speakers=None); received speaker={speaker!r}."
                )
            return frames, None
        if speaker is None:
            raise ValueError(
                f"{type(self).__name__} with num_speakers={self.num_speakers} decodes for a speaker: "
                "pass speaker=<int id or (batch,) ids>; received none."
            )
        if isinstance(speaker, (int, np.integer)):
            speaker = tf.fill([tf.shape(frames)[0]], int(speaker))
        speaker = check_speaker_ids(speaker, self.num_speakers)
        vectors = self.speaker_embedding(speaker)
        # One vector per clip, broadcast over every position (steps, or height and width).
        vectors = tf.cast(vectors, frames.dtype)[(slice(None),) + (None,) * (frames.shape.rank - 2)]
        return frames + vectors, speaker

"""Codec models: a matching TFLite encoder and decoder, and code usage counts.

A *codec model* is a directory holding an encoder and a decoder exported
from the same trained weights (`encoder_<q>.tflite`, `decoder_<q>.tflite`
with their JSON sidecars, see `vqvae_tf.export.metadata`), optionally
`code_counts.json` (code usage measured on the training photos: the
distribution of the codec's `static` method), `codec.json` (which encoder
and decoder to use, how the model was trained) and `prior.keras` with its
sidecar `prior.json` (the autoregressive prior of the codec's `prior`
method, trained on the model's codes; see `CodecModel.prior`). Models shipped with the
package live in `vqvae_tf/pretrained/NAME/`; `python -m vqvae_tf.codec
package` (`vqvae_tf.export.codec_package`) makes one from an exporter's
`tflite/` directory.

No TensorFlow here: the interpreters come from `vqvae_tf.codec.lite_runtime`;
only `CodecModel.prior` (the `prior` method) loads a Keras model.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from vqvae_tf.codec.bitstream.header import MODEL_ID_SIZE, make_model_id
from vqvae_tf.codec.bitstream.static import code_probabilities_from_counts
from vqvae_tf.utils.checks import check_int

__all__ = [
    "COUNTS",
    "LITE_PRIOR",
    "PRIOR",
    "CodecError",
    "CodecModel",
    "DEFAULT_MODEL",
    "MANIFEST",
    "PRETRAINED_DIR",
    "load_model",
    "shipped_models",
    "stream_model_id",
]

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
#: Shipped model used when no `--model` is given (see pretrained/README.md).
DEFAULT_MODEL = "d8k512"
MANIFEST = "codec.json"
COUNTS = "code_counts.json"
#: The prior of the `prior` method in a codec model directory; its sidecar
#: (same stem, `.json`) names the model it was trained for.
PRIOR = "prior.keras"
#: The same prior exported to TFLite (`vqvae_tf.export.prior_tflite`): what the
#: `prior` method runs by default, with LiteRT and NumPy.
LITE_PRIOR = "prior.tflite"
# Preference order when a directory holds several exported variants: the int8
# encoder is small and loses nothing measurable; a float decoder was 0.03-0.07
# dB better than int8 on the held-out photos (pretrained/README.md).
_ENCODER_ORDER = ("int8", "float16", "dynamic", "float32")
_DECODER_ORDER = ("float16", "float32", "dynamic", "int8")
#: Sidecar fields of speech-network exports (`vqvae_tf.export.metadata`) that the audio codec reads.
_AUDIO_FIELDS = ("sample_rate", "receptive_field", "causal", "algorithmic_latency")


class CodecError(ValueError):
    """An image, a `.vqz` file or a codec model that cannot be used; the message says why."""


# --------------------------------------------------------------------------- models


@dataclasses.dataclass
class CodecModel:
    """A codec model: matching TFLite encoder and decoder, and code usage counts.

    Use `load_model` to make one. The interpreters are created on first use,
    so reading a model to decode a header costs nothing.

    Attributes:
        name: the shipped model's name, or the directory's.
        directory: where the files are.
        encoder_path, decoder_path: the TFLite files (sidecars beside them).
        model_id: the exporter's model id (hex string), the same for the
            encoder and the decoder.
        downsample: spatial factor between image and code map.
        num_codes: codebook size K.
        channels: image channels the network takes.
        code_shape: trailing code axes per position (`()` for one stage,
            `(S,)` for S residual stages).
        counts: code usage counts for the `static` method: `(K,)`, or
            `(S, K)` per stage for a residual model; or None.
        num_threads: interpreter threads.
        rank: spatial axes of the networks: 2 for images, 1 for audio.
        absent_code: the code the decoder reads as "stage absent"
            (residual decoders exported with it), else None: such a decoder
            decodes only streams that keep every stage.
        rates: codec.json's `rates` (one dict per quality), or `[]`.
        sample_rate: an audio model's sample rate in Hz (sidecar), else None.
        receptive_field: input samples one output sample depends on (speech
            networks' sidecars), else None: what chunked audio coding
            overlaps by (`vqvae_tf.codec.audio`).
        causal: whether the speech network looks at past samples only, else None.
        algorithmic_latency: samples of delay of a speech network, else None.
    """

    name: str
    directory: Path
    encoder_path: Path
    decoder_path: Path
    model_id: str
    downsample: int
    num_codes: int
    channels: int
    code_shape: tuple
    counts: np.ndarray | None = None
    num_threads: int = 2
    rank: int = 2
    absent_code: int | None = None
    rates: list = dataclasses.field(default_factory=list)
    sample_rate: int | None = None
    receptive_field: int | None = None
    causal: bool | None = None
    algorithmic_latency: int | None = None
    _encoder: object = dataclasses.field(default=None, repr=False)
    _decoder: object = dataclasses.field(default=None, repr=False)
    _priors: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def stream_id(self) -> bytes:
        """The 16-byte model id written into `.vqz` headers."""
        return stream_model_id(self.model_id)

    @property
    def encoder(self):
        if self._encoder is None:
            from vqvae_tf.codec.lite_runtime import LiteEncoder

            self._encoder = LiteEncoder(self.encoder_path, num_threads=self.num_threads)
        return self._encoder

    @property
    def decoder(self):
        if self._decoder is None:
            from vqvae_tf.codec.lite_runtime import LiteDecoder

            self._decoder = LiteDecoder(self.decoder_path, num_threads=self.num_threads)
        return self._decoder

    @property
    def kind(self) -> str:
        """`"image"` (rank 2) or `"audio"` (rank 1): the signals the model codes."""
        return "image" if self.rank == 2 else "audio"

    @property
    def total_stages(self) -> int:
        """Quantizer stages S (1 for a single-stage model): the highest quality."""
        return int(self.code_shape[0]) if self.code_shape else 1

    def check_kind(self, kind: str, what: str) -> None:
        """Raises `CodecError` unless `kind` ("image" or "audio") is this model's kind.

        Args:
            kind: the kind of the signal or stream at hand.
            what: what holds it, e.g. "the stream" (named in the message).
        """
        if kind != self.kind:
            article = {"image": "an image", "audio": "audio"}
            raise CodecError(
                f"{what} holds {article[kind]}, but model {self.name!r} is an {self.kind} model; "
                f"it needs an {kind} model"
            )

    def code_probabilities(self, stages: int | None = None) -> np.ndarray:
        """The `static` method's distribution, from the usage counts.

        Args:
            stages: None for one `(K,)` distribution of every code (pooled
                over the stages of a residual model: what version-1 streams
                use); `n` for the `(n, K)` distributions of the first `n`
                stages of a residual model (version-2 streams with a stage
                axis; counts measured before per-stage counts give every
                stage the pooled distribution).
        """
        if self.counts is None:
            raise CodecError(
                f"model {self.name!r} has no {COUNTS}, which the 'static' method needs; "
                f"use --method packed, or make one with `python -m vqvae_tf.codec package`"
            )
        if stages is None:
            return code_probabilities_from_counts(self.counts if self.counts.ndim == 1 else self.counts.sum(axis=0))
        rows = self.counts[:stages] if self.counts.ndim == 2 else [self.counts] * stages
        return np.stack([code_probabilities_from_counts(row) for row in rows])

    @property
    def prior_path(self) -> Path | None:
        """The model's own prior: `prior.tflite` (LiteRT), else `prior.keras` (TensorFlow), else None."""
        for name in (LITE_PRIOR, PRIOR):
            if (self.directory / name).is_file():
                return self.directory / name
        return None

    def prior(self, path=None):
        """The prior of the `prior` method, loaded once.

        Args:
            path: a `prior.tflite` (a `LitePrior`, run with LiteRT: no
                TensorFlow) or a `prior.keras` (e.g. `train.py
                --stage=prior`'s `WORKDIR/prior/prior.keras`, needs
                TensorFlow); None takes the model's own (`prior_path`). If a
                sidecar `prior.json` lies beside it, its `model_id` must be
                this model's.

        Raises:
            FileNotFoundError: no such prior, or the model has none.
            CodecError: TensorFlow is missing, the file is not a prior, or
                the prior does not fit this model (codebook size, class
                labels, the model it was trained for).

        A residual image model's prior models its first stage's `(h, w)`
        maps (`train.py --stage=prior --prior_stages=1`): the method codes
        that stage with it and the later stages under their static tables.
        An audio model's prior is a speech `TransformerPrior` over the tokens
        of all S stages (vocabulary S * K, map `(1, T * S)`), its
        `prior.tflite` a `LiteTransformerPrior` whose fingerprint comes from
        `prior.json` (`vqvae_tf.codec.prior_coding.sequences`).
        """
        if path is None:
            if self.prior_path is None:
                raise FileNotFoundError(
                    f"model {self.name!r} has no {PRIOR}, which the 'prior' method needs; pass a prior "
                    "(--prior PATH, trained with `train.py --stage=prior`) or use --method packed|static"
                )
            path = self.prior_path
        path = Path(path).resolve()
        if path in self._priors:
            return self._priors[path]
        if not path.is_file():
            raise FileNotFoundError(f"prior {path} not found")
        sidecar = _read_json(path.with_suffix(".json")) if path.with_suffix(".json").is_file() else {}
        signal = sidecar.get("signal", "image") if sidecar else self.kind  # sidecars before audio priors: images
        if signal != self.kind:
            raise CodecError(f"prior {path} is for {signal} models; model {self.name!r} is an {self.kind} model")
        if sidecar.get("model_id", self.model_id) != self.model_id:
            raise CodecError(
                f"prior {path} was trained for model {sidecar['model_id']!r}, not for {self.name!r} ({self.model_id})"
            )
        if path.suffix == ".tflite":
            self._priors[path] = self._lite_prior(path, sidecar)
            return self._priors[path]
        try:
            import tensorflow  # noqa: F401  (a clear message if the prior's backend is missing)

            from vqvae_tf.priors.loading import load_prior
        except ImportError as error:
            raise CodecError(
                f"the 'prior' method runs a Keras prior and needs TensorFlow ({error}); "
                "install tensorflow, or use --method packed|static, which do not"
            ) from None
        try:
            prior = load_prior(path)
        except (ValueError, TypeError, OSError, KeyError) as error:
            raise CodecError(f"cannot load prior {path}: {' '.join(str(error).split())}") from None
        num_codes, num_classes = getattr(prior, "num_codes", None), getattr(prior, "num_classes", None)
        if num_codes is None or num_classes is None or not hasattr(prior, "logits"):
            raise CodecError(f"{path} holds a {type(prior).__name__}, not an autoregressive prior")
        if num_classes:
            raise CodecError(
                f"prior {path} is class-conditional ({num_classes} classes); the codec needs an unconditional prior"
            )
        self._check_prior_codes(path, prior)
        self._priors[path] = prior
        return prior

    def _lite_prior(self, path: Path, sidecar: dict):
        from vqvae_tf.codec.prior_coding.lite_prior import LitePrior
        from vqvae_tf.codec.prior_coding.lite_transformer import LiteTransformerPrior

        try:
            if self.kind == "image":
                prior = LitePrior(path, num_threads=self.num_threads)
            else:
                if "fingerprint" not in sidecar:
                    raise ValueError(f"{path.with_suffix('.json')} with its fingerprint is missing")
                fingerprint = bytes.fromhex(str(sidecar["fingerprint"]))
                prior = LiteTransformerPrior(path, num_threads=self.num_threads, fingerprint=fingerprint)
        except ValueError as error:
            raise CodecError(f"cannot load prior {path}: {' '.join(str(error).split())}") from None
        self._check_prior_codes(path, prior)
        return prior

    def _check_prior_codes(self, path, prior) -> None:
        if self.kind == "audio":
            from vqvae_tf.codec.prior_coding.probabilities import PriorCodingError
            from vqvae_tf.codec.prior_coding.sequences import check_speech_prior

            try:
                check_speech_prior(prior, self.num_codes, self.total_stages)
            except PriorCodingError as error:
                raise CodecError(f"prior {path} does not fit audio model {self.name!r}: {error}") from None
            return
        num_codes = prior.num_codes
        if num_codes == self.num_codes:
            return
        hint = ""
        if self.code_shape and num_codes == self.num_codes * self.total_stages:
            hint = (
                f" (the tokens of all {self.total_stages} stages); the codec's prior models the first stage's "
                "codes: train it with `train.py --stage=prior --prior_stages=1`"
            )
        raise CodecError(f"prior {path} models {num_codes} codes{hint}; model {self.name!r} has {self.num_codes}")


def stream_model_id(model_id: str) -> bytes:
    """The 16-byte header id of an exporter model id.

    The exporter's id is 16 hex digits (64 bits of SHA-256 over config and
    weights); it is stored as is, zero-padded, so `info` shows the same id as
    the sidecars. Any other string is hashed to 16 bytes.
    """
    try:
        raw = bytes.fromhex(model_id)
    except (TypeError, ValueError):
        raw = b""
    if 0 < len(raw) <= MODEL_ID_SIZE:
        return raw.ljust(MODEL_ID_SIZE, b"\0")
    return make_model_id(str(model_id).encode())


def shipped_models() -> list[str]:
    """Names of the models shipped in `vqvae_tf/pretrained/`."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / MANIFEST).is_file())


def load_model(model=None, num_threads: int = 2) -> CodecModel:
    """Loads a codec model.

    Args:
        model: a `CodecModel` (returned as is), the name of a shipped model
            (a bare name is always a shipped model: write `./NAME` for a
            local folder of that name), a codec model directory (with
            `codec.json`), or an exporter's `tflite/` directory (the int8
            encoder and a float decoder are picked). Defaults to
            `DEFAULT_MODEL`.
        num_threads: interpreter threads. Defaults to 2.

    Raises:
        FileNotFoundError: no such model or a file of it is missing.
        CodecError: the files do not make a usable codec model.
    """
    if isinstance(model, CodecModel):
        return model
    check_int("num_threads", num_threads, minimum=1, error=CodecError)
    if model is None:
        model = DEFAULT_MODEL
    if not isinstance(model, (str, os.PathLike)):
        raise CodecError(f"model must be a model name or directory; received {type(model).__name__}")
    directory = Path(model)
    # A bare name is a shipped model even if the working directory holds a
    # folder of that name (write ./NAME for the folder).
    if isinstance(model, str) and os.sep not in model and (PRETRAINED_DIR / model / MANIFEST).is_file():
        directory = PRETRAINED_DIR / model
    if not directory.is_dir():
        shipped = ", ".join(shipped_models()) or "none"
        raise FileNotFoundError(
            f"codec model {str(model)!r} not found: expected a directory or a shipped model name ({shipped})"
        )
    manifest = _read_json(directory / MANIFEST) if (directory / MANIFEST).is_file() else {}
    encoder_path = (
        directory / manifest["encoder"] if "encoder" in manifest else _pick(directory, "encoder", _ENCODER_ORDER)
    )
    decoder_path = (
        directory / manifest["decoder"] if "decoder" in manifest else _pick(directory, "decoder", _DECODER_ORDER)
    )
    from vqvae_tf.codec.lite_runtime import read_sidecar

    for path in (encoder_path, decoder_path):
        if not path.is_file():
            raise FileNotFoundError(f"codec model {directory}: {path.name} not found")
    encoder_meta, decoder_meta = read_sidecar(encoder_path), read_sidecar(decoder_path)
    fields = ("model_id", "downsample", "num_codes", "input_channels", "rank")
    mismatch = [f for f in fields if encoder_meta.get(f) != decoder_meta.get(f)]
    if mismatch:
        raise CodecError(
            f"codec model {directory}: encoder and decoder differ in {mismatch} "
            f"(encoder {[encoder_meta.get(f) for f in mismatch]}, decoder {[decoder_meta.get(f) for f in mismatch]}); "
            "they must be exported from the same trained model"
        )
    if encoder_meta.get("rank", 2) not in (1, 2):
        raise CodecError(
            f"codec model {directory} has rank {encoder_meta.get('rank')}; expected 2 (images) or 1 (audio)"
        )
    result = CodecModel(
        name=directory.name,
        directory=directory,
        encoder_path=encoder_path,
        decoder_path=decoder_path,
        model_id=str(encoder_meta["model_id"]),
        downsample=int(encoder_meta["downsample"]),
        num_codes=int(encoder_meta["num_codes"]),
        channels=int(encoder_meta["input_channels"]),
        code_shape=tuple(int(n) for n in encoder_meta.get("code_shape", ())),
        num_threads=num_threads,
        rank=int(encoder_meta.get("rank", 2)),
        absent_code=None if decoder_meta.get("absent_code") is None else int(decoder_meta["absent_code"]),
        rates=list(manifest.get("rates", [])),
        **{key: encoder_meta.get(key) for key in _AUDIO_FIELDS},
    )
    if (directory / COUNTS).is_file():
        result.counts = _read_counts(directory / COUNTS, result)
    return result


def _pick(directory: Path, kind: str, order) -> Path:
    for quantization in order:
        path = directory / f"{kind}_{quantization}.tflite"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"codec model {directory}: no {MANIFEST} and no {kind}_<{'|'.join(order)}>.tflite; "
        "pass a shipped model name, a codec model directory or an exporter's tflite/ directory"
    )


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CodecError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise CodecError(f"{path} must hold a JSON object; received {type(value).__name__}")
    return value


def _read_counts(path: Path, model: CodecModel) -> np.ndarray:
    data = _read_json(path)
    if data.get("model_id") != model.model_id:
        raise CodecError(f"{path} was measured with model {data.get('model_id')!r}, not {model.model_id!r}")
    try:
        counts = np.asarray(data.get("counts", []), dtype=np.float64)
    except (TypeError, ValueError):
        raise CodecError(f"{path} holds ragged or non-numeric counts") from None
    # A residual model's counts are per stage (S, K); files written before
    # per-stage counts hold one (K,) row pooled over the stages.
    shapes = [(model.num_codes,)] + ([(model.total_stages, model.num_codes)] if model.code_shape else [])
    if counts.shape not in shapes:
        raise CodecError(f"{path} holds {counts.shape} counts; expected {' or '.join(map(str, shapes))}")
    return counts

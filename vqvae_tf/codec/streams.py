"""`.vqz` streams of either kind: encoding a prefix of the stages, reading a file, checking it against its model.

The image codec (`vqvae_tf.codec.api`) and the audio codec
(`vqvae_tf.codec.audio`) encode the first n stages of a code map the same
way (`encode_stages`, the `build` of `vqvae_tf.codec.rate.pick_quality`),
check a stream against its model the same way (`stream_header_and_model`)
and look up a `static` stream's code distribution the same way
(`static_probabilities`); `read_stream_file` reads a `.vqz` file within a
size bound, `describe` its header without a model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vqvae_tf.codec.bitstream import depth as depth_section
from vqvae_tf.codec.bitstream.header import BitstreamError, Header, Kind, Method, read_header
from vqvae_tf.codec.bitstream.stream import encode_stream
from vqvae_tf.codec.model import CodecError, CodecModel, load_model, shipped_models
from vqvae_tf.codec.rate import keep_stages

__all__ = [
    "depth_map",
    "describe",
    "encode_stages",
    "read_stream_file",
    "static_probabilities",
    "stream_header_and_model",
]


def encode_stages(codes, model: CodecModel, stages: int, *, method: str, prior=None, depth=None, **signal) -> bytes:
    """The stream of the first `stages` stages of `codes` (all of a single-stage model's) under `method`.

    `static` codes each kept stage of a residual model under its own
    distribution, a single-stage model's codes under its one; `prior` codes
    a residual image model's first stage with `prior` and the later stages
    as `static` does, and every stage of an audio model with its speech
    prior; `signal` is `image_shape=` or `audio=` of `encode_stream`.
    `depth` (int `(h, w)` in `1..stages`, image models) keeps each
    position's first `depth[p]` stages: a variable-depth stream; a depth
    map whose deepest position keeps fewer stages is stored with that many.

    Raises:
        CodecError: the codes cannot be encoded (a `BitstreamError`), or
            `static` without the model's code counts.
    """
    tables = method == "static" or (method == "prior" and bool(model.code_shape) and model.kind == "image")
    if depth is not None:
        stages = int(depth.max())
        if int(depth.min()) == stages:
            depth = None  # uniform: the smaller stream without a depth section
    try:
        return encode_stream(
            keep_stages(codes, model, stages),
            num_codes=model.num_codes,
            model_id=model.stream_id,
            total_stages=model.total_stages if model.code_shape else None,
            method=method,
            code_probabilities=model.code_probabilities(stages if model.code_shape else None) if tables else None,
            prior=prior,
            depth=depth,
            **signal,
        )
    except BitstreamError as error:
        raise CodecError(f"cannot encode the codes: {error}") from None


def read_stream_file(path, max_bytes: int) -> bytes:
    """The bytes of the `.vqz` file `path`, refused past `max_bytes` (more than any valid stream holds).

    Reads at most `max_bytes + 1` bytes, so a huge file is refused without
    reading it whole.

    Raises:
        FileNotFoundError: `path` is not a file.
        CodecError: the file is larger than `max_bytes`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"compressed file {path} not found")
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise CodecError(f"{path} is larger than any valid stream ({max_bytes} bytes)")
    return data


def stream_header_and_model(data, model, kind: Kind, caller: str) -> tuple[Header, CodecModel]:
    """The header of stream `data` and the model that decodes it, for the decoders of each kind.

    Checks, in this order: `data` is bytes, a valid header, the kinds (an
    audio stream given to an image model is a kind mismatch before it is a
    model mismatch), the model (`model`, or the shipped one whose id the
    stream carries), its number of stages and of codes.

    Raises:
        CodecError: any of these does not fit; `caller` names the function
            that decodes streams of `kind`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"data must be bytes; received {type(data).__name__}")
    header = _header(data)
    if model is not None:
        model = load_model(model)
        model.check_kind(header.kind.label, "the stream")
    elif header.kind != kind:
        raise CodecError(f"the stream holds {header.kind.label}; {caller} decodes {kind.label} streams")
    model = _model_for(header, model)
    if header.total_stages != model.total_stages:
        raise CodecError(
            f"stream keeps {header.kept_stages} of {header.total_stages} stages; "
            f"model {model.name!r} has {model.total_stages}"
        )
    if header.num_codes != model.num_codes:
        raise CodecError(f"stream has {header.num_codes} codes; model {model.name!r} has {model.num_codes}")
    return header, model


def static_probabilities(header: Header, model: CodecModel):
    """The code distribution(s) a `static` stream was coded under, else None.

    Version 2 codes each stage kept under its own distribution; version 1
    coded every code under the pooled one. An image `prior` stream with a
    stage axis codes its stages after the first under the same per-stage
    tables (an audio one codes every stage with the prior).
    """
    if header.method == Method.PRIOR:
        staged = header.has_stage_axis and header.kind == Kind.IMAGE
        return model.code_probabilities(header.kept_stages) if staged else None
    if header.method != Method.STATIC:
        return None
    per_stage = header.version >= 2 and header.has_stage_axis
    return model.code_probabilities(header.kept_stages if per_stage else None)


def _header(data) -> Header:
    """The header of stream `data`; a bad one is a `CodecError`."""
    try:
        return read_header(data)
    except BitstreamError as error:
        raise CodecError(f"not a valid .vqz stream: {error}") from None


def _model_for(header: Header, model) -> CodecModel:
    if model is not None:
        model = load_model(model)
        if header.model_id != model.stream_id:
            raise CodecError(
                f"stream was made by model {_show_id(header.model_id)}, not by {model.name!r} "
                f"({model.model_id}); decode it with the model that compressed it"
            )
        return model
    for name in shipped_models():
        candidate = load_model(name)
        if candidate.stream_id == header.model_id:
            return candidate
    raise CodecError(
        f"stream was made by model {_show_id(header.model_id)}, which is not a shipped model "
        f"({', '.join(shipped_models()) or 'none'}); pass --model with its directory"
    )


def _show_id(raw: bytes) -> str:
    return raw.rstrip(b"\0").hex() if raw.endswith(b"\0" * 8) else raw.hex()


def depth_map(data: bytes, header) -> np.ndarray:
    """The `(h, w)` depth map of a variable-depth stream (its depth section only: no model)."""
    payload = memoryview(data)[header.payload_start : header.payload_start + header.payload_length]
    try:
        return depth_section.decode_section(payload, header.code_shape[:2], header.kept_stages)[0]
    except BitstreamError as error:
        raise CodecError(f"cannot read the stream's depth section: {error}") from None


def describe(path) -> dict:
    """The header of a `.vqz` file as a JSON-ready dict (no model needed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"compressed file {path} not found")
    data = path.read_bytes()
    header = _header(data)
    matching = [name for name in shipped_models() if load_model(name).stream_id == header.model_id]
    if header.kind == Kind.IMAGE:
        height, width, channels = header.image_shape
        signal = dict(
            image_shape=[height, width, channels],
            bits_per_pixel=round(8 * header.total_length / (height * width), 5),
            variable_depth=header.variable_depth,
        )
        if header.variable_depth:
            signal["stages_per_position"] = round(float(depth_map(data, header).mean()), 5)
    else:
        audio = header.audio
        signal = dict(
            sample_rate=audio.sample_rate,
            num_samples=audio.num_samples,
            channels=audio.channels,
            source_channels=audio.source_channels,
            duration_seconds=round(audio.duration, 6),
            kilobits_per_second=round(8 * header.total_length / audio.duration / 1000, 5),
        )
    return dict(
        file=str(path),
        bytes=header.total_length,
        version=header.version,
        kind=header.kind.label,
        method=header.method.name.lower(),
        model_id=_show_id(header.model_id),
        shipped_model=matching[0] if matching else None,
        quality=header.kept_stages,
        stages=[header.kept_stages, header.total_stages],
        code_shape=list(header.code_shape),
        num_codes=header.num_codes,
        payload_bytes=header.payload_length,
        **signal,
        **({"prior": header.prior_params} if header.method == Method.PRIOR else {}),
    )

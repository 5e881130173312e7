"""`.vqz` method 2 ("prior") inside a stream: the prior's tiles, and a residual map's finer stages.

An `(h, w)` map is coded whole by the tiled prior coder
(`vqvae_tf.codec.prior_coding.tiled`). An `(h, w, n)` map of a residual
model (the stage-axis flag) is coded in two parts: its stage 0 by the same
prior, its stages 1 to n - 1 under the model's static per-stage tables
(`static`), as the `static` method codes them. A residual model's first
stage carries the picture's structure, which the prior predicts from the
neighbours; its finer stages are close to independent, where a spatial prior
buys little for its cost (and a prior over every stage would have to learn
each quality's stage prefix). The method parameters are the prior's
(`tiled.PARAMS`) followed, with a stage axis, by `STAGED_PRIOR_TAIL`: the
prior part's length in bytes and the fingerprint of the finer stages'
tables; the payload is the prior part, then the static part.

An audio stream's `(frames, S)` map keeps every stage and codes them all
with a speech prior over the tokens of the S stages (vocabulary S * K,
`vqvae_tf.codec.prior_coding.sequences`): the parameters are `tiled.PARAMS`
alone, the payload the prior's.
"""

from __future__ import annotations

import numpy as np

from vqvae_tf.codec.bitstream import static
from vqvae_tf.codec.bitstream.header import PRIOR_PARAMS, STAGED_PRIOR_TAIL, BitstreamError, Header, Kind
from vqvae_tf.codec.prior_coding import sequences
from vqvae_tf.codec.prior_coding.probabilities import PriorCodingError
from vqvae_tf.codec.prior_coding.tiled import decode_prior_payload, encode_prior_payload, prior_fingerprint

__all__ = ["check_prior", "prior_decode", "prior_encode"]


def check_prior(prior, num_codes: int, stages: int = 1):
    """Raises `BitstreamError` unless `prior` is given and models `num_codes * stages` codes (tokens)."""
    if prior is None:
        raise BitstreamError("method 'prior' needs the prior the codes are coded with, got prior=None")
    prior_codes = getattr(prior, "num_codes", None)
    if prior_codes != num_codes * stages:
        shown = f"{num_codes} x {stages} stages = {num_codes * stages} tokens" if stages > 1 else f"{num_codes}"
        raise BitstreamError(f"the prior models {prior_codes} codes, the stream has num_codes={shown}")


def prior_encode(codes, num_codes, prior, label, tile, code_probabilities=None, kind=Kind.IMAGE, per_stage=None):
    """`(method params, payload)` of checked int32 `codes`.

    Images: `(h, w)`, or `(h, w, n)` then with `(n, K)` tables; audio:
    `(frames, S)`, every stage under the speech prior (`label`, `tile` and
    the tables unused). `per_stage` (a variable-depth map's codes kept per
    stage, `depth.split_stages`) replaces the finer stages of `codes`.
    """
    if kind == Kind.AUDIO:
        if codes.ndim != 2:
            raise BitstreamError(f"method 'prior' codes audio frames of every stage (frames, S), got {codes.shape}")
        check_prior(prior, num_codes, codes.shape[1])
        try:
            return sequences.encode_sequence_payload(prior, codes, num_codes)
        except PriorCodingError as error:
            raise BitstreamError(f"cannot prior-code the codes: {error}") from None
    check_prior(prior, num_codes)
    if codes.ndim == 2:
        return _tiles(codes, prior, label, tile)
    kept = codes.shape[-1]
    finer = _finer_tables(code_probabilities, num_codes, kept)
    params, coarse = _stage_zero(np.ascontiguousarray(codes[..., 0]), prior, label, tile)
    if per_stage is not None:
        fine = static.encode_stages(per_stage[1:], finer) if kept > 1 else b""
    else:
        fine = static.encode(np.ascontiguousarray(codes[..., 1:]).reshape(-1), finer, kept - 1) if kept > 1 else b""
    tail = STAGED_PRIOR_TAIL.pack(len(coarse), static.distribution_fingerprint(finer))
    return params + tail, coarse + fine


def prior_decode(header: Header, payload, prior, code_probabilities=None, counts=None):
    """The flat int32 codes (C order of `header.code_shape`) of a method-2 payload.

    With `counts` (a variable-depth map's codes kept per stage, the depth
    section already read off `payload`): the list of codes per stage.
    """
    if header.kind == Kind.AUDIO:
        check_prior(prior, header.num_codes, header.total_stages)
        try:
            codes = sequences.decode_sequence_payload(
                prior, header.method_params, payload, header.code_shape, header.num_codes
            )
        except PriorCodingError as error:
            raise BitstreamError(f"invalid prior payload: {error}") from None
        return codes.reshape(-1)
    check_prior(prior, header.num_codes)
    if not header.has_stage_axis:
        return _untile(prior, header.method_params, payload, header.code_shape)
    height, width, kept = header.code_shape
    coarse_bytes, finer_fingerprint = STAGED_PRIOR_TAIL.unpack_from(header.method_params, PRIOR_PARAMS.size)
    finer = _finer_tables(code_probabilities, header.num_codes, kept)
    coarse = _untile(prior, header.method_params[: PRIOR_PARAMS.size], payload[:coarse_bytes], (height, width))
    rest = payload[coarse_bytes:]
    if counts is not None:
        fine = static.decode_stages(rest, counts[1:], finer, finer_fingerprint) if kept > 1 else []
        if kept == 1 and len(rest):
            raise BitstreamError(f"invalid payload: {len(rest)} bytes after the prior's part, expected none")
        return [coarse.reshape(-1).astype(np.int32)] + fine
    if kept == 1:
        if len(rest):
            raise BitstreamError(f"invalid payload: {len(rest)} bytes after the prior's part, expected none")
        return coarse.reshape(-1)
    fine = static.decode(rest, height * width * (kept - 1), finer, finer_fingerprint, kept - 1)
    return np.concatenate([coarse.reshape(-1, 1), fine.reshape(-1, kept - 1)], axis=1).reshape(-1)


def _finer_tables(code_probabilities, num_codes: int, kept: int) -> np.ndarray:
    """Rows 1.. of the checked `(kept, K)` tables: the static distributions of the stages after the first."""
    if code_probabilities is None:
        raise BitstreamError(
            "method 'prior' on a map with a stage axis codes the stages after the first under static tables: "
            f"pass code_probabilities of shape ({kept}, {num_codes}), got None"
        )
    return static.check_probabilities(code_probabilities, num_codes, kept)[1:]


def _tiles(codes, prior, label, tile) -> tuple[bytes, bytes]:
    try:
        return encode_prior_payload(prior, codes, label, tile=tile)
    except PriorCodingError as error:
        raise BitstreamError(f"cannot prior-code the codes: {error}") from None


# `compress_image(bpp=...)` builds the stream of every quality and, for a
# variable-depth stream, of up to 24 depth maps of one code map: stage 0,
# the prior's part, is the same in all of them and costs most of each
# build, so the last one is kept. The key holds the prior's fingerprint
# (its weights), not the object, so a prior trained in between is run again.
_last_stage_zero: list = []


def _stage_zero(codes, prior, label, tile) -> tuple[bytes, bytes]:
    try:
        key = (prior_fingerprint(prior), label, tile, codes.shape, codes.tobytes())
    except PriorCodingError as error:
        raise BitstreamError(f"cannot prior-code the codes: {error}") from None
    if _last_stage_zero and _last_stage_zero[0] == key:
        return _last_stage_zero[1]
    result = _tiles(codes, prior, label, tile)
    _last_stage_zero[:] = [key, result]
    return result


def forget_stage_zero() -> None:
    """Drops the kept stage-0 part, so the next build runs the prior (benchmarks time one call)."""
    _last_stage_zero.clear()


def _untile(prior, params, payload, code_shape) -> np.ndarray:
    try:
        return decode_prior_payload(prior, params, payload, code_shape)
    except PriorCodingError as error:
        raise BitstreamError(f"invalid prior payload: {error}") from None

"""Rate control: how many of a residual model's stages a stream keeps.

A residual codec model has S quantizer stages (trained with quantizer
dropout, so any prefix of them decodes); a stream keeps the first `n` and
its **quality** is `n`: an integer from 1 (coarsest, fewest bits) to S (all
stages, the default). A single-stage model has one rate: quality 1 only.
The stream records `n` and S (`vqvae_tf.codec.bitstream`), and one decoder
file decodes every `n` (the stages left out are given the decoder's
`absent_code`).

Three ways to choose the rate, at most one at a time:

* `quality=Q`: keep Q stages;
* `bpp=B` (image models): the highest quality whose whole file is at most
  B bits per pixel of the original image;
* `kbps=K` (audio models): the highest quality whose whole file is at most
  K kilobits per second of the original audio.

`bpp` and `kbps` are found by running the encoder once (all S stages) and
measuring the stream of every prefix (`pick_quality`), never by encoding
again; for images, `compress_image(..., depth="adaptive")` (the default)
then spends the bytes left below `bpp` on finer stages where they pay
(`vqvae_tf.codec.depth_choice`). Each function here raises `CodecError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from vqvae_tf.codec.model import CodecError, CodecModel
from vqvae_tf.utils.checks import check_number, is_int

__all__ = ["RateRequest", "check_rate", "keep_stages", "pad_stages", "pick_quality"]

#: The rate flag of each kind of model.
TARGET_FLAG = {"image": "bpp", "audio": "kbps"}
_TARGET_UNIT = {"bpp": "bits per pixel", "kbps": "kilobits per second"}


@dataclasses.dataclass(frozen=True)
class RateRequest:
    """A validated rate request.

    Attributes:
        quality: stages to keep (`1..S`), or None when `target` decides.
        target: `("bpp", B)` or `("kbps", K)`, or None when `quality` decides.
    """

    quality: int | None
    target: tuple[str, float] | None = None


def check_rate(model: CodecModel, *, quality=None, bpp=None, kbps=None) -> RateRequest:
    """Validates the rate arguments against the model; returns the request.

    Args:
        model: the codec model (its `kind` and `total_stages` decide what is valid).
        quality: None or an integer in `1..model.total_stages`.
        bpp: None or a positive number (image models only).
        kbps: None or a positive number (audio models only).

    Returns:
        A `RateRequest`; with none of the three, the highest quality.

    Raises:
        CodecError: more than one given, a flag of the other kind of model,
            quality out of range, or a non-positive target.
    """
    given = {name: value for name, value in (("quality", quality), ("bpp", bpp), ("kbps", kbps)) if value is not None}
    if len(given) > 1:
        shown = ", ".join(f"{name}={value!r}" for name, value in given.items())
        raise CodecError(f"pass at most one of quality, bpp and kbps (--quality, --bpp, --kbps); received {shown}")
    total = model.total_stages
    if quality is not None:
        if not is_int(quality) or not 1 <= quality <= total:
            if total == 1:
                raise CodecError(
                    f"quality must be 1 for model {model.name!r}: it has one quantizer stage, "
                    f"hence one rate; received {quality!r}"
                )
            raise CodecError(
                f"quality must be an integer in 1..{total} (stages kept of model {model.name!r}'s {total}); "
                f"received {quality!r}"
            )
        return RateRequest(quality=_check_decodable(model, int(quality)))
    for flag, value in (("bpp", bpp), ("kbps", kbps)):
        if value is None:
            continue
        expected = TARGET_FLAG[model.kind]
        if flag != expected:
            other = "audio" if model.kind == "image" else "image"
            raise CodecError(
                f"--{flag} is for {other} models; model {model.name!r} is an {model.kind} model: "
                f"use --{expected} ({_TARGET_UNIT[expected]}) or --quality"
            )
        value = check_number(flag, value, minimum=0, inclusive_min=False, error=CodecError)
        return RateRequest(quality=None, target=(flag, float(value)))
    return RateRequest(quality=total)


def _check_decodable(model: CodecModel, quality: int) -> int:
    """`quality`, if the model's decoder can decode a stream that keeps that many stages."""
    if quality < model.total_stages and model.absent_code is None:
        raise CodecError(
            f"model {model.name!r} has a decoder exported before partial-stage decoding (its sidecar has no "
            f"absent_code), so it decodes only quality {model.total_stages}; re-export the model "
            "(python -m export) and package it again for lower qualities"
        )
    return quality


def keep_stages(codes: np.ndarray, model: CodecModel, quality: int) -> np.ndarray:
    """The code map of the first `quality` stages (unchanged for a single-stage model)."""
    if not model.code_shape:
        return codes
    return np.ascontiguousarray(codes[..., :quality])


def pad_stages(codes: np.ndarray, model: CodecModel) -> np.ndarray:
    """A map of `n <= S` stages padded to the decoder's S with its `absent_code`."""
    if not model.code_shape or codes.shape[-1] == model.total_stages:
        return codes
    _check_decodable(model, codes.shape[-1])
    missing = model.total_stages - codes.shape[-1]
    absent = np.full(codes.shape[:-1] + (missing,), model.absent_code, dtype=codes.dtype)
    return np.concatenate([codes, absent], axis=-1)


def pick_quality(
    model: CodecModel,
    request: RateRequest,
    build: Callable[[int], bytes],
    units: float,
    what: str,
) -> tuple[int, bytes]:
    """The stream of the requested quality, or of the highest quality that fits the target.

    Args:
        model: the codec model.
        request: from `check_rate`.
        build: `quality -> stream bytes` (from the codes of one encoder run).
        units: pixels of the original image (for bpp) or seconds of the
            original audio times 1000 (for kbps): the target's denominator.
        what: the signal, for messages (e.g. "this 768x512 image").

    Returns:
        `(quality, stream)`.

    Raises:
        CodecError: no quality fits the target (the message gives the lowest
            reachable rate for this signal).
    """
    if request.target is None:
        return request.quality, build(request.quality)
    flag, target = request.target
    lowest = None
    # Every prefix is measured: entropy-coded sizes need not grow evenly with n.
    for quality in range(model.total_stages, 0, -1):
        if quality < model.total_stages and model.absent_code is None:
            break
        data = build(quality)
        rate = 8 * len(data) / units
        if rate <= target:
            return quality, data
        if lowest is None or rate < lowest[1]:
            lowest = (quality, rate)
    raise CodecError(
        f"no quality of model {model.name!r} fits {flag}={target:g} for {what}: the lowest reachable is "
        f"{lowest[1]:.4f} {flag} (quality {lowest[0]})"
    )

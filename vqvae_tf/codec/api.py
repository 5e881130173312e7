"""On-device image compression: images to `.vqz` files and back.

The codec runs an exported TFLite encoder and decoder through
`vqvae_tf.codec.lite_runtime` (ai-edge-litert + NumPy), so compressing and
decompressing with the `packed` and `static` methods need no TensorFlow, nor does the `prior`
method with a TFLite prior (`prior.tflite`, run with LiteRT); only a Keras
prior (`--prior prior.keras`) needs TensorFlow. The file format is
`vqvae_tf.codec.bitstream`; reading a `.vqz` file and checking a stream
against its model, shared with the audio decoder, is `vqvae_tf.codec.streams`
(its `describe` is re-exported here).

    python -m vqvae_tf.codec compress photo.png photo.vqz [--model M] [--method packed|static|prior] [--prior P]
                                     [--quality Q | --bpp B [--depth adaptive|uniform]]
    python -m vqvae_tf.codec decompress photo.vqz photo_out.png [--model M] [--prior P]
    python -m vqvae_tf.codec info photo.vqz
    python -m vqvae_tf.codec eval DIR [--model M]        # bpp, PSNR, MS-SSIM vs JPEG / WebP
    python -m vqvae_tf.codec package EXPORT_TFLITE_DIR OUT_DIR   # make a codec model
    python -m vqvae_tf.codec add-prior MODEL PRIOR.keras         # ship a prior with it (needs TF)

`--model` takes a codec model (`vqvae_tf.codec.model`: a matching TFLite
encoder and decoder plus code usage counts) by directory or by the name of a
model shipped in `vqvae_tf/pretrained/`; without it, `compress` uses
`DEFAULT_MODEL` and `decompress` finds the shipped model whose id the file
carries.

What the codec does to an image:

* grayscale images are repeated to RGB for an RGB model; the header keeps
  the original channel count, so decoding returns a grayscale image;
* any size: the image is edge-padded to a multiple of the downsampling
  factor and the decoder's output cropped back;
* big images go through the network in tiles with a halo
  (`vqvae_tf.codec.tiling`), so memory stays bounded and tiling leaves no seams;
* the header's model id is the exporter's model id (SHA-256 of config and
  weights, see `vqvae_tf.export.metadata`), so a file decoded with another model
  fails with a clear error instead of producing garbage.

Rate (`vqvae_tf.codec.rate`): a residual model's stream keeps the first Q of
its S stages (`quality=Q`, 1..S, default S), or fills `bpp=B` bits per
pixel: by default with a variable-depth stream whose positions keep
different numbers of stages, chosen for the least error at that size
(`vqvae_tf.codec.depth_choice`), or with `depth="uniform"` the most stages
that fit everywhere; a single-stage model has quality 1 only.

Methods (how the code map is stored; the codes, hence the decoded image,
are the same for all three):

* `packed`: `ceil(log2 K)` bits per code;
* `static`: entropy coded under the model's code usage on its training
  photos (`code_counts.json`);
* `prior`: entropy coded under an autoregressive prior (`--prior PATH`, by
  default the model's own `prior.tflite`, else `prior.keras`; the shipped
  `d8k512` has both).
  The whole code map is coded, in tiles of the prior's map size (the code
  maps of the training crops it learned from, 8 x 8 codes for `d8k512`),
  independently of the pixel tiles of the networks; decoding runs the prior
  once per position of a tile, for batches of tiles at a time, and needs
  the same prior (its fingerprint is in the file); its probability tables
  are deterministic up to logit differences of `quantized.MARGIN` between
  machines (`vqvae_tf.codec.prior_coding.quantized`), and a CRC of the
  codes turns larger differences into an error.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path

import numpy as np

from vqvae_tf.codec import depth_choice, tiling
from vqvae_tf.codec.bitstream.depth import ABSENT
from vqvae_tf.codec.bitstream.header import DEFAULT_MAX_PIXELS, BitstreamError, Kind, Method, read_header
from vqvae_tf.codec.bitstream.stream import decode_stream
from vqvae_tf.codec.images import read_image, write_output, write_png
from vqvae_tf.codec.model import PRIOR, CodecError, CodecModel, load_model
from vqvae_tf.codec.rate import check_rate, pad_stages, pick_quality
from vqvae_tf.codec.streams import (
    depth_map,
    describe,
    encode_stages,
    read_stream_file,
    static_probabilities,
    stream_header_and_model,
)
from vqvae_tf.utils.checks import check_int, is_int

logger = logging.getLogger(__name__)

__all__ = ["METHODS", "compress", "compress_image", "decompress", "decompress_bytes", "describe", "encode_codes"]

METHODS = ("packed", "static", "prior")
#: Core tile side in pixels; must be a multiple of every downsampling factor.
DEFAULT_TILE = 256
#: Halo in code positions around each tile (see `vqvae_tf.codec.tiling`).
DEFAULT_HALO = 6
#: Pixels (height x width) accepted in either direction: the bitstream's limit.
MAX_PIXELS = DEFAULT_MAX_PIXELS


def _as_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise CodecError(f"image must be uint8; received dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise CodecError(f"image must have shape (H, W) or (H, W, C); received shape {image.shape}")
    height, width, channels = image.shape
    if height < 1 or width < 1 or channels < 1:
        raise CodecError(f"image must not be empty; received shape {image.shape}")
    if height * width > MAX_PIXELS:
        raise CodecError(f"image of {height}x{width} pixels exceeds the limit of {MAX_PIXELS} pixels")
    return image


def _to_model_channels(image: np.ndarray, model: CodecModel) -> np.ndarray:
    channels = image.shape[2]
    if channels == model.channels:
        return image
    if channels == 1:
        return np.repeat(image, model.channels, axis=2)
    raise CodecError(
        f"model {model.name!r} takes {model.channels}-channel images; received {channels} channels"
        + (" (convert the image to grayscale first)" if model.channels == 1 else "")
    )


# --------------------------------------------------------------------------- codec


def compress_image(
    image,
    model=None,
    method: str = "packed",
    *,
    quality: int | None = None,
    bpp: float | None = None,
    kbps: float | None = None,
    prior=None,
    depth: str = "adaptive",
    tile: int = DEFAULT_TILE,
    halo: int = DEFAULT_HALO,
) -> bytes:
    """Compresses a uint8 image to a `.vqz` stream.

    Args:
        image: uint8 `(H, W)` or `(H, W, C)`, any size >= 1 x 1.
        model: anything `load_model` takes (an image model). Defaults to
            `DEFAULT_MODEL`.
        method: "packed" (fixed-width codes), "static" (entropy coded under
            the model's code usage distribution) or "prior" (entropy coded
            under an autoregressive prior; a residual model's first stage
            under the prior, its later stages as "static" codes them).
            Defaults to "packed".
        quality: stages kept, `1..S` for a residual model of S stages (1
            only for a single-stage model). Defaults to S (all stages).
        bpp: instead of `quality`: the best stream whose whole file is at
            most `bpp` bits per pixel of `image` (the encoder runs once).
            With `depth="adaptive"` (a residual model) positions keep
            different numbers of stages, chosen for the least squared error
            at that size (`vqvae_tf.codec.depth_choice`; S decoder runs
            more); with `"uniform"`, the highest quality that fits.
        kbps: for audio models only; an image model refuses it (use `bpp`).
        prior: the "prior" method's prior: a `prior.tflite` or
            `prior.keras` path, or None for the model's own
            (`CodecModel.prior`). Ignored by the other
            methods.
        depth: `"adaptive"` (default) or `"uniform"`: how `bpp` is met
            (see above); `quality` always keeps its stages everywhere.
        tile: core tile side in pixels (a multiple of the downsampling
            factor). Defaults to 256.
        halo: margin in code positions around each tile. Defaults to 6.

    Returns:
        The stream as bytes (`read_header(data).kept_stages` is its quality).

    Raises:
        CodecError: bad image or arguments, an audio model, quality out of
            range, or a `bpp` below what the lowest quality reaches for this
            image (the message gives that rate).
    """
    model = load_model(model)
    model.check_kind("image", "the input")
    if method not in METHODS:
        raise CodecError(f"method must be one of {', '.join(METHODS)}; received {method!r}")
    request = check_rate(model, quality=quality, bpp=bpp, kbps=kbps)
    _check_depth_mode(depth)
    image = _as_image(image)
    if method == "static" and not model.code_shape:
        model.code_probabilities()  # a model without code counts fails before the encoder runs
    prior_model = model.prior(prior) if method == "prior" else None
    codes = encode_codes(image, model, tile=tile, halo=halo)
    build = functools.partial(encode_stages, codes, model, method=method, prior=prior_model, image_shape=image.shape)
    height, width = image.shape[:2]
    quality, data = pick_quality(model, request, build, height * width, f"this {height}x{width} image")
    adaptive = depth == "adaptive" and request.target is not None and model.absent_code is not None
    if not adaptive or quality == model.total_stages:
        return data
    # The finer stages where they pay: weigh every position's error against its bits.
    uniform = {q: build(q) for q in range(1, quality + 1)}
    decode = functools.partial(
        tiling.decode_tiled,
        model.decoder.decode,
        factor=model.downsample,
        channels=model.channels,
        tile=_tile_codes(tile, model.downsample),
        halo=halo,
    )
    costs = depth_choice.depth_costs(_to_model_channels(image, model), codes, model, decode)
    build_depth = functools.partial(
        encode_stages, codes, model, model.total_stages, method=method, prior=prior_model, image_shape=image.shape
    )
    max_bytes = request.target[1] * height * width / 8
    return depth_choice.pick_depth(costs, lambda d: build_depth(depth=d), max_bytes, uniform)[1]


def _check_depth_mode(depth) -> None:
    if depth not in depth_choice.DEPTH_MODES:
        raise CodecError(f"depth must be one of {', '.join(depth_choice.DEPTH_MODES)}; received {depth!r}")


def encode_codes(
    image: np.ndarray, model: CodecModel, *, tile: int = DEFAULT_TILE, halo: int = DEFAULT_HALO
) -> np.ndarray:
    """The code map of a uint8 `(H, W, C)` image: padded, tiled, encoded."""
    factor = model.downsample
    tile_codes = _tile_codes(tile, factor)
    halo = check_int("halo", halo, minimum=0, error=CodecError)
    padded = tiling.pad_to_multiple(_to_model_channels(image, model), factor)
    return tiling.encode_tiled(model.encoder.encode, padded, factor, tile_codes, halo)


def _tile_codes(tile, factor: int) -> int:
    """The tile side in code positions, if `tile` is a positive multiple of the downsampling `factor`."""
    if not is_int(tile) or tile < factor or tile % factor:
        raise CodecError(f"tile must be a positive multiple of the downsampling factor {factor}; received {tile!r}")
    return int(tile) // factor


def decompress_bytes(
    data: bytes,
    model=None,
    *,
    prior=None,
    tile: int = DEFAULT_TILE,
    halo: int = DEFAULT_HALO,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Decodes a `.vqz` stream to a uint8 image `(H, W)` (gray) or `(H, W, C)`.

    Args:
        data: the stream.
        model: anything `load_model` takes; None finds the shipped model
            whose id the stream carries.
        prior: for streams of the "prior" method, the prior they were
            coded with (a `prior.tflite` or `prior.keras` path), or None for
            the model's own.
        tile, halo: tiling of the decoder (see `compress_image`).
        max_pixels: refuse larger images before allocating.

    Raises:
        CodecError: the stream is invalid, corrupted, made by another model,
            or does not fit the model.
    """
    header, model = stream_header_and_model(data, model, Kind.IMAGE, "decompress_bytes")
    factor = model.downsample
    height, width, channels = header.image_shape
    stages = (header.kept_stages,) if model.code_shape else ()
    expected_codes = (math.ceil(height / factor), math.ceil(width / factor)) + stages
    if header.code_shape != expected_codes:
        raise CodecError(
            f"stream has a code map of shape {header.code_shape}; an image of {height}x{width} "
            f"needs {expected_codes} with model {model.name!r}"
        )
    if channels not in (1, model.channels):
        raise CodecError(f"stream holds a {channels}-channel image; model {model.name!r} makes {model.channels}")
    probabilities, prior_model = static_probabilities(header, model), None
    if header.method == Method.PRIOR:
        prior_model = model.prior(_legacy_prior(model) if prior is None and header.version == 1 else prior)
    try:
        stream = decode_stream(
            data,
            expected_model_id=model.stream_id,
            code_probabilities=probabilities,
            prior=prior_model,
            max_pixels=max_pixels,
        )
    except BitstreamError as error:
        raise CodecError(f"cannot decode the stream: {error}") from None
    tile_codes = _tile_codes(tile, factor)
    codes = stream.codes
    if stream.depth is not None:  # the stages a position does not keep
        codes = np.where(codes == ABSENT, model.absent_code, codes)
    codes = pad_stages(codes, model)
    image = tiling.decode_tiled(model.decoder.decode, codes, factor, model.channels, tile_codes, halo)
    image = image[:height, :width]
    if channels == 1 and model.channels != 1:
        # The encoder saw the gray image repeated on every channel; the mean
        # of the decoded channels is the least-squares gray estimate.
        image = np.rint(image.mean(axis=2)).astype(np.uint8)
    elif channels == 1:
        image = image[:, :, 0]
    return np.ascontiguousarray(image)


def _legacy_prior(model: CodecModel) -> Path:
    """The Keras prior that decodes a version-1 prior stream: its float tables came from `prior.keras`.

    Version 1 (vqvae_tf 0.2) coded under float probabilities of the Keras
    prior; only the same Keras computation reproduces them, so these streams
    need TensorFlow (`vqvae_tf.codec.prior_coding.tiled.LEGACY_SCHEME`).
    """
    path = model.directory / PRIOR
    if not path.is_file():
        raise CodecError(
            f"this version-1 prior stream decodes only with the Keras prior it was coded with; model "
            f"{model.name!r} has no {PRIOR} (pass it with --prior)"
        )
    return path


def compress(
    input_path,
    output_path,
    model=None,
    method: str = "packed",
    prior=None,
    *,
    quality=None,
    bpp=None,
    kbps=None,
    depth: str = "adaptive",
) -> dict:
    """Compresses an image file into a `.vqz` file (written atomically).

    `quality`, `bpp`, `kbps` and `depth` choose the rate as in `compress_image`.

    Returns:
        A dict: `bytes`, `bits_per_pixel`, `image_shape`, `code_shape`,
        `model`, `method`, `quality` (stages kept: the deepest position's),
        `stages` (kept, total), `stages_per_position` (their mean: below
        `quality` for a variable-depth stream).
    """
    model = load_model(model)
    model.check_kind("image", str(input_path))
    check_rate(model, quality=quality, bpp=bpp, kbps=kbps)  # before reading the image
    _check_depth_mode(depth)
    image = _as_image(read_image(input_path))
    data = compress_image(image, model, method, prior=prior, quality=quality, bpp=bpp, kbps=kbps, depth=depth)
    write_output(output_path, data)
    header = read_header(data)
    mean_depth = float(depth_map(data, header).mean()) if header.variable_depth else float(header.kept_stages)
    return dict(
        bytes=len(data),
        bits_per_pixel=8 * len(data) / (image.shape[0] * image.shape[1]),
        image_shape=header.image_shape,
        code_shape=header.code_shape,
        model=model.name,
        method=method,
        quality=header.kept_stages,
        stages=(header.kept_stages, header.total_stages),
        stages_per_position=mean_depth,
    )


def decompress(input_path, output_path, model=None, prior=None) -> tuple:
    """Decompresses a `.vqz` file into a PNG (written atomically); returns the image shape."""
    path = Path(input_path)
    # A stream within MAX_PIXELS is at most ~4 bytes per code plus headers.
    data = read_stream_file(path, 4 * MAX_PIXELS + (1 << 17))
    image = decompress_bytes(data, model, prior=prior)
    if Path(output_path).suffix.lower() == ".wav":
        raise CodecError(f"{path} holds an image, which decompresses to a PNG; received the output name {output_path}")
    write_png(output_path, image)
    return image.shape

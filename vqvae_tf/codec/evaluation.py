"""Rate-distortion measurements of the codec beside Pillow's JPEG and WebP.

Used by `python -m vqvae_tf.codec eval DIR` and `bench/codec_rd.py`.
Everything is NumPy / SciPy / Pillow: no TensorFlow (except the codec's
`prior` method itself, when asked for).

* `psnr`: over all pixels and channels of uint8 images (peak 255).
* `ms_ssim`: multi-scale SSIM (Wang, Simoncelli, Bovik 2003) as
  `tf.image.ssim_multiscale` computes it: 11-tap Gaussian window (sigma 1.5,
  VALID filtering), K1 = 0.01, K2 = 0.03, five scales with the standard
  weights, 2x2 average pooling between scales, on each channel, then the
  mean over channels. Needs a side of at least 176 pixels (11 * 2**4);
  smaller images give NaN.
* `pillow_encode` / `match_quality`: JPEG or WebP at a quality, and the
  highest quality whose file is no larger than a bits-per-pixel budget
  (binary search; file size grows with quality, checked by the search).
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "FORMATS",
    "evaluate_folder",
    "evaluate_image",
    "format_table",
    "match_quality",
    "ms_ssim",
    "pillow_decode",
    "pillow_encode",
    "psnr",
]

FORMATS = ("JPEG", "WEBP")
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_QUALITY_RANGE = (1, 95)


def psnr(reference: np.ndarray, image: np.ndarray) -> float:
    """PSNR in dB between two uint8 images of the same shape."""
    reference, image = np.asarray(reference), np.asarray(image)
    if reference.shape != image.shape:
        raise ValueError(f"psnr needs equal shapes; received {reference.shape} and {image.shape}")
    mse = float(np.mean((reference.astype(np.float64) - image.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _ssim_terms(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean SSIM and mean contrast-structure of two float64 2-D images."""
    from scipy.ndimage import correlate1d

    size, sigma = 11, 1.5
    taps = np.exp(-0.5 * ((np.arange(size) - size // 2) / sigma) ** 2)
    taps /= taps.sum()

    def blur(a):
        # VALID filtering: only windows fully inside the image.
        a = correlate1d(a, taps, axis=0, mode="constant")[size // 2 : a.shape[0] - size // 2]
        return correlate1d(a, taps, axis=1, mode="constant")[:, size // 2 : a.shape[1] - size // 2]

    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    mu_x, mu_y = blur(x), blur(y)
    sigma_xx = blur(x * x) - mu_x**2
    sigma_yy = blur(y * y) - mu_y**2
    sigma_xy = blur(x * y) - mu_x * mu_y
    cs = (2 * sigma_xy + c2) / (sigma_xx + sigma_yy + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return float(np.mean(luminance * cs)), float(np.mean(cs))


def ms_ssim(reference: np.ndarray, image: np.ndarray) -> float:
    """Multi-scale SSIM of two uint8 images `(H, W)` or `(H, W, C)` (1 = equal)."""
    reference, image = np.asarray(reference), np.asarray(image)
    if reference.shape != image.shape:
        raise ValueError(f"ms_ssim needs equal shapes; received {reference.shape} and {image.shape}")
    if reference.ndim == 2:
        reference, image = reference[:, :, None], image[:, :, None]
    scales = len(MS_SSIM_WEIGHTS)
    if min(reference.shape[:2]) < 11 * 2 ** (scales - 1):
        return float("nan")
    values = []
    for channel in range(reference.shape[2]):
        x = reference[:, :, channel].astype(np.float64)
        y = image[:, :, channel].astype(np.float64)
        product = 1.0
        for scale, weight in enumerate(MS_SSIM_WEIGHTS):
            ssim, cs = _ssim_terms(x, y)
            last = scale == scales - 1
            product *= max(ssim if last else cs, 0.0) ** weight
            if not last:
                h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
                x = x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
                y = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        values.append(product)
    return float(np.mean(values))


def pillow_encode(image: np.ndarray, fmt: str, quality: int) -> bytes:
    """`image` (uint8) as a JPEG or WebP file at `quality` (1..95), as bytes."""
    from PIL import Image

    fmt = fmt.upper()
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}; received {fmt!r}")
    buffer = io.BytesIO()
    options = {"quality": int(quality)}
    if fmt == "WEBP":
        options["method"] = 6  # slowest, best rate-distortion: the strongest baseline
    Image.fromarray(np.squeeze(image, axis=2) if image.ndim == 3 and image.shape[2] == 1 else image).save(
        buffer, format=fmt, **options
    )
    return buffer.getvalue()


def pillow_decode(data: bytes, like: np.ndarray) -> np.ndarray:
    """Decodes a JPEG / WebP file to an array shaped like `like` (WebP decodes gray as RGB)."""
    from PIL import Image

    gray = like.ndim == 2 or like.shape[2] == 1
    with Image.open(io.BytesIO(data)) as decoded:
        return np.asarray(decoded.convert("L" if gray else "RGB")).reshape(like.shape)


def match_quality(image: np.ndarray, fmt: str, target_bpp: float) -> dict:
    """The highest `fmt` quality whose file takes at most `target_bpp`.

    If even quality 1 is larger, quality 1 is returned with `reached=False`
    (the baseline cannot go that low).

    Returns:
        dict with `quality`, `bits_per_pixel`, `psnr`, `ms_ssim`, `reached`.
    """
    pixels = image.shape[0] * image.shape[1]
    cache = {}

    def size(quality):
        if quality not in cache:
            cache[quality] = pillow_encode(image, fmt, quality)
        return 8 * len(cache[quality]) / pixels

    low, high = _QUALITY_RANGE
    best = None
    while low <= high:
        middle = (low + high) // 2
        if size(middle) <= target_bpp:
            best, low = middle, middle + 1
        else:
            high = middle - 1
    quality = best if best is not None else _QUALITY_RANGE[0]
    decoded = pillow_decode(cache[quality] if quality in cache else pillow_encode(image, fmt, quality), image)
    return dict(
        quality=quality,
        bits_per_pixel=size(quality),
        psnr=psnr(image, decoded),
        ms_ssim=ms_ssim(image, decoded),
        reached=best is not None,
    )


def evaluate_image(image: np.ndarray, model, method: str = "packed", name: str = "", quality=None) -> dict:
    """Our codec on one uint8 image beside JPEG and WebP at matched bits per pixel.

    `quality`: stages kept of a residual model (`compress_image`); None for all.
    """
    from vqvae_tf.codec import api as codec
    from vqvae_tf.codec.bitstream.header import read_header

    start = time.perf_counter()
    data = codec.compress_image(image, model, method, quality=quality)
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    decoded = codec.decompress_bytes(data, model)
    decode_seconds = time.perf_counter() - start
    reference = image if image.ndim == 3 or decoded.ndim == 2 else image[:, :, None]
    bpp = 8 * len(data) / (image.shape[0] * image.shape[1])
    row = dict(
        image=name,
        height=int(image.shape[0]),
        width=int(image.shape[1]),
        method=method,
        quality=read_header(data).kept_stages,
        bits_per_pixel=bpp,
        psnr=psnr(reference, decoded.reshape(reference.shape)),
        ms_ssim=ms_ssim(reference, decoded.reshape(reference.shape)),
        encode_seconds=encode_seconds,
        decode_seconds=decode_seconds,
    )
    for fmt in FORMATS:
        row[fmt.lower()] = match_quality(image, fmt, bpp)
    return row


def evaluate_folder(directory, model, method: str = "packed", quality=None) -> list[dict]:
    """`evaluate_image` (at `quality`) on every PNG / JPEG / BMP file under `directory`."""
    from vqvae_tf.codec import api as codec
    from vqvae_tf.codec.images import IMAGE_EXTENSIONS

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"image folder {directory} not found")
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"image folder {directory} holds no {'/'.join(IMAGE_EXTENSIONS)} files")
    model = codec.load_model(model)
    return [
        evaluate_image(codec.read_image(path), model, method, name=str(path.relative_to(directory)), quality=quality)
        for path in files
    ]


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of `evaluate_*` rows plus their mean."""
    header = (
        f"{'image':<24} {'bpp':>7} {'PSNR':>6} {'MS-SSIM':>7} | {'JPEG q':>6} {'bpp':>6} {'PSNR':>6} "
        f"{'MS-SSIM':>7} | {'WebP q':>6} {'bpp':>6} {'PSNR':>6} {'MS-SSIM':>7}"
    )
    lines = [header, "-" * len(header)]

    def line(name, r, j, w):
        flag = lambda m: "" if m.get("reached", True) else "*"  # noqa: E731
        return (
            f"{name[:24]:<24} {r['bits_per_pixel']:7.4f} {r['psnr']:6.2f} {r['ms_ssim']:7.4f} | "
            f"{str(j['quality']) + flag(j):>6} {j['bits_per_pixel']:6.3f} {j['psnr']:6.2f} {j['ms_ssim']:7.4f} | "
            f"{str(w['quality']) + flag(w):>6} {w['bits_per_pixel']:6.3f} {w['psnr']:6.2f} {w['ms_ssim']:7.4f}"
        )

    for row in rows:
        lines.append(line(row["image"], row, row["jpeg"], row["webp"]))
    if len(rows) > 1:
        mean = lambda key, sub=None: float(np.nanmean([(r[sub] if sub else r)[key] for r in rows]))  # noqa: E731
        keys = ("bits_per_pixel", "psnr", "ms_ssim")
        lines.append("-" * len(header))
        lines.append(
            line(
                "mean",
                {k: mean(k) for k in keys},
                dict({k: mean(k, "jpeg") for k in keys}, quality="-"),
                dict({k: mean(k, "webp") for k in keys}, quality="-"),
            )
        )
    lines.append("* the baseline cannot go this low: its quality 1 is shown, at a higher bpp")
    return "\n".join(lines)

"""Pillow JPEG, WebP and AVIF on one photo, each (format, quality) encoded and scored once.

`vqvae_tf.codec.evaluation` knows JPEG and WebP; AVIF is added here where
this Pillow has it (`PIL.features.check("avif")`). `PhotoPeers` caches every
file it encodes, so the quality sweep and the binary searches for the
quality matched to each of our rates share their encodes.
"""

from __future__ import annotations

import io

import numpy as np

from vqvae_tf.codec import evaluation as codec_eval

QUALITY_RANGE = (1, 95)
# Sweeps chosen to span about 0.1-1.5 bpp on photos/valid (cheaper than every
# quality: MS-SSIM of a 481x321 photo costs about 0.2 s here).
SWEEPS = {
    "jpeg": (1, 3, 5, 8, 12, 20, 35),
    "webp": (1, 3, 6, 10, 15, 25, 40),
    "avif": (1, 8, 16, 25, 35, 45, 60),
}


def available_formats() -> tuple:
    from PIL import features

    return ("jpeg", "webp") + (("avif",) if features.check("avif") else ())


def encode(image: np.ndarray, fmt: str, quality: int) -> bytes:
    if fmt != "avif":
        return codec_eval.pillow_encode(image, fmt.upper(), quality)
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="AVIF", quality=int(quality))  # default speed 6
    return buffer.getvalue()


def decode(data: bytes, like: np.ndarray) -> np.ndarray:
    return codec_eval.pillow_decode(data, like)  # Pillow opens AVIF as it opens the others


class PhotoPeers:
    """The peers' files of one uint8 RGB photo, by format and quality."""

    def __init__(self, image: np.ndarray):
        self.image = image
        self.pixels = image.shape[0] * image.shape[1]
        self._files, self._scores = {}, {}

    def bpp(self, fmt: str, quality: int) -> float:
        key = (fmt, int(quality))
        if key not in self._files:
            self._files[key] = encode(self.image, fmt, quality)
        return 8 * len(self._files[key]) / self.pixels

    def point(self, fmt: str, quality: int) -> dict:
        """bpp, PSNR and MS-SSIM of one file."""
        key = (fmt, int(quality))
        if key not in self._scores:
            bpp = self.bpp(fmt, quality)
            decoded = decode(self._files[key], self.image)
            self._scores[key] = dict(
                quality=int(quality),
                bits_per_pixel=bpp,
                psnr=codec_eval.psnr(self.image, decoded),
                ms_ssim=codec_eval.ms_ssim(self.image, decoded),
            )
        return dict(self._scores[key])

    def match(self, fmt: str, target_bpp: float) -> dict:
        """The highest quality whose file takes at most `target_bpp` (quality 1, reached=False, if none does)."""
        low, high = QUALITY_RANGE
        best = None
        # Files already made (the sweep's) bracket the search: sizes grow with quality.
        for (cached_fmt, quality), data in self._files.items():
            if cached_fmt == fmt and 8 * len(data) / self.pixels <= target_bpp and quality >= low:
                best, low = quality, quality + 1
            elif cached_fmt == fmt and 8 * len(data) / self.pixels > target_bpp:
                high = min(high, quality - 1)
        while low <= high:
            middle = (low + high) // 2
            if self.bpp(fmt, middle) <= target_bpp:
                best, low = middle, middle + 1
            else:
                high = middle - 1
        return dict(self.point(fmt, QUALITY_RANGE[0] if best is None else best), reached=best is not None)

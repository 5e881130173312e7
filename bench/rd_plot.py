"""PSNR and MS-SSIM against bpp for bench/codec_rd.py, drawn with Pillow's ImageDraw (matplotlib is no dependency)."""

from __future__ import annotations

from vqvae_tf.utils import atomic

PEER_COLOURS = {"jpeg": (200, 60, 40), "webp": (40, 110, 200), "avif": (120, 120, 120)}
OUR_COLOURS = [(20, 150, 60), (150, 40, 170), (230, 140, 0), (60, 60, 60), (0, 150, 150)]


def draw_plot(curves: dict, points: list, path, title: str) -> None:
    """Mean curves of the peers (lines) and our points (squares packed, discs static, diamonds prior)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = 1400, 640
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    max_bpp = max([1.0] + [p["bits_per_pixel"] * 1.2 for p in points])
    series = {}
    for point in points:
        series.setdefault((point["model"], point["method"]), []).append(point)
    models = sorted({p["model"] for p in points})
    panels = (("psnr", "PSNR (dB)", 18.0, 36.0), ("ms_ssim", "MS-SSIM", 0.6, 1.0))
    for index, (key, label, low, high) in enumerate(panels):
        left, top, right, bottom = 80 + index * 690, 50, 80 + index * 690 + 580, 560

        def sx(b):
            return left + (right - left) * b / max_bpp

        def sy(v):
            return bottom - (bottom - top) * (min(max(v, low), high) - low) / (high - low)

        draw.rectangle((left, top, right, bottom), outline="black")
        for i in range(11):
            b = max_bpp * i / 10
            draw.line((sx(b), top, sx(b), bottom), fill=(230, 230, 230))
            draw.text((sx(b) - 12, bottom + 8), f"{b:.2f}", fill="black", font=font)
        for i in range(10):
            v = low + (high - low) * i / 9
            draw.line((left, sy(v), right, sy(v)), fill=(230, 230, 230))
            draw.text((left - 45, sy(v) - 6), f"{v:.2f}" if key == "ms_ssim" else f"{v:.0f}", fill="black", font=font)
        draw.text(((left + right) / 2 - 80, bottom + 28), "bits per pixel (mean over photos)", fill="black", font=font)
        draw.text((left, top - 30), f"{label} vs bpp, {title}", fill="black", font=font)
        for fmt, curve in curves.items():
            xy = [(sx(p["bits_per_pixel"]), sy(p[key])) for p in curve if p["bits_per_pixel"] <= max_bpp]
            if len(xy) > 1:
                draw.line(xy, fill=PEER_COLOURS[fmt], width=2)
            for x, y in xy:
                draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=PEER_COLOURS[fmt])
        for (model, method), rows in series.items():
            colour = OUR_COLOURS[models.index(model) % len(OUR_COLOURS)]
            rows = sorted(rows, key=lambda p: p["bits_per_pixel"])
            xy = [(sx(p["bits_per_pixel"]), sy(p[key])) for p in rows]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=1)
            for x, y in xy:
                _marker(draw, x, y, method, colour)
        entries = len(curves) + len(series)
        legend_x, legend_y = right - 230, bottom - 16 * entries - 12
        draw.rectangle((legend_x - 8, legend_y - 6, right - 6, bottom - 6), fill="white", outline=(180, 180, 180))
        for fmt in curves:
            draw.line((legend_x, legend_y + 6, legend_x + 20, legend_y + 6), fill=PEER_COLOURS[fmt], width=2)
            draw.text((legend_x + 28, legend_y), f"Pillow {fmt.upper()}", fill="black", font=font)
            legend_y += 16
        for model, method in series:
            _marker(draw, legend_x + 10, legend_y + 6, method, OUR_COLOURS[models.index(model) % len(OUR_COLOURS)])
            draw.text((legend_x + 28, legend_y), f".vqz {model} {method}", fill="black", font=font)
            legend_y += 16
    with atomic.atomic_output(path) as temp:
        canvas.save(temp, format="PNG")


def _marker(draw, x, y, method, colour):
    if method == "packed":
        draw.rectangle((x - 5, y - 5, x + 5, y + 5), outline=colour, width=2)
    elif method == "static":
        draw.ellipse((x - 5, y - 5, x + 5, y + 5), fill=colour)
    else:
        draw.polygon([(x, y - 6), (x + 6, y), (x, y + 6), (x - 6, y)], fill=colour)

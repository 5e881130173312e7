"""Rate-distortion of the .vqz codec against Pillow JPEG and WebP, encode time, peak memory.

On the held-out photos (`vqvae_tf.data.PHOTOS_VALIDATION`, whole) and any
folder given with --folder:

* every shipped codec model (vqvae_tf/pretrained/), packed and static (and
  prior, for a model that ships a prior): bits per pixel, PSNR and MS-SSIM
  per image and on average;
* Pillow JPEG and WebP (method 6) at qualities 1..20, 25..95 step 5: the
  average curves, and per image the quality matched to our bpp (the highest
  quality whose file is not larger), so "dB above JPEG" compares equal bits;
* encode time of a 768x512 photo: our int8 TFLite encoder on 2 threads
  (network alone and the whole `compress_image`) beside Pillow JPEG and
  WebP at the matched quality;
* peak RSS of compressing and decompressing a 4000x3000 photo (a held-out
  photo resized) with the default model, each in a fresh process that
  cannot import TensorFlow, as on a device.

Writes bench/results/codec_rd.json and bench/results/codec_rd.png (drawn with
Pillow's ImageDraw: matplotlib is not a dependency).

    TF_CPP_MIN_LOG_LEVEL=2 python bench/codec_rd.py [--folder DIR] [--repeats 5]
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vqvae_tf import codec  # noqa: E402
from vqvae_tf.codec import evaluation as codec_eval
from vqvae_tf.data.embedded_photos import PHOTOS_VALIDATION, load_photo  # noqa: E402
from vqvae_tf.utils import atomic  # noqa: E402

QUALITIES = list(range(1, 21)) + list(range(25, 96, 5))
RESULTS = ROOT / "bench" / "results"


def _flags():
    flags.DEFINE_string("folder", None, "Also evaluate the PNG/JPEG/BMP images under this folder.")
    flags.DEFINE_integer("repeats", 5, "Timed runs per encode-time measurement (median reported).", lower_bound=1)
    flags.DEFINE_integer("threads", 2, "Interpreter threads.", lower_bound=1)
    flags.DEFINE_bool("memory", True, "Measure peak RSS on a 4000x3000 photo.")
    flags.DEFINE_bool("replot", False, "Only redraw the PNG from the JSON of an earlier run.")
    flags.DEFINE_list("models", None, "Codec models (names or directories); default: every shipped model.")
    flags.DEFINE_string("out", str(RESULTS / "codec_rd.json"), "JSON output (the PNG goes beside it).")
    return flags.FLAGS


def load_images(folder):
    images = {name: np.asarray(load_photo(name)) for name in PHOTOS_VALIDATION}
    if folder:
        from vqvae_tf.codec.images import IMAGE_EXTENSIONS

        for path in sorted(Path(folder).rglob("*")):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                image = codec.read_image(path)
                images[str(path)] = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
    return images


def baseline_curves(images):
    """Per format and quality: per-image and mean bpp / PSNR / MS-SSIM."""
    curves = {}
    for fmt in codec_eval.FORMATS:
        points = []
        for quality in QUALITIES:
            per_image = {}
            for name, image in images.items():
                data = codec_eval.pillow_encode(image, fmt, quality)
                decoded = codec_eval.pillow_decode(data, image)
                per_image[name] = dict(
                    bits_per_pixel=8 * len(data) / (image.shape[0] * image.shape[1]),
                    psnr=codec_eval.psnr(image, decoded),
                    ms_ssim=codec_eval.ms_ssim(image, decoded),
                )
            points.append(dict(quality=quality, per_image=per_image, **_mean(per_image.values())))
        curves[fmt.lower()] = points
    return curves


def _mean(rows):
    rows = list(rows)
    return {key: float(np.mean([r[key] for r in rows])) for key in ("bits_per_pixel", "psnr", "ms_ssim")}


def codec_points(images, models, threads):
    points = []
    for name in models:
        model = codec.load_model(name, num_threads=threads)
        name = model.name
        # The prior method needs a trained prior: only models that ship one.
        for method in (m for m in codec.METHODS if m != "prior" or model.prior_path is not None):
            rows = {key: codec_eval.evaluate_image(image, model, method, name=key) for key, image in images.items()}
            for row in rows.values():
                for fmt in ("jpeg", "webp"):
                    row[f"{fmt}_gain_db"] = row["psnr"] - row[fmt]["psnr"] if row[fmt]["reached"] else None
            point = dict(
                model=name,
                method=method,
                downsample=model.downsample,
                num_codes=model.num_codes,
                per_image=rows,
                **_mean(rows.values()),
            )
            for fmt in ("jpeg", "webp"):
                matched = [r[fmt] for r in rows.values()]
                point[f"{fmt}_matched"] = dict(**_mean(matched), all_reached=all(m["reached"] for m in matched))
                gains = [r[f"{fmt}_gain_db"] for r in rows.values() if r[f"{fmt}_gain_db"] is not None]
                point[f"{fmt}_gain_db"] = float(np.mean(gains)) if gains else None
            points.append(point)
            print(
                f"{name:>10} {method:<7} bpp {point['bits_per_pixel']:.4f}  PSNR {point['psnr']:.2f}  "
                f"MS-SSIM {point['ms_ssim']:.4f} | JPEG {point['jpeg_matched']['bits_per_pixel']:.4f} bpp "
                f"{point['jpeg_matched']['psnr']:.2f} dB {point['jpeg_matched']['ms_ssim']:.4f} | WebP "
                f"{point['webp_matched']['bits_per_pixel']:.4f} bpp {point['webp_matched']['psnr']:.2f} dB "
                f"{point['webp_matched']['ms_ssim']:.4f}",
                flush=True,
            )
    return points


def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def encode_times(models, repeats, threads):
    from PIL import Image

    photo = np.asarray(Image.fromarray(np.asarray(load_photo("rocket"))).resize((768, 512), Image.BICUBIC))
    result = dict(image="rocket resized to 768x512", threads=threads, repeats=repeats, models={})
    for name in models:
        model = codec.load_model(name, num_threads=threads)
        name = model.name
        padded = photo  # 768x512 is a multiple of every factor: no padding
        data = codec.compress_image(photo, model)
        bpp = 8 * len(data) / (512 * 768)
        timings = dict(
            encoder=model.encoder_path.name,
            network_only_s=median_seconds(lambda: model.encoder.encode(padded), repeats),
            compress_packed_s=median_seconds(lambda: codec.compress_image(photo, model, "packed"), repeats),
            compress_static_s=median_seconds(lambda: codec.compress_image(photo, model, "static"), repeats),
            decompress_s=median_seconds(lambda: codec.decompress_bytes(data, model), repeats),
            bits_per_pixel=bpp,
        )
        for fmt in codec_eval.FORMATS:
            quality = codec_eval.match_quality(photo, fmt, bpp)["quality"]
            timings[f"{fmt.lower()}_quality"] = quality
            timings[f"{fmt.lower()}_encode_s"] = median_seconds(
                lambda: codec_eval.pillow_encode(photo, fmt, quality), repeats
            )
        result["models"][name] = timings
        print(
            f"encode 768x512 {name}: network {timings['network_only_s'] * 1e3:.1f} ms, compress "
            f"{timings['compress_packed_s'] * 1e3:.1f} ms, decompress {timings['decompress_s'] * 1e3:.1f} ms; "
            f"JPEG q{timings['jpeg_quality']} {timings['jpeg_encode_s'] * 1e3:.1f} ms, WebP "
            f"q{timings['webp_quality']} {timings['webp_encode_s'] * 1e3:.1f} ms",
            flush=True,
        )
    return result


# Peak RSS is VmHWM of the child's own address space: getrusage's ru_maxrss
# survives execve on Linux and would report the (TensorFlow-sized) parent.
_MEMORY_CHILD = """
import sys, time
for name in ("tensorflow", "keras", "tf_keras"):
    sys.modules[name] = None  # a device: TensorFlow cannot be imported
def hwm_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
from vqvae_tf import codec
mode, model, source, target = sys.argv[1:]
before = hwm_kib()
start = time.perf_counter()
if mode == "compress":
    codec.compress(source, target, model)
else:
    codec.decompress(source, target, model)
print(before, hwm_kib(), time.perf_counter() - start)
"""


def peak_memory(tmp):
    from PIL import Image

    big = Image.fromarray(np.asarray(load_photo("coffee"))).resize((4000, 3000), Image.BICUBIC)
    source = tmp / "big_4000x3000.png"
    big.save(source)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    result = dict(image="coffee resized to 4000x3000 (PNG)", models={})
    for name in (codec.DEFAULT_MODEL,):
        entry = {}
        for mode, src, dst in (
            ("compress", source, tmp / f"{name}.vqz"),
            ("decompress", tmp / f"{name}.vqz", tmp / f"{name}.png"),
        ):
            done = subprocess.run(
                [sys.executable, "-c", _MEMORY_CHILD, mode, name, str(src), str(dst)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            before, peak, seconds = done.stdout.split()
            entry[mode] = dict(
                peak_rss_mib=int(peak) / 1024, rss_after_imports_mib=int(before) / 1024, seconds=float(seconds)
            )
        result["models"][name] = entry
        print(
            f"4000x3000 {name}: compress peak RSS {entry['compress']['peak_rss_mib']:.0f} MiB "
            f"({entry['compress']['seconds']:.1f} s), decompress {entry['decompress']['peak_rss_mib']:.0f} MiB "
            f"({entry['decompress']['seconds']:.1f} s)",
            flush=True,
        )
    return result


# --------------------------------------------------------------------------- plot


def draw_plot(curves, points, path):
    """PSNR vs bpp and MS-SSIM vs bpp, side by side, with Pillow's ImageDraw."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = 1400, 620
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    colours = {"jpeg": (200, 60, 40), "webp": (40, 110, 200)}
    marker_colours = [(20, 150, 60), (150, 40, 170), (230, 140, 0), (60, 60, 60)]
    max_bpp = max(0.8, max(p["bits_per_pixel"] for p in points) * 1.2) if points else 0.8
    panels = (("psnr", "PSNR (dB)", 16.0, 36.0), ("ms_ssim", "MS-SSIM", 0.6, 1.0))
    for index, (key, label, low, high) in enumerate(panels):
        left, top, right, bottom = 80 + index * 690, 50, 80 + index * 690 + 580, 540
        sx = lambda b: left + (right - left) * b / max_bpp  # noqa: E731
        sy = lambda v: bottom - (bottom - top) * (min(max(v, low), high) - low) / (high - low)  # noqa: E731
        draw.rectangle((left, top, right, bottom), outline="black")
        for i in range(9):
            b = max_bpp * i / 8
            draw.line((sx(b), bottom, sx(b), bottom + 5), fill="black")
            draw.line((sx(b), top, sx(b), bottom), fill=(230, 230, 230))
            draw.text((sx(b) - 12, bottom + 8), f"{b:.2f}", fill="black", font=font)
        for i in range(7):
            v = low + (high - low) * i / 6
            draw.line((left - 5, sy(v), left, sy(v)), fill="black")
            draw.line((left, sy(v), right, sy(v)), fill=(230, 230, 230))
            draw.text((left - 45, sy(v) - 6), f"{v:.2f}" if key == "ms_ssim" else f"{v:.0f}", fill="black", font=font)
        draw.text(((left + right) / 2 - 60, bottom + 28), "bits per pixel (mean over photos)", fill="black", font=font)
        draw.text((left, top - 30), f"{label} vs bpp, held-out photos", fill="black", font=font)
        entries = len(colours) + len(points)
        legend_x, legend_y = right - 210, bottom - 16 * entries - 12
        for fmt, colour in colours.items():
            xy = [(sx(p["bits_per_pixel"]), sy(p[key])) for p in curves[fmt] if p["bits_per_pixel"] <= max_bpp]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=2)
            for x, y in xy:
                draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        # Legend drawn after the curves so it stays readable.
        draw.rectangle((legend_x - 8, legend_y - 6, right - 6, bottom - 6), fill="white", outline=(180, 180, 180))
        for fmt, colour in colours.items():
            draw.line((legend_x, legend_y + 6, legend_x + 20, legend_y + 6), fill=colour, width=2)
            draw.text((legend_x + 28, legend_y), f"Pillow {fmt.upper()} q1..95", fill="black", font=font)
            legend_y += 16
        for i, point in enumerate(points):
            colour = marker_colours[(i // 2) % len(marker_colours)]
            for x, y in ((sx(point["bits_per_pixel"]), sy(point[key])), (legend_x + 10, legend_y + 6)):
                if point["method"] == "packed":
                    draw.rectangle((x - 5, y - 5, x + 5, y + 5), outline=colour, width=2)
                else:
                    draw.ellipse((x - 5, y - 5, x + 5, y + 5), fill=colour)
            draw.text((legend_x + 28, legend_y), f".vqz {point['model']} {point['method']}", fill="black", font=font)
            legend_y += 16
    with atomic.atomic_output(path) as temp:
        canvas.save(temp, format="PNG")


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    import tempfile

    out = Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if FLAGS.replot:
        result = json.loads(out.read_text())
        draw_plot(result["baselines"], result["codec"], out.with_suffix(".png"))
        return
    images = load_images(FLAGS.folder)
    print(f"images: {', '.join(f'{k} {v.shape[1]}x{v.shape[0]}' for k, v in images.items())}", flush=True)
    models = FLAGS.models or codec.shipped_models()
    points = codec_points(images, models, FLAGS.threads)
    curves = baseline_curves(images)
    times = encode_times(models, FLAGS.repeats, FLAGS.threads)
    memory = None
    if FLAGS.memory:
        with tempfile.TemporaryDirectory() as tmp:
            memory = peak_memory(Path(tmp))
    result = dict(
        images={k: list(v.shape) for k, v in images.items()},
        qualities=QUALITIES,
        codec=points,
        baselines=curves,
        encode_time=times,
        memory=memory,
        load_average=os.getloadavg(),
        command="TF_CPP_MIN_LOG_LEVEL=2 python " + " ".join(sys.argv),
    )
    atomic.write_json(out, result, indent=1, default=float)
    draw_plot(curves, points, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    _flags()
    app.run(main)

"""Rate-distortion of the .vqz codec on photos/valid against Pillow JPEG, WebP and AVIF; speed; peak memory.

On every photo of a folder (default `../shared/data/photos/valid`, 105
held-out photos; `--limit N` takes N of them, evenly spaced, for a quick run),
whole, counting every byte of every file:

* our codec: every shipped model (and each `--model DIR`), every rate it
  offers (`model_rates`: the qualities of a multi-rate model once
  `compress_image` takes `quality=`, else its single rate) and every method
  (packed, static, prior where the model ships a prior): bpp, PSNR, MS-SSIM;
* Pillow JPEG, WebP (method 6) and AVIF (where `PIL.features.check("avif")`)
  at a sweep of qualities (`rd_peers.SWEEPS`): the mean curves; and per
  photo the quality matched to each of our points (the highest quality whose
  file is not larger), so "dB above" compares equal bits;
* BD-rate and BD-PSNR (`bench/bd.py`, PCHIP over the common range) of our
  curves against each peer's mean curve: per model where it offers several
  rates, and for the shipped line-up (all shipped models' points of a method);
* speed on the 768x512 photo of the folder, 2 threads: int8 encoder alone,
  compress, decompress per method, beside Pillow's encode and decode at the
  matched quality, with ratios;
* peak RSS of compressing and decompressing a 4000x3000 photo with the
  default model, each in a fresh process that cannot import TensorFlow.

Writes bench/results/codec_rd.json and bench/results/codec_rd.png; also
prints, per point and peer, how we compare on the photos where our file is
smaller than the peer's lowest setting (`--replot` redraws the PNG and
prints these lines from the JSON alone).

    TF_CPP_MIN_LOG_LEVEL=2 python bench/codec_rd.py [--folder DIR] [--limit N] [--model DIR ...]
"""

import inspect
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bd  # noqa: E402
import rd_peers  # noqa: E402
from rd_memory import peak_memory  # noqa: E402
from rd_plot import draw_plot  # noqa: E402

from vqvae_tf import codec  # noqa: E402
from vqvae_tf.codec import evaluation as codec_eval  # noqa: E402
from vqvae_tf.codec.images import IMAGE_EXTENSIONS  # noqa: E402
from vqvae_tf.utils import atomic  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEFAULT_FOLDER = ROOT.parent / "shared" / "data" / "photos" / "valid"
KEYS = ("bits_per_pixel", "psnr", "ms_ssim")


def _flags():
    flags.DEFINE_string("folder", str(DEFAULT_FOLDER), "Folder of held-out photos (PNG/JPEG/BMP), each used whole.")
    flags.DEFINE_integer("limit", None, "Use only this many photos of the folder (evenly spaced).", lower_bound=1)
    flags.DEFINE_multi_string("model", [], "A codec model directory to measure too (repeatable).")
    flags.DEFINE_bool("shipped", True, "Measure every shipped model.")
    flags.DEFINE_integer("repeats", 5, "Timed runs per speed measurement (median reported).", lower_bound=1)
    flags.DEFINE_integer("threads", 2, "Interpreter threads.", lower_bound=1)
    flags.DEFINE_bool("memory", True, "Measure peak RSS on a 4000x3000 photo.")
    flags.DEFINE_bool("replot", False, "Only redraw the PNG from the JSON of an earlier run.")
    flags.DEFINE_string("out", str(RESULTS / "codec_rd.json"), "JSON output (the PNG goes beside it).")
    return flags.FLAGS


def load_images(folder, limit=None):
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"--folder: {folder} is not a folder (expected a folder of photos)")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise SystemExit(f"--folder: {folder} holds no {'/'.join(IMAGE_EXTENSIONS)} files")
    if limit and limit < len(files):
        files = [files[i] for i in np.unique(np.linspace(0, len(files) - 1, limit).round().astype(int))]
    images = {}
    for path in files:
        image = codec.read_image(path)
        images[str(path.relative_to(folder))] = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
    return images


def model_rates(model) -> list:
    """The qualities `model` offers, lowest rate first; `[None]` for its single rate.

    Multi-rate needs `compress_image(..., quality=)`; the qualities come from
    the model (`qualities` / `num_stages`), its codec.json (`qualities`) or
    its residual stages (one quality per stage kept).
    """
    if "quality" not in inspect.signature(codec.compress_image).parameters:
        return [None]
    for attribute in ("qualities", "quality_levels"):
        value = getattr(model, attribute, None)
        value = value() if callable(value) else value
        if value:
            return [int(q) for q in value]
    manifest = json.loads((model.directory / "codec.json").read_text())
    listed = manifest.get("qualities") or manifest.get("rates")
    if isinstance(listed, list) and listed:
        return [int(r["quality"]) if isinstance(r, dict) else int(r) for r in listed]
    stages = getattr(model, "num_stages", None) or manifest.get("num_stages")
    if not stages and model.code_shape:
        stages = model.code_shape[0]
    return list(range(1, int(stages) + 1)) if stages and int(stages) > 1 else [None]


def compress(image, model, method, quality):
    options = {} if quality is None else {"quality": quality}
    return codec.compress_image(image, model, method, **options)


def model_methods(model) -> list:
    return [m for m in codec.METHODS if m != "prior" or model.prior_path is not None]


def measure_photo(name, image, models, formats, skipped):
    """Our points and the peers' matched points on one photo, and the peers' sweep."""
    peers = rd_peers.PhotoPeers(image)
    sweep = {fmt: [peers.point(fmt, q) for q in rd_peers.SWEEPS[fmt]] for fmt in formats}
    rows = {}
    for model in models:
        for quality in model_rates(model):
            decoded = None
            for method in model_methods(model):
                if (model.name, method) in skipped:
                    continue
                try:
                    data = compress(image, model, method, quality)
                except codec.CodecError as error:
                    skipped[(model.name, method)] = str(error)
                    print(f"skipping {model.name} {method}: {error}", flush=True)
                    continue
                if decoded is None:
                    # Every method codes the same code map, so one decode scores them all.
                    decoded = codec.decompress_bytes(data, model)
                    scores = dict(psnr=codec_eval.psnr(image, decoded), ms_ssim=codec_eval.ms_ssim(image, decoded))
                bpp = 8 * len(data) / (image.shape[0] * image.shape[1])
                row = dict(bits_per_pixel=bpp, **scores)
                row.update({fmt: peers.match(fmt, bpp) for fmt in formats})
                rows[(model.name, quality, method)] = row
    return rows, sweep


def summarise(per_photo, models, formats):
    points = []
    for key in per_photo[next(iter(per_photo))][0]:
        model_name, quality, method = key
        rows = {photo: rows[key] for photo, (rows, _) in per_photo.items() if key in rows}
        model = next(m for m in models if m.name == model_name)
        point = dict(model=model_name, quality=quality, method=method, downsample=model.downsample)
        point.update(_mean(rows.values()))
        for fmt in formats:
            matched = [r[fmt] for r in rows.values()]
            gains = [r["psnr"] - r[fmt]["psnr"] for r in rows.values() if r[fmt]["reached"]]
            point[f"{fmt}_matched"] = dict(**_mean(matched), reached=sum(m["reached"] for m in matched))
            point[f"{fmt}_gain_db"] = float(np.mean(gains)) if gains else None
        point["photos"] = len(rows)
        point["per_image"] = {photo: _compact(r, formats) for photo, r in rows.items()}
        points.append(point)
    curves = {}
    for fmt in formats:
        curves[fmt] = [
            dict(quality=q, **_mean(sweep[fmt][i] for _, sweep in per_photo.values()))
            for i, q in enumerate(rd_peers.SWEEPS[fmt])
        ]
    return points, curves


def below_lowest(points, formats) -> list[str]:
    """Per point and peer: on the photos where our file is smaller than the peer's lowest setting, how we compare.

    Computed from each point's `per_image` (the peer's entry there is its
    lowest setting where `reached` is false), so `--replot` prints it from
    the JSON of any run.
    """
    lines = []
    for point in points:
        for fmt in formats:
            below = [row for row in point["per_image"].values() if not row[fmt][4]]
            if not below:
                continue
            gains = [row["psnr"] - row[fmt][2] for row in below]
            rate = f"q{point['quality']} " if point["quality"] else ""
            lines.append(
                f"{point['model']} {rate}{point['method']}: on {len(below)} photos smaller than {fmt.upper()}'s "
                f"lowest setting ({np.mean([r['bits_per_pixel'] for r in below]):.3f} vs "
                f"{np.mean([r[fmt][1] for r in below]):.3f} bpp), higher PSNR on {sum(g > 0 for g in gains)}, "
                f"{np.mean(gains):+.2f} dB on average"
            )
    return lines


def _mean(rows):
    rows = list(rows)
    return {key: float(np.nanmean([r[key] for r in rows])) for key in KEYS}


def _compact(row, formats):
    out = {key: round(row[key], 5) for key in KEYS}
    for fmt in formats:
        out[fmt] = [row[fmt]["quality"], round(row[fmt]["bits_per_pixel"], 5), round(row[fmt]["psnr"], 3)]
        out[fmt] += [round(row[fmt]["ms_ssim"], 5), row[fmt]["reached"]]
    return out


def bd_table(points, curves, shipped_names):
    """BD-rate / BD-PSNR of our curves (>= 2 rates) against each peer's mean curve."""
    ours = {}
    for point in points:
        ours.setdefault((point["model"], point["method"]), []).append(point)
        if point["model"] in shipped_names:
            ours.setdefault(("shipped line-up", point["method"]), []).append(point)
    table = []
    for (model, method), rows in ours.items():
        if len(rows) < 2 or (model != "shipped line-up" and len({p["quality"] for p in rows}) < 2):
            continue
        rates, psnrs = [p["bits_per_pixel"] for p in rows], [p["psnr"] for p in rows]
        entry = dict(curve=model, method=method, points=len(rows), bpp_range=[min(rates), max(rates)])
        for fmt, curve in curves.items():
            anchor = ([p["bits_per_pixel"] for p in curve], [p["psnr"] for p in curve])
            for name, fn in (("bd_rate_percent", bd.bd_rate), ("bd_psnr_db", bd.bd_psnr)):
                try:
                    entry[f"{fmt}_{name}"] = fn(*anchor, rates, psnrs)
                except ValueError as error:
                    entry[f"{fmt}_{name}"], entry[f"{fmt}_{name}_why"] = None, str(error)
        table.append(entry)
    return table


def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(images, models, formats, repeats):
    name = next((k for k, v in images.items() if v.shape[:2] == (512, 768)), None)
    if name is None:
        from PIL import Image

        name = next(iter(images))
        photo = np.asarray(Image.fromarray(images[name]).resize((768, 512), Image.BICUBIC))
        name += " resized to 768x512"
    else:
        photo = images[name]
    result = dict(image=name, repeats=repeats, models=[])
    for model in models:
        for quality in model_rates(model):
            data = {m: compress(photo, model, m, quality) for m in model_methods(model)}
            bpp = 8 * len(data["packed"]) / photo.shape[0] / photo.shape[1]
            entry = dict(model=model.name, quality=quality, encoder=model.encoder_path.name, bits_per_pixel=bpp)
            entry["encoder_network_s"] = median_seconds(lambda: model.encoder.encode(photo), repeats)
            entry["compress_packed_s"] = median_seconds(lambda: compress(photo, model, "packed", quality), repeats)
            for method, stream in data.items():
                runs = repeats if method != "prior" else min(repeats, 2)  # seconds per run with TensorFlow
                entry[f"decompress_{method}_s"] = median_seconds(lambda: codec.decompress_bytes(stream, model), runs)
            line = (
                f"768x512 {model.name} q{quality}: encoder {entry['encoder_network_s'] * 1e3:.1f} ms, compress "
                f"{entry['compress_packed_s'] * 1e3:.1f} ms, decompress "
                + ", ".join(f"{m} {entry[f'decompress_{m}_s'] * 1e3:.0f} ms" for m in data)
            )
            for fmt in formats:
                quality_matched = rd_peers.PhotoPeers(photo).match(fmt, bpp)["quality"]
                file = rd_peers.encode(photo, fmt, quality_matched)
                enc = median_seconds(lambda: rd_peers.encode(photo, fmt, quality_matched), repeats)
                dec = median_seconds(lambda: rd_peers.decode(file, photo), repeats)
                entry[fmt] = dict(quality=quality_matched, encode_s=enc, decode_s=dec)
                entry[fmt]["compress_ratio"] = entry["compress_packed_s"] / enc
                entry[fmt]["decompress_ratio"] = entry["decompress_packed_s"] / dec
                line += (
                    f"; {fmt.upper()} q{quality_matched} encode {enc * 1e3:.1f} ms, decode {dec * 1e3:.1f} ms "
                    f"(ours/{fmt.upper()}: compress x{entry[fmt]['compress_ratio']:.2f}, "
                    f"decompress x{entry[fmt]['decompress_ratio']:.2f})"
                )
            result["models"].append(entry)
            print(line, flush=True)
    return result


def markdown(points, bds, formats):
    lines = [
        "| model, method | bpp | PSNR dB | MS-SSIM | "
        + " | ".join(f"{f.upper()} at that bpp: dB (MS-SSIM), photos reached" for f in formats)
        + " |",
        "| --- | ---: | ---: | ---: | " + " | ".join("---" for _ in formats) + " |",
    ]
    for p in points:
        rate = "" if p["quality"] is None else f" q{p['quality']}"
        cells = []
        for fmt in formats:
            m = p[f"{fmt}_matched"]
            gain = p[f"{fmt}_gain_db"]
            cells.append(
                f"{m['psnr']:.2f} ({m['ms_ssim']:.3f}), {m['reached']}/{p['photos']}"
                + ("" if gain is None else f"; ours {gain:+.2f} dB where reached")
            )
        lines.append(
            f"| {p['model']}{rate}, {p['method']} | {p['bits_per_pixel']:.3f} | {p['psnr']:.2f} | "
            f"{p['ms_ssim']:.3f} | " + " | ".join(cells) + " |"
        )
    if bds:
        lines += ["", "| curve | points | " + " | ".join(f"vs {f.upper()}: BD-rate, BD-PSNR" for f in formats) + " |"]
        lines.append("| --- | ---: | " + " | ".join("---" for _ in formats) + " |")
        for entry in bds:
            cells = []
            for fmt in formats:
                rate, gain = entry[f"{fmt}_bd_rate_percent"], entry[f"{fmt}_bd_psnr_db"]
                cells.append(
                    ("n/a" if rate is None else f"{rate:+.1f}%") + ", " + ("n/a" if gain is None else f"{gain:+.2f} dB")
                )
            lines.append(f"| {entry['curve']} {entry['method']} | {entry['points']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    out = Path(FLAGS.out)
    if FLAGS.replot:
        result = json.loads(out.read_text())
        draw_plot(result["baselines"], result["codec"], out.with_suffix(".png"), result["title"])
        print("\n".join(below_lowest(result["codec"], list(result["baselines"]))))
        return
    images = load_images(FLAGS.folder, FLAGS.limit)
    shipped = codec.shipped_models() if FLAGS.shipped else []
    models = [codec.load_model(m, num_threads=FLAGS.threads) for m in shipped + FLAGS.model]
    # Photos only: the shipped audio models (speech16k) are benchmarked by bench/speech_codec.py.
    audio = [m.name for m in models if m.kind != "image"]
    models = [m for m in models if m.kind == "image"]
    if audio:
        print(f"leaving out the audio model(s) {', '.join(audio)} (bench/speech_codec.py measures them)", flush=True)
    if not models:
        raise SystemExit("no model to measure: pass --model DIR or keep --shipped")
    formats = rd_peers.available_formats()
    print(f"{len(images)} photos of {FLAGS.folder}; models {[m.name for m in models]}; peers {formats}", flush=True)
    print(f"rates: {', '.join(f'{m.name} {model_rates(m)}' for m in models)}", flush=True)
    start, per_photo, skipped = time.perf_counter(), {}, {}
    for index, (name, image) in enumerate(images.items()):
        per_photo[name] = measure_photo(name, image, models, formats, skipped)
        if index % 10 == 9 or index == len(images) - 1:
            print(f"{index + 1}/{len(images)} photos, {time.perf_counter() - start:.0f} s", flush=True)
    points, curves = summarise(per_photo, models, formats)
    bds = bd_table(points, curves, {m.name for m in models if m.name in shipped})
    times = speed(images, models, formats, FLAGS.repeats)
    memory = None
    if FLAGS.memory:
        memory = peak_memory(ROOT, images.get(times["image"], next(iter(images.values()))))
    title = f"{len(images)} photos of {Path(FLAGS.folder).name}/"
    result = dict(
        title=title,
        folder=str(FLAGS.folder),
        images={k: list(v.shape) for k, v in images.items()},
        sweeps=rd_peers.SWEEPS,
        codec=points,
        skipped={f"{k[0]} {k[1]}": v for k, v in skipped.items()},
        baselines=curves,
        bd=bds,
        speed=times,
        memory=memory,
        load_average=os.getloadavg(),
        seconds=time.perf_counter() - start,
        command="TF_CPP_MIN_LOG_LEVEL=2 python " + " ".join(sys.argv),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out, result, indent=1, default=float)
    draw_plot(curves, points, out.with_suffix(".png"), title)
    for fmt, curve in curves.items():
        print(
            f"{fmt.upper()} mean curve: "
            + ", ".join(f"q{p['quality']} {p['bits_per_pixel']:.3f} bpp {p['psnr']:.2f} dB" for p in curve)
        )
    print(markdown(points, bds, formats))
    print("\n".join(below_lowest(points, formats)))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    _flags()
    app.run(main)

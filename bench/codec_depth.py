"""Variable-depth streams against uniform qualities and WebP on photos/valid: below WebP's lowest setting, BD-rate.

`compress --bpp B` fills the target with a variable-depth stream (each code
position keeps the stages that pay for their bits, `vqvae_tf.codec.
depth_choice`); `--depth uniform` keeps the highest quality that fits. On
every held-out photo (default `../shared/data/photos/valid`, 105; `--limit
N` for a quick run), whole files counted, with the residual model
(`--model`, default the shipped `d8k512x4`) and the `prior` method:

* **below WebP's lowest setting**: the target is one byte less than that
  photo's WebP file at quality 1 (method 6), so our file is strictly
  smaller; PSNR of ours (adaptive, and uniform at the same target) against
  WebP's on each photo, also with the `static` method;
* **the curve**: uniform qualities 1..S and adaptive targets
  (`--targets`), mean bpp and PSNR, BD-rate and BD-PSNR of both curves
  against WebP's mean curve over the common range (`bench/bd.py`), so the
  ratio of the two shows what variable depth buys;
* **time**: compress adaptive against uniform at one target on the 768x512
  photo of the folder (median of `--repeats`), and its decode.

Writes bench/results/codec_depth.json.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/codec_depth.py [--limit N] [--targets 0.15,0.2,0.3,0.4]
    TF_CPP_MIN_LOG_LEVEL=2 python bench/codec_depth.py --speed_only   # times only, printed
"""

import json
import os
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
from codec_rd import DEFAULT_FOLDER, load_images, median_seconds  # noqa: E402

from vqvae_tf import codec  # noqa: E402
from vqvae_tf.codec import evaluation as codec_eval  # noqa: E402
from vqvae_tf.codec.bitstream import read_header  # noqa: E402
from vqvae_tf.codec.bitstream.prior_method import forget_stage_zero  # noqa: E402
from vqvae_tf.codec.streams import depth_map  # noqa: E402
from vqvae_tf.utils import atomic  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def _flags():
    flags.DEFINE_string("folder", str(DEFAULT_FOLDER), "Folder of held-out photos, each used whole.")
    flags.DEFINE_integer("limit", None, "Use only this many photos of the folder (evenly spaced).", lower_bound=1)
    flags.DEFINE_string("model", "d8k512x4", "A residual codec model: shipped name or directory.")
    flags.DEFINE_list("targets", ["0.15", "0.2", "0.3", "0.4"], "Adaptive bpp targets of the curve.")
    flags.DEFINE_bool("speed_only", False, "Only the compress/decompress times on the 768x512 photo (no curves).")
    flags.DEFINE_integer("repeats", 3, "Timed runs per speed measurement (median reported).", lower_bound=1)
    flags.DEFINE_integer("threads", 2, "Interpreter threads.", lower_bound=1)
    flags.DEFINE_string("out", str(RESULTS / "codec_depth.json"), "JSON output.")
    return flags.FLAGS


def score(image, data, model):
    decoded = codec.decompress_bytes(data, model)
    header = read_header(data)
    mean_depth = depth_map(data, header).mean() if header.variable_depth else header.kept_stages
    return dict(
        bits_per_pixel=8 * len(data) / (image.shape[0] * image.shape[1]),
        psnr=codec_eval.psnr(image, decoded),
        stages_per_position=float(mean_depth),
    )


def at_target(image, model, method, bpp, depth):
    """Our stream at `bpp` (`depth` adaptive or uniform); quality 1 where even that does not fit."""
    try:
        return codec.compress_image(image, model, method, bpp=bpp, depth=depth), True
    except codec.CodecError:
        return codec.compress_image(image, model, method, quality=1), False


def measure_photo(image, model, targets):
    peers = rd_peers.PhotoPeers(image)
    webp = [peers.point("webp", q) for q in rd_peers.SWEEPS["webp"]]
    lowest = webp[0]
    # One byte under WebP's lowest file: ours is strictly smaller.
    below = (lowest["bits_per_pixel"] * image.shape[0] * image.shape[1] / 8 - 1) * 8 / (image.shape[0] * image.shape[1])
    row = dict(webp=webp, below={})
    for method in ("prior", "static"):
        for depth in ("adaptive", "uniform"):
            data, fits = at_target(image, model, method, below, depth)
            row["below"][f"{method} {depth}"] = dict(score(image, data, model), fits=fits)
    row["uniform"] = [
        score(image, codec.compress_image(image, model, "prior", quality=q), model) for q in qualities(model)
    ]
    row["adaptive"] = []
    for target in targets:
        data, fits = at_target(image, model, "prior", target, "adaptive")
        row["adaptive"].append(dict(score(image, data, model), target=target, fits=fits))
    return row


def qualities(model):
    return list(range(1, model.total_stages + 1))


def _mean(rows, key):
    return float(np.mean([r[key] for r in rows]))


def summarise(per_photo, model, targets):
    rows = list(per_photo.values())
    webp_curve = [
        dict(quality=q, bits_per_pixel=_mean([r["webp"][i] for r in rows], "bits_per_pixel"))
        | dict(psnr=_mean([r["webp"][i] for r in rows], "psnr"))
        for i, q in enumerate(rd_peers.SWEEPS["webp"])
    ]
    below = {}
    for key in rows[0]["below"]:
        ours = [r["below"][key] for r in rows]
        gains = [o["psnr"] - r["webp"][0]["psnr"] for o, r in zip(ours, rows)]
        below[key] = dict(
            photos=len(rows),
            smaller=sum(o["fits"] for o in ours),
            higher_psnr=sum(g > 0 for g in gains),
            mean_gain_db=float(np.mean(gains)),
            bits_per_pixel=_mean(ours, "bits_per_pixel"),
            psnr=_mean(ours, "psnr"),
            stages_per_position=_mean(ours, "stages_per_position"),
            webp_lowest_bits_per_pixel=_mean([r["webp"][0] for r in rows], "bits_per_pixel"),
            webp_lowest_psnr=_mean([r["webp"][0] for r in rows], "psnr"),
        )
    uniform = [
        dict(quality=q, bits_per_pixel=_mean([r["uniform"][i] for r in rows], "bits_per_pixel"))
        | dict(psnr=_mean([r["uniform"][i] for r in rows], "psnr"))
        for i, q in enumerate(qualities(model))
    ]
    adaptive = [
        dict(target=t, bits_per_pixel=_mean([r["adaptive"][i] for r in rows], "bits_per_pixel"))
        | dict(psnr=_mean([r["adaptive"][i] for r in rows], "psnr"))
        | dict(stages_per_position=_mean([r["adaptive"][i] for r in rows], "stages_per_position"))
        | dict(fits=sum(r["adaptive"][i]["fits"] for r in rows))
        for i, t in enumerate(targets)
    ]
    # The adaptive curve spans the same range as the uniform one: quality 1 at the bottom, S at the top.
    adaptive_curve = [uniform[0]] + adaptive + [uniform[-1]]
    anchor = ([p["bits_per_pixel"] for p in webp_curve], [p["psnr"] for p in webp_curve])
    bds = {}
    for name, curve in (("uniform", uniform), ("adaptive", adaptive_curve)):
        rates, psnrs = [p["bits_per_pixel"] for p in curve], [p["psnr"] for p in curve]
        bds[name] = dict(
            webp_bd_rate_percent=bd.bd_rate(*anchor, rates, psnrs),
            webp_bd_psnr_db=bd.bd_psnr(*anchor, rates, psnrs),
        )
    return dict(webp_curve=webp_curve, below_webp_lowest=below, uniform=uniform, adaptive=adaptive, bd=bds)


def speed(images, model, target, repeats):
    name = next((k for k, v in images.items() if v.shape[:2] == (512, 768)), next(iter(images)))
    photo = images[name]
    out = dict(image=name, target=target, repeats=repeats)

    def one_call(method, depth):
        # The prior's stage-0 part is kept between builds of one code map;
        # a user's compress call starts without it, so each timed call does.
        forget_stage_zero()
        return codec.compress_image(photo, model, method, bpp=target, depth=depth)

    for method in ("static", "prior"):
        for depth in ("uniform", "adaptive"):
            out[f"{method} {depth} compress_s"] = median_seconds(lambda: one_call(method, depth), repeats)
        data = codec.compress_image(photo, model, method, bpp=target)
        out[f"{method} adaptive decompress_s"] = median_seconds(lambda: codec.decompress_bytes(data, model), repeats)
        out[f"{method} adaptive/uniform compress"] = (
            out[f"{method} adaptive compress_s"] / out[f"{method} uniform compress_s"]
        )
    return out


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    targets = [float(t) for t in FLAGS.targets]
    images = load_images(FLAGS.folder, FLAGS.limit)
    model = codec.load_model(FLAGS.model, num_threads=FLAGS.threads)
    if model.total_stages < 2:
        raise SystemExit(f"--model {FLAGS.model}: variable depth needs a residual model; it has one stage")
    if FLAGS.speed_only:
        result = speed(images, model, targets[1], FLAGS.repeats)
        print(json.dumps(result, indent=1))
        return
    print(f"{len(images)} photos of {FLAGS.folder}; model {model.name}; targets {targets}", flush=True)
    start, per_photo = time.perf_counter(), {}
    for index, (name, image) in enumerate(images.items()):
        per_photo[name] = measure_photo(image, model, targets)
        if index % 10 == 9 or index == len(images) - 1:
            print(f"{index + 1}/{len(images)} photos, {time.perf_counter() - start:.0f} s", flush=True)
    summary = summarise(per_photo, model, targets)
    summary["speed"] = speed(images, model, targets[1], FLAGS.repeats)
    result = dict(
        title=f"{len(images)} photos of {Path(FLAGS.folder).name}/",
        model=model.name,
        **summary,
        per_photo=per_photo,
        load_average=os.getloadavg(),
        seconds=time.perf_counter() - start,
        command="TF_CPP_MIN_LOG_LEVEL=2 python " + " ".join(sys.argv),
    )
    out = Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out, result, indent=1, default=float)
    for key, entry in summary["below_webp_lowest"].items():
        print(
            f"below WebP's lowest ({entry['webp_lowest_bits_per_pixel']:.3f} bpp, {entry['webp_lowest_psnr']:.2f} dB): "
            f"{key} {entry['bits_per_pixel']:.3f} bpp {entry['psnr']:.2f} dB "
            f"({entry['stages_per_position']:.2f} stages/position), smaller on {entry['smaller']}/{entry['photos']}, "
            f"higher PSNR on {entry['higher_psnr']}, {entry['mean_gain_db']:+.2f} dB on average"
        )
    for name in ("uniform", "adaptive"):
        points = summary[name]
        print(f"{name}: " + ", ".join(f"{p['bits_per_pixel']:.3f} bpp {p['psnr']:.2f} dB" for p in points))
    for name, entry in summary["bd"].items():
        rate, gain = entry["webp_bd_rate_percent"], entry["webp_bd_psnr_db"]
        print(f"{name} vs WebP: BD-rate {rate:+.1f}%, BD-PSNR {gain:+.2f} dB")
    print(json.dumps(summary["speed"], indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    _flags()
    app.run(main)

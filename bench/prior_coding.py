"""Stream sizes of code maps: fixed-width packing vs static vs prior coding.

Two parts, one per run:

`--photos`: the image codec (`python -m vqvae_tf.codec`) on the first
`--num-photos` held-out photos of `--photo-dir` (default
`../shared/data/photos/valid`, whole) with a shipped model (default d8k512)
and its shipped TFLite prior: `.vqz` bytes (and bits per code) of the packed,
static and prior methods (the same codes, so identical reconstructions,
which the run checks), the savings, and compress / decompress wall time
(best of `--repeats`), plus the decompress time of a 768x512 photo (the
first photo resized), with `--keras-peer` beside the same stream decoded
with the Keras prior under TensorFlow. A residual model (`d8k512x4`) is measured at each quality (stages kept),
its prior coding stage 0 and the later stages coded as `static` codes them.
Writes bench/results/prior_coding_photos.json (d8k512), else
bench/results/prior_coding_photos_MODEL.json.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/prior_coding.py --photos [--model d8k512] [--keras-peer]

Default (no `--photos`): MNIST code maps. Trains a small VQ-VAE on MNIST (`../shared/data/mnist`, 8,000 / 2,000 split
of the t10k digits, 28x28 -> 7x7 code maps), saves it as a training run
(`model.keras` + `config.json`), then trains three priors on its codes with
`vqvae_tf.training.prior_training.train_prior` (the library path of
`train.py --stage=prior`): an unconditional gated PixelCNN, an unconditional
Transformer and a class-conditional PixelCNN. On held-out test maps (the same
codes, hence identical reconstructions) it compares

- `packed`: `.vqz` method 0, `ceil(log2 K)` bits per code;
- `static`: `.vqz` method 1, ANS with the code frequencies of the training
  maps;
- `prior`:  ANS with each prior's conditional distributions
  (`prior_coding.encode_prior_payload`), one map per stream; the stream size
  is the real method-0 header + the 20 bytes of method-2 parameters + the
  payload + CRC (the stream of `.vqz` method 2, coded as one tile);

checks that every prior-coded map decodes exactly, reports each prior's test
NLL against the per-position unigram baseline, and writes a grid of
class-conditional samples.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/prior_coding.py [--steps 1000] [--prior-steps 1000]

Writes bench/results/prior_coding.json and
bench/results/mnist_conditional_samples.png.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from vqvae_tf.codec import bitstream
from vqvae_tf.codec.prior_coding import decode_codes, decode_prior_payload, encode_codes, encode_prior_payload  # noqa: E402
from vqvae_tf.data.datasets import make_datasets  # noqa: E402
from vqvae_tf.priors.loading import load_prior  # noqa: E402
from vqvae_tf.training.code_files import load_codes  # noqa: E402
from vqvae_tf.training.config import TrainConfig  # noqa: E402
from vqvae_tf.training.loop import build_model  # noqa: E402
from vqvae_tf.training.prior_config import PriorConfig  # noqa: E402
from vqvae_tf.training.prior_samples import sample_images  # noqa: E402
from vqvae_tf.training.prior_training import train_prior  # noqa: E402
from vqvae_tf.utils import atomic  # noqa: E402
from vqvae_tf.utils.atomic import save_model  # noqa: E402
from vqvae_tf.utils.image_grid import save_image_grid  # noqa: E402

MNIST = REPO.parent / "shared" / "data" / "mnist"
RESULTS = REPO / "bench" / "results"


def train_vqvae(workdir, args):
    config = TrainConfig(
        dataset=f"mnist:{MNIST}",
        image_size=28,
        batch_size=64,
        num_codes=args.num_codes,
        code_dim=16,
        hidden_units=64,
        residual_units=32,
        num_residual_blocks=2,
        export=False,
        mixed_precision="none",
        lr_schedule="constant",
        learning_rate=1e-3,
        steps_per_epoch=args.steps,
        epochs=1,
    )
    bundle = make_datasets(config.dataset, image_size=28, batch_size=64)
    keras.utils.set_random_seed(0)
    model = build_model(config, bundle.channels, bundle.data_variance)
    model.fit(bundle.train, steps_per_epoch=args.steps, epochs=1, verbose=0)
    save_model(model, workdir / "model.keras")
    config.save(workdir / "config.json")


def stream_sizes(prior, codes, labels, num_codes, probabilities, check_every):
    """Per-map stream and payload bytes of the three methods; checks prior decoding."""
    sizes = {m: {"stream": [], "payload": []} for m in ("packed", "static", "prior")}
    model_id = bytes(16)
    for index, code_map in enumerate(codes):
        label = None if labels is None else int(labels[index])
        packed = bitstream.encode_stream(
            code_map, num_codes=num_codes, model_id=model_id, image_shape=(28, 28, 1), method="packed"
        )
        static = bitstream.encode_stream(
            code_map,
            num_codes=num_codes,
            model_id=model_id,
            image_shape=(28, 28, 1),
            method="static",
            code_probabilities=probabilities,
        )
        header_and_crc = len(packed) - -(-code_map.size * math.ceil(math.log2(num_codes)) // 8)
        params, payload = encode_prior_payload(prior, code_map, label)
        if index % check_every == 0:
            decoded = decode_prior_payload(prior, params, payload, code_map.shape)
            assert np.array_equal(decoded, code_map), f"map {index} did not decode exactly"
        for method, stream, body in (
            ("packed", len(packed), len(packed) - header_and_crc),
            ("static", len(static), len(static) - header_and_crc - 8),
            ("prior", header_and_crc + len(params) + len(payload), len(payload)),
        ):
            sizes[method]["stream"].append(stream)
            sizes[method]["payload"].append(body)
    # All maps in one payload: the ANS state is paid once, so this is the
    # asymptotic cost of the model; decoded in one batched pass per position.
    batched = encode_codes(prior, codes, labels)
    assert np.array_equal(decode_codes(prior, batched, codes.shape, labels), codes), "batched decode failed"
    summary = {m: {k: float(np.mean(v)) for k, v in s.items()} for m, s in sizes.items()}
    summary["prior_batched_bytes_per_map"] = len(batched) / len(codes)
    return summary


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def photo_streams(args):
    """The codec's three methods on held-out photos with a shipped model and its shipped (TFLite) prior."""
    from PIL import Image

    from vqvae_tf import codec

    model = codec.load_model(args.model, num_threads=args.threads)
    _, load_seconds = _timed(model.prior)
    prior_info = json.loads(model.directory.joinpath("prior.json").read_text())
    files = sorted(p for p in Path(args.photo_dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    images = {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in files[: args.num_photos]}
    first = next(iter(images.values()))
    images["first_768x512"] = np.asarray(Image.fromarray(first).resize((768, 512), Image.BICUBIC))
    # One untimed call per method, so no row pays for creating interpreters.
    for method in codec.METHODS:
        codec.decompress_bytes(codec.compress_image(first[:64, :64], model, method), model)
    qualities = list(range(1, model.total_stages + 1)) if model.code_shape else [None]
    rows, summaries = {}, {}
    for quality in qualities:
        tag = "" if quality is None else f"@q{quality}"
        for name, image in images.items():
            rows[name + tag] = _photo_row(model, name + tag, image, quality, args.repeats)
        summaries[quality or "all"] = _summary(
            [rows[name + tag] for name in images if name != "first_768x512"], quality
        )
    big = rows["first_768x512" + ("" if qualities[-1] is None else f"@q{qualities[-1]}")]
    summary = summaries[qualities[-1] or "all"]
    # The peer: the same stream decoded with the Keras prior under TensorFlow (the previous default path).
    keras_seconds = None
    if args.keras_peer:
        data = codec.compress_image(images["first_768x512"], model, "prior", quality=qualities[-1])
        keras_prior = model.directory / "prior.keras"
        codec.decompress_bytes(data, model, prior=keras_prior)
        _, keras_seconds = _timed(lambda: codec.decompress_bytes(data, model, prior=keras_prior))
    print(
        f"768x512 decode ({'all stages' if qualities[-1] is None else f'quality {qualities[-1]}'}): prior (LiteRT) "
        f"{big['prior']['decode_seconds']:.3f} s, packed {big['packed']['decode_seconds']:.3f} s"
        + (
            f", prior with the Keras prior (TensorFlow) {keras_seconds:.3f} s = "
            f"{keras_seconds / big['prior']['decode_seconds']:.1f}x the LiteRT time"
            if keras_seconds
            else ""
        )
    )
    return {
        "model": model.name,
        "model_id": model.model_id,
        "prior": prior_info,
        "prior_load_seconds": load_seconds,
        "threads": args.threads,
        "photos": rows,
        "held_out": summary,
        "held_out_by_quality": summaries if model.code_shape else None,
        "keras_prior_decode_seconds_768x512": keras_seconds,
        "load_average": list(os.getloadavg()),
    }


def _photo_row(model, name, image, quality, repeats):
    """Bytes and times of each method on one photo at one quality; the decodes must agree."""
    from vqvae_tf import codec

    row = {"shape": list(image.shape), "quality": quality}
    decoded = {}
    for method in codec.METHODS:
        data, encode_seconds = _timed(lambda: codec.compress_image(image, model, method, quality=quality))
        # Best of `repeats` decodes: the machine is shared with other work.
        decode_seconds = math.inf
        for _ in range(repeats):
            decoded[method], seconds = _timed(lambda: codec.decompress_bytes(data, model))
            decode_seconds = min(decode_seconds, seconds)
        codes = int(np.prod(bitstream.read_header(data).code_shape))
        row[method] = {
            "bytes": len(data),
            "bits_per_pixel": 8 * len(data) / (image.shape[0] * image.shape[1]),
            "bits_per_code": 8 * len(data) / codes,
            "encode_seconds": encode_seconds,
            "decode_seconds": decode_seconds,
        }
    for method in ("static", "prior"):
        assert np.array_equal(decoded[method], decoded["packed"]), f"{name}: {method} decodes differently"
    row["prior_vs_packed"] = 1 - row["prior"]["bytes"] / row["packed"]["bytes"]
    row["prior_vs_static"] = 1 - row["prior"]["bytes"] / row["static"]["bytes"]
    row["static_vs_packed"] = 1 - row["static"]["bytes"] / row["packed"]["bytes"]
    print(
        f"{name:22s} {'x'.join(map(str, image.shape[:2])):>8s} "
        + " ".join(
            f"{m} {row[m]['bits_per_code']:5.2f} b/code "
            f"{row[m]['encode_seconds']:5.2f}/{row[m]['decode_seconds']:5.2f} s"
            for m in codec.METHODS
        )
        + f"  prior vs packed {100 * row['prior_vs_packed']:5.1f}%  vs static {100 * row['prior_vs_static']:5.1f}%",
        flush=True,
    )
    return row


def _summary(held_out, quality):
    """Whole-file totals of the held-out photos at one quality, printed."""
    from vqvae_tf import codec

    totals = {m: sum(r[m]["bytes"] for r in held_out) for m in codec.METHODS}
    pixels = sum(r["shape"][0] * r["shape"][1] for r in held_out)
    summary = {
        "bytes": totals,
        "bits_per_pixel": {m: 8 * totals[m] / pixels for m in codec.METHODS},
        "prior_vs_packed": 1 - totals["prior"] / totals["packed"],
        "prior_vs_static": 1 - totals["prior"] / totals["static"],
        "static_vs_packed": 1 - totals["static"] / totals["packed"],
        "identical_reconstructions": True,
    }
    print(
        f"held-out total ({len(held_out)} photos{'' if quality is None else f', quality {quality}'}) "
        f"packed {totals['packed']} B, static {totals['static']} B, prior {totals['prior']} B: "
        f"prior {100 * summary['prior_vs_packed']:.1f}% smaller than packed, "
        f"{100 * summary['prior_vs_static']:.1f}% smaller than static; bpp "
        + ", ".join(f"{m} {summary['bits_per_pixel'][m]:.4f}" for m in codec.METHODS),
        flush=True,
    )
    return summary


def _write_json(path, results):
    atomic.write_json(path, results)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", action="store_true", help="the image codec on the held-out photos")
    parser.add_argument("--model", default="d8k512", help="--photos: shipped codec model with a prior")
    parser.add_argument("--threads", type=int, default=2, help="--photos: TFLite interpreter threads")
    parser.add_argument("--photo-dir", default=str(REPO.parent / "shared" / "data" / "photos" / "valid"))
    parser.add_argument("--num-photos", type=int, default=4, help="--photos: the first n photos of --photo-dir")
    parser.add_argument("--repeats", type=int, default=3, help="--photos: decodes per stream, the best counts")
    parser.add_argument("--keras-peer", action="store_true", help="--photos: also time the TensorFlow prior path")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--steps", type=int, default=1000, help="VQ-VAE training steps")
    parser.add_argument("--prior-steps", type=int, default=1000)
    parser.add_argument("--num-codes", type=int, default=128)
    parser.add_argument("--num-test", type=int, default=200, help="held-out maps to code")
    parser.add_argument("--check-every", type=int, default=5, help="decode every n-th per-map stream")
    args = parser.parse_args()
    command = " ".join([Path(sys.executable).name] + sys.argv)
    if args.photos:
        name = (
            "prior_coding_photos.json"
            if args.model == "d8k512"
            else f"prior_coding_photos_{Path(args.model).name}.json"
        )
        _write_json(RESULTS / name, {"command": command} | photo_streams(args))
        return

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if not (workdir / "model.keras").exists():
            train_vqvae(workdir, args)
        priors = {
            "pixelcnn": PriorConfig(
                kind="pixelcnn", channels=64, num_layers=4, steps=args.prior_steps, learning_rate=1e-3
            ),
            "transformer": PriorConfig(
                kind="transformer", embed_dim=64, num_heads=4, num_layers=3, steps=args.prior_steps, learning_rate=1e-3
            ),
            "pixelcnn_conditional": PriorConfig(
                kind="pixelcnn",
                conditional=True,
                channels=64,
                num_layers=4,
                steps=args.prior_steps,
                learning_rate=1e-3,
                num_samples=10,
            ),
        }
        results = {"command": command, "settings": vars(args) | {"workdir": str(args.workdir)}, "priors": {}}
        for name, config in priors.items():
            metrics = train_prior(config, workdir, workdir / name)
            prior = load_prior(workdir / name / "prior.keras")
            train_codes, _ = load_codes(workdir / name / "codes_train.npz")
            test_codes, test_labels = load_codes(workdir / name / "codes_validation.npz")
            counts = np.bincount(train_codes.ravel(), minlength=args.num_codes)
            probabilities = bitstream.code_probabilities_from_counts(counts)
            labels = test_labels[: args.num_test] if config.conditional else None
            sizes = stream_sizes(
                prior, test_codes[: args.num_test], labels, args.num_codes, probabilities, args.check_every
            )
            results["priors"][name] = {
                "test_nll_bits_per_code": metrics["bits_per_code"],
                "unigram_bits_per_code": metrics["unigram_bits_per_code"],
                "nll_reduction_vs_unigram": metrics["nll_reduction_vs_unigram"],
                "vqvae_bound_bits_per_dim": metrics["bits_per_dim"],
                "sizes_bytes_per_map": sizes,
                "prior_vs_packed_payload": 1 - sizes["prior"]["payload"] / sizes["packed"]["payload"],
                "prior_vs_packed_stream": 1 - sizes["prior"]["stream"] / sizes["packed"]["stream"],
                "prior_vs_static_payload": 1 - sizes["prior"]["payload"] / sizes["static"]["payload"],
            }
            if config.conditional:
                vqvae = keras.models.load_model(workdir / "model.keras")
                images, rows = sample_images(vqvae, prior, 10, temperature=1.0, seed=0)
                RESULTS.mkdir(parents=True, exist_ok=True)
                save_image_grid(RESULTS / "mnist_conditional_samples.png", images, rows)
        results["seconds"] = time.perf_counter() - start

    bits = math.ceil(math.log2(args.num_codes))
    print(
        f"MNIST 7x7 code maps, K={args.num_codes} ({bits} bits/code packed), {args.num_test} held-out maps; "
        "bytes per map (payload / whole .vqz stream)"
    )
    print(
        f"{'prior':22s} {'NLL b/code':>10s} {'unigram':>8s} {'-%':>6s} {'packed':>13s} {'static':>13s} "
        f"{'prior':>13s} {'prior vs packed':>16s}"
    )
    for name, r in results["priors"].items():
        s = r["sizes_bytes_per_map"]
        cells = " ".join(f"{s[m]['payload']:5.1f} / {s[m]['stream']:5.1f}" for m in ("packed", "static", "prior"))
        print(
            f"{name:22s} {r['test_nll_bits_per_code']:10.3f} {r['unigram_bits_per_code']:8.3f} "
            f"{100 * r['nll_reduction_vs_unigram']:5.1f}% {cells} "
            f"{100 * r['prior_vs_packed_payload']:6.1f}% / {100 * r['prior_vs_packed_stream']:4.1f}%"
        )
    _write_json(RESULTS / "prior_coding.json", results)


if __name__ == "__main__":
    main()

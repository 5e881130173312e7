"""Images: discrete vs continuous latents at matched rates, on MNIST and natural photos (issue 15, item 1).

The VQ-VAE (EMA codebook, k-means init) + gated PixelCNN prior against the
`GaussianVAE`, with the same encoder, decoder and latent grid (image / 4) and
the same likelihood: the discretized Gaussian over 256 levels of
`vqvae_tf.models.gaussian_vae.discretized_gaussian_log_prob` (the VQ-VAE's
one scale fitted on training images by `fit_decoder_scale`). Domains:

- `mnist`: `mnist:../shared/data/mnist`, the 8,000 / 2,000 split of the t10k
  digits, 28x28 (7x7 latents);
- `photos`: random 32x32 crops of the 1,427 photos of
  `../shared/data/photos/train` (8x8 latents); reported on the 105 photos of
  `photos/valid`, which no model sees: 16 non-overlapping 32x32 tiles of
  each (1,680 tiles; rates, bits/dim, PSNR), and, for MS-SSIM, their 192x192
  centre crops through the same fully convolutional models (48x48 latents;
  five MS-SSIM scales need at least 176 pixels).

Figures, on held-out images, per seed (0, 1, 2) then mean and spread:

- rates in bits/dim: VQ-VAE, its codes' NLL under the prior; VAE, its KL;
- likelihood (bits/dim, beta = 1): VAE `-ELBO` (one posterior sample),
  VQ-VAE `-log p(x | z_q) - log p_prior(z_q)`;
- reconstruction at matched rate: the VAE's beta sweep is an RD curve (KL
  rate vs PSNR at the posterior mean); its PSNR (and MS-SSIM) at the VQ-VAE's
  rate is the linear interpolation between the two sweep points around that
  rate (flagged when outside the sweep);
- posterior collapse (seed 0): the VAE's KL and the VQ-VAE's code use
  (perplexity, share of codes used on held-out images) with the plain
  decoder, a wider one (`--wide-hidden`) and, on MNIST, an autoregressive
  one (`latent_image_models.PixelHead`); for both, the bits/dim the decoder
  loses when given another image's latents ("reliance");
- samples (seed 0): VQ-VAE from its prior, VAE from N(0, I), PNG grids.

    TF_CPP_MIN_LOG_LEVEL=2 nice -n 19 python bench/latent_images.py [--steps 50]   # a smoke run

Writes bench/results/latent_images.json (after each seed), the sample grids
and bench/results/latent_images_rd.png. Not a test.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import keras  # noqa: E402
import latent_image_models as lim  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from vqvae_tf.data.datasets import make_datasets  # noqa: E402
from vqvae_tf.data.folder_cache import centre_crops, decode_files  # noqa: E402
from vqvae_tf.data.folders import scan_image_folder  # noqa: E402
from vqvae_tf.data.image_arrays import tiles  # noqa: E402
from vqvae_tf.models.gaussian_vae import GaussianVAE  # noqa: E402
from vqvae_tf.models.vqvae import VQVAE  # noqa: E402
from vqvae_tf.priors.likelihood import nll_per_code, vqvae_bits_per_dim  # noqa: E402
from vqvae_tf.training.code_files import extract_codes  # noqa: E402
from vqvae_tf.training.decoder_likelihood import fit_decoder_scale, reconstruction_nats  # noqa: E402
from vqvae_tf.training.prior_config import PriorConfig  # noqa: E402
from vqvae_tf.training.prior_training import build_prior  # noqa: E402
from vqvae_tf.utils import atomic  # noqa: E402
from vqvae_tf.utils.image_grid import save_image_grid  # noqa: E402

DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
SIZES = {"mnist": 28, "photos": 32}


def held_out_tiles(directory, size, per_photo):
    """`per_photo` evenly spaced non-overlapping size x size tiles of each photo below `directory`, in [0, 1]."""
    images, _ = decode_files(scan_image_folder(directory)[0], 3, directory)
    out = []
    for image in images:
        grid = tiles(image, size)
        out.append(grid[np.linspace(0, len(grid) - 1, per_photo).round().astype(int)])
    return np.concatenate(out).astype(np.float32) / 255.0


def load_domain(name, seed, args):
    """`(bundle, held-out images, large held-out crops or None)`; the split never depends on the seed."""
    if name == "mnist":
        bundle = make_datasets(
            f"mnist:{DATA / 'mnist'}", image_size=28, batch_size=args.batch, seed=seed, augment=False
        )
        held = np.concatenate([np.asarray(b) for b in bundle.validation])
        return bundle, held, None
    train, valid = DATA / "photos" / "train", DATA / "photos" / "valid"
    bundle = make_datasets(
        f"folder:{train}", image_size=32, batch_size=args.batch, seed=seed, validation_spec=f"folder:{valid}"
    )
    big = centre_crops(scan_image_folder(valid)[0], 3, args.big_crop, str(valid))[0].astype(np.float32) / 255.0
    return bundle, held_out_tiles(valid, 32, args.tiles_per_photo), big


def architecture(args):
    return dict(downsample=4, hidden_units=args.hidden, residual_units=args.hidden // 2, num_residual_blocks=2)


def fit(model, bundle, args, steps=None):
    model.compile(optimizer=keras.optimizers.Adam(args.lr))
    model.fit(bundle.train, steps_per_epoch=steps or args.steps, epochs=1, verbose=0)
    return model


def make_vq(bundle, args, seed, num_codes, cls=VQVAE, **extra):
    keras.utils.set_random_seed(seed)
    return cls(
        input_channels=bundle.channels,
        num_codes=num_codes,
        code_dim=args.code_dim,
        quantizer="ema",
        quantizer_config={"kmeans_init": True, "seed": seed},
        data_variance=bundle.data_variance,
        **architecture(args),
        **extra,
    )


def make_vae(bundle, args, seed, beta, cls=GaussianVAE, **extra):
    keras.utils.set_random_seed(seed)
    return cls(
        input_channels=bundle.channels, latent_dim=args.latent_dim, seed=seed, beta=beta, **architecture(args), **extra
    )


def train_prior(vq, bundle, held, args, seed):
    """The PixelCNN prior on training codes: `(prior, held-out codes, held-out NLL nats/code)`."""
    with tempfile.TemporaryDirectory() as tmp:
        train_codes, _ = extract_codes(vq, bundle.train.take(args.code_batches), Path(tmp) / "train.npz")
        test_codes, _ = extract_codes(vq, lim.batches(held, args.batch), Path(tmp) / "test.npz")
    config = PriorConfig(
        kind="pixelcnn", channels=args.prior_channels, num_layers=args.prior_layers, learning_rate=args.prior_lr
    )
    keras.utils.set_random_seed(seed)
    prior = build_prior(config, vq.num_codes, train_codes.shape[1:])
    codes = tf.data.Dataset.from_tensor_slices(train_codes).shuffle(len(train_codes), seed=seed).repeat()
    prior.fit(codes.batch(args.batch, drop_remainder=True), steps_per_epoch=args.prior_steps, epochs=1, verbose=0)
    return prior, test_codes, nll_per_code(prior, test_codes)


def collapse_figures(model, held, args, scale=None):
    """Code use (VQ) or KL (VAE) and the decoder's reliance on the latents, on held-out images."""
    data = lim.batches(held, args.batch)
    dims = int(np.prod(held.shape[1:]))
    if isinstance(model, VQVAE):
        true, shuffled = (lim.vq_decoder_nats(model, data, s, scale) for s in (False, True))
        out = lim.code_usage(model, data) | {"num_codes": model.num_codes}
        out["reconstruction_bits_per_dim"] = float(np.mean(true)) / (dims * lim.LN2)
    else:
        true, shuffled = (lim.vae_decoder_nats(model, data, s) for s in (False, True))
        logs = model.evaluate(data, return_dict=True, verbose=0)
        out = {"kl_bits_per_dim": logs["kl"] / (dims * lim.LN2), "bits_per_dim": logs["bits_per_dim"]}
    out["reliance_bits_per_dim"] = lim.latent_reliance_bits(true, shuffled, dims)
    return out | {"parameters": int(model.count_params())}


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_vq(bundle, held, big, args, seed, num_codes):
    log(f"VQ-VAE K={num_codes} seed {seed}")
    start = time.perf_counter()
    vq = fit(make_vq(bundle, args, seed, num_codes), bundle, args)
    prior, _, nll = train_prior(vq, bundle, held, args, seed)
    scale = fit_decoder_scale(vq, bundle.train.take(8))
    rec_nats, dims, _ = reconstruction_nats(vq, lim.batches(held, args.batch), scale)
    prior_nats = nll * int(np.prod(vq.latent_shape(held.shape)[1:]))
    out = {
        "num_codes": num_codes,
        "rate_bits_per_dim": prior_nats / (dims * lim.LN2),
        "prior_bits_per_code": nll / lim.LN2,
        "bits_per_dim": vqvae_bits_per_dim(rec_nats, prior_nats, dims),
        "reconstruction_bits_per_dim": rec_nats / (dims * lim.LN2),
        "decoder_scale": scale,
        **lim.quality(vq, held, args.batch),
        **lim.code_usage(vq, lim.batches(held, args.batch)),
    }
    if big is not None:
        out["large_crops"] = lim.quality(vq, big, 8, ms_ssim=True)
    return vq, prior, scale, out | {"seconds": time.perf_counter() - start}


def run_vae(bundle, held, big, args, seed, beta):
    log(f"VAE beta={beta:g} seed {seed}")
    start = time.perf_counter()
    vae = fit(make_vae(bundle, args, seed, beta), bundle, args)
    logs = vae.evaluate(lim.batches(held, args.batch), return_dict=True, verbose=0)
    dims = int(np.prod(held.shape[1:]))
    out = {
        "beta": beta,
        "rate_bits_per_dim": logs["kl"] / (dims * lim.LN2),
        "bits_per_dim": logs["bits_per_dim"],
        "reconstruction_bits_per_dim": logs["reconstruction"] / (dims * lim.LN2),
        **lim.quality(vae, held, args.batch),
    }
    if big is not None:
        out["large_crops"] = lim.quality(vae, big, 8, ms_ssim=True)
    return vae, out | {"seconds": time.perf_counter() - start}


def matched(vq, vaes, key):
    """The VAE's `key` at the VQ-VAE's rate, from its beta sweep (see `interpolate_at`)."""

    def get(r):
        return r["large_crops"][key] if key == "ms_ssim" else r[key]

    value, outside = lim.interpolate_at(
        vq["rate_bits_per_dim"], [v["rate_bits_per_dim"] for v in vaes], [get(v) for v in vaes]
    )
    return {"vae": value, "vqvae": get(vq), "extrapolated": outside}


def save_samples(name, vq, prior, vae, args):
    # Photos: fewer samples, to keep the PNG a few tens of KB.
    n, rows = (args.samples, 3) if name == "mnist" else (args.samples // 2, 2)
    codes = prior.sample(n, seed=0)
    images = np.clip(np.asarray(vq.decode_codes(codes)), 0.0, 1.0)
    shape = (n,) + tuple(codes.shape[1:]) + (vae.latent_dim,)
    z = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    gaussian = np.clip(np.asarray(vae.decode(z)), 0.0, 1.0)
    paths = {}
    for model, batch in (("vqvae", images), ("vae", gaussian)):
        path = RESULTS / f"latent_images_{name}_{model}_samples.png"
        save_image_grid(path, batch, rows, scale=2)
        paths[model] = str(path.relative_to(REPO))
    return paths


def collapse(name, bundle, held, args, seed):
    """KL of the VAE and code use of the VQ-VAE (beta 1, K = args.num_codes) for each decoder."""
    out = {}
    decoders = {"wide": dict(hidden_units=args.wide_hidden, residual_units=args.wide_hidden // 2)}
    for decoder, widths in decoders.items():
        log(f"{decoder} decoders")
        start = time.perf_counter()
        vq, vae = make_vq(bundle, args, seed, args.num_codes), make_vae(bundle, args, seed, 1.0)
        for model in (vq, vae):
            lim.replace_decoder(model, bundle.channels, **widths)
            fit(model, bundle, args)
        scale = fit_decoder_scale(vq, bundle.train.take(8))
        out[decoder] = {"vqvae": collapse_figures(vq, held, args, scale), "vae": collapse_figures(vae, held, args)}
        out[decoder]["seconds"] = time.perf_counter() - start
        out[decoder]["decoder"] = f"hidden {args.wide_hidden}, residual {args.wide_hidden // 2} (encoder unchanged)"
    if name == "mnist":
        log("autoregressive decoders")
        start = time.perf_counter()
        head = dict(feature_channels=16, head_channels=args.head_channels, head_layers=args.head_layers)
        vq = fit(make_vq(bundle, args, seed, args.num_codes, lim.ARVQVAE, **head), bundle, args)
        vae = fit(make_vae(bundle, args, seed, 1.0, lim.ARGaussianVAE, **head), bundle, args)
        out["autoregressive"] = {"vqvae": collapse_figures(vq, held, args), "vae": collapse_figures(vae, held, args)}
        out["autoregressive"]["seconds"] = time.perf_counter() - start
        out["autoregressive"]["decoder"] = (
            f"plain decoder to 16 channels + PixelHead ({args.head_layers} masked 3x3 layers of "
            f"{args.head_channels} after a 7x7 type-A one)"
        )
    return out


def run_seed(name, seed, args, result):
    bundle, held, big = load_domain(name, seed, args)
    result["dataset"] = bundle.description
    result["held_out"] = f"{len(held)} images {held.shape[1]}x{held.shape[2]}" + (
        f"; MS-SSIM on {len(big)} centre crops {big.shape[1]}x{big.shape[2]}" if big is not None else ""
    )
    vq, prior, scale, vq_out = run_vq(bundle, held, big, args, seed, args.num_codes)
    vaes, models = [], {}
    # The extra betas (below 1) only on the first seed: they draw the RD curve beyond the matched rates.
    for beta in args.betas + (args.extra_betas if seed == args.seeds[0] else []):
        models[beta], out = run_vae(bundle, held, big, args, seed, beta)
        vaes.append(out)
    sweep = [v for v in vaes if v["beta"] in args.betas]  # the same betas on every seed
    entry = {"vqvae": vq_out, "vae": vaes, "matched_psnr": matched(vq_out, sweep, "psnr")}
    if big is not None:
        entry["matched_ms_ssim"] = matched(vq_out, sweep, "ms_ssim")
    plain = models.get(1.0)
    if seed == args.seeds[0] and not args.headline_only:
        if plain is not None:
            entry["samples"] = save_samples(name, vq, prior, plain, args)
            entry["collapse_plain"] = {
                "vqvae": collapse_figures(vq, held, args, scale),
                "vae": collapse_figures(plain, held, args),
            }
        entry["codebook_sizes"] = [run_vq(bundle, held, big, args, seed, k)[3] for k in args.extra_codebooks]
        entry["collapse"] = collapse(name, bundle, held, args, seed)
    result["seeds"][str(seed)] = entry


def summarise(result):
    seeds = list(result["seeds"].values())

    def stat(f):
        return lim.mean_spread([f(s) for s in seeds])

    def at_beta1(s):
        return next(v for v in s["vae"] if v["beta"] == 1.0)

    out = {
        "vqvae_bits_per_dim": stat(lambda s: s["vqvae"]["bits_per_dim"]),
        "vae_bits_per_dim": stat(lambda s: at_beta1(s)["bits_per_dim"]),
        "bits_per_dim_vae_minus_vqvae": stat(lambda s: at_beta1(s)["bits_per_dim"] - s["vqvae"]["bits_per_dim"]),
        "vqvae_rate_bits_per_dim": stat(lambda s: s["vqvae"]["rate_bits_per_dim"]),
        "vae_rate_bits_per_dim_beta1": stat(lambda s: at_beta1(s)["rate_bits_per_dim"]),
        "vqvae_psnr": stat(lambda s: s["matched_psnr"]["vqvae"]),
        "vae_psnr_at_vqvae_rate": stat(lambda s: s["matched_psnr"]["vae"]),
        "psnr_vqvae_minus_vae_at_matched_rate": stat(lambda s: s["matched_psnr"]["vqvae"] - s["matched_psnr"]["vae"]),
    }
    if "matched_ms_ssim" in seeds[0]:
        out["vqvae_ms_ssim"] = stat(lambda s: s["matched_ms_ssim"]["vqvae"])
        out["vae_ms_ssim_at_vqvae_rate"] = stat(lambda s: s["matched_ms_ssim"]["vae"])
    return out


def print_table(results):
    def ms(s, digits=3):
        return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"

    print(f"{'domain':8s} {'figure':38s} {'VQ-VAE':>16s} {'VAE':>16s} {'VQ - VAE':>16s}")
    for name, r in results.items():
        s = r["summary"]
        rows = [
            ("bits/dim (beta 1)", s["vqvae_bits_per_dim"], s["vae_bits_per_dim"]),
            ("rate bits/dim (beta 1 for VAE)", s["vqvae_rate_bits_per_dim"], s["vae_rate_bits_per_dim_beta1"]),
            ("PSNR dB at the VQ-VAE's rate", s["vqvae_psnr"], s["vae_psnr_at_vqvae_rate"]),
        ]
        for label, q, v in rows:
            print(f"{name:8s} {label:38s} {ms(q):>16s} {ms(v):>16s} {q['mean'] - v['mean']:>+16.3f}")
        if "vqvae_ms_ssim" in s:
            q, v = s["vqvae_ms_ssim"], s["vae_ms_ssim_at_vqvae_rate"]
            label = "MS-SSIM at the VQ-VAE's rate"
            print(f"{name:8s} {label:38s} {ms(q, 4):>16s} {ms(v, 4):>16s} {q['mean'] - v['mean']:>+16.4f}")
        first = next(iter(r["seeds"].values()))
        for decoder, figures in [("plain", first.get("collapse_plain"))] + list(first.get("collapse", {}).items()):
            if figures:
                q, v = figures["vqvae"], figures["vae"]
                print(
                    f"{name:8s} collapse, {decoder:12s} VAE KL {v['kl_bits_per_dim']:.4f} bits/dim, reliance "
                    f"{v['reliance_bits_per_dim']:.4f} | VQ perplexity {q['perplexity']:.1f} of {q['num_codes']}, "
                    f"{100 * q['fraction_used']:.0f}% used, reliance {q['reliance_bits_per_dim']:.4f}"
                )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", default="mnist,photos")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--betas", default="1,2,4", help="the VAE's beta sweep on every seed (must hold 1)")
    parser.add_argument("--extra-betas", default="0.5", help="more betas on the first seed only (RD curve)")
    parser.add_argument("--extra-codebooks", default="32,512", help="VQ RD points at seed 0 (empty: none)")
    parser.add_argument("--steps", type=int, default=500, help="training steps of every autoencoder")
    parser.add_argument("--prior-steps", type=int, default=800)
    parser.add_argument("--code-batches", type=int, default=250, help="training batches whose codes fit the prior")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--wide-hidden", type=int, default=256, help="channels of the wider decoder")
    parser.add_argument("--head-channels", type=int, default=32)
    parser.add_argument("--head-layers", type=int, default=4)
    parser.add_argument("--num-codes", type=int, default=128)
    parser.add_argument("--code-dim", type=int, default=16)
    parser.add_argument("--latent-dim", type=int, default=4, help="VAE latent channels per grid position")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--prior-channels", type=int, default=64)
    parser.add_argument("--prior-layers", type=int, default=4)
    parser.add_argument("--prior-lr", type=float, default=1e-3)
    parser.add_argument("--tiles-per-photo", type=int, default=16)
    parser.add_argument("--big-crop", type=int, default=192, help="side of the held-out crops for MS-SSIM")
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--json", type=Path, default=RESULTS / "latent_images.json")
    parser.add_argument(
        "--headline-only", action="store_true", help="only the per-seed figures: no samples, extras or plot"
    )
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.betas = [float(b) for b in args.betas.split(",")]
    args.extra_betas = [float(b) for b in args.extra_betas.split(",") if b]
    args.extra_codebooks = [int(k) for k in args.extra_codebooks.split(",") if k]
    if 1.0 not in args.betas:
        parser.error(f"--betas must include 1 (the likelihood figure); received {args.betas}")

    start = time.perf_counter()
    results = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "settings": vars(args) | {"json": str(args.json)},
        "likelihood": "discretized Gaussian over 256 levels, the same for both models",
        "matched_rate": "VAE figure at the VQ-VAE's prior rate, linear between the two beta-sweep points around it",
        "paper_cifar10_bits_per_dim": {"vae": 4.51, "vqvae": 4.67, "vimco": 5.14},
        "results": {},
    }
    for name in args.domains.split(","):
        result = results["results"][name] = {"seeds": {}}
        for seed in args.seeds:
            run_seed(name, seed, args, result)
            result["summary"] = summarise(result)
            results["wall_seconds"] = time.perf_counter() - start
            atomic.write_json(args.json, results)
            print(f"{name} seed {seed} done at {results['wall_seconds']:.0f} s", flush=True)
    panels = {}
    for name, r in results["results"].items() if not args.headline_only else ():
        first = next(iter(r["seeds"].values()))
        vae = [(v["rate_bits_per_dim"], v["psnr"], f"b={v['beta']:g}") for v in first["vae"]]
        vq = [
            (q["rate_bits_per_dim"], q["psnr"], f"K={q['num_codes']}")
            for q in [first["vqvae"]] + first.get("codebook_sizes", [])
        ]
        panels[name] = {"vae": vae, "vq": vq}
    if panels:
        lim.draw_rd_plot(panels, RESULTS / "latent_images_rd.png")
    print_table(results["results"])
    print(f"wrote {args.json} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

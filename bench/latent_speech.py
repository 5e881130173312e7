"""Discrete vs continuous latents on speech at matched rates: VQ-VAE + Transformer prior against a Gaussian VAE.

The speech form of `bench/latent_images.py` (van den Oord et al. 2017, sec. 4.1
and 4.3), on LJ Speech at 16 kHz (`../shared/data/speech/ljspeech16k`):
trained on random `--crop`-sample crops of its 85 training clips, reported
on the 21 held-out clips of `vqvae_tf/data/splits/ljspeech16k_validation.txt`
only. Both models are the 1-D speech network (`strides=(2, 4, 5, 8)`: one
latent vector per 320 samples, 50 frames/s), with the same encoder, decoder
and latent grid:

* VQ-VAE: one VQ stage (EMA codebook, k-means start, `--num-codes` codes of
  `--latent-dim`), squared-error loss; its prior a small `TransformerPrior`
  over `--segment`-sample segments (1-row maps of frames), trained on codes
  of random training segments;
* Gaussian VAE (`GaussianVAE(rank=1, strides=...)`): `--latent-dim` Gaussian
  latents per frame, prior N(0, I), likelihood scale starting at the
  signal's RMS (`bench/speech_probes.py` says why), trained on
  `reconstruction + beta * KL` (`GaussianVAE(beta=...)`; beta = 1
  is the ELBO).

Likelihood, the same for both: a discretized Gaussian over the 65,536 bins
of 16-bit PCM in [-1, 1) (`vqvae_tf.models.gaussian_vae.PCM16_LEVELS`), so
bits/dim is bits per sample, out of 16; the VAE learns its scale, the
VQ-VAE's single scale is fitted on training crops
(`vqvae_tf.training.decoder_likelihood.fit_decoder_scale`). On the held-out
clips cut into whole segments:

* VAE bits/dim = -ELBO / (samples ln 2), one posterior sample (a bound);
* VQ-VAE bits/dim = (-log p(x | z_q) - log p_prior(z_q)) / (samples ln 2);
* rates in bits per second: VQ = its prior NLL (bits/code * 50), VAE = its
  KL; the beta sweep (`--betas`, seed 0) draws the VAE's RD curve, read at
  the VQ-VAE's rate by interpolating linearly in log rate;
* quality of reconstructions of the whole held-out clips (VQ from its codes,
  VAE at the posterior mean): SI-SNR, wide-band PESQ, STOI and a log-mel
  distance (`_speech_latents.mel_distance`);
* posterior collapse: the same pair with a `--wide`-times wider decoder: the
  VAE's KL against the VQ-VAE's held-out code perplexity and codebook use;
* samples: `--samples` segments from the VQ prior (decoded) and from the
  VAE's N(0, I) prior, as 16 kHz WAVs in `--wav-dir`.

Seeds `--seeds` repeat the beta = 1 pair and the prior (headline figures as
mean and spread); the sweep and the wide pair run at the first seed.
`--extend-sweep BETAS` trains only the VAEs of new betas and adds them to the
sweep of the run in `--out` (its model settings checked), with one second
from each one's N(0, I) prior when its posterior did not collapse.

    nice -n 19 python bench/latent_speech.py                                   # the full run (wall time in JSON)
    nice -n 19 python bench/latent_speech.py --extend-sweep 0.02               # one more sweep point
    nice -n 19 python bench/latent_speech.py --steps 30 --prior-steps 30 --seeds 0 --betas 1,0.1 \\
        --out /tmp/ls.json --wav-dir /tmp/ls_wavs                              # a smoke test

Writes bench/results/latent_speech.json (after every model, so a cut run keeps what it measured).
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _speech_latents import (  # noqa: E402
    LN2,
    at_rate,
    clip_quality,
    code_usage,
    mean_spread,
    print_table,
    reconstructor,
    widen_decoder,
)

from vqvae_tf.data.datasets import make_datasets  # noqa: E402
from vqvae_tf.data.wav import write_wav  # noqa: E402
from vqvae_tf.models.gaussian_vae import GaussianVAE  # noqa: E402
from vqvae_tf.models.vqvae import VQVAE  # noqa: E402
from vqvae_tf.priors.likelihood import nll_per_code, vqvae_bits_per_dim  # noqa: E402
from vqvae_tf.training.code_files import code_dataset, extract_codes  # noqa: E402
from vqvae_tf.training.decoder_likelihood import fit_decoder_scale, reconstruction_nats  # noqa: E402
from vqvae_tf.training.prior_config import PriorConfig  # noqa: E402
from vqvae_tf.training.prior_samples import sample_images  # noqa: E402
from vqvae_tf.training.prior_training import build_prior  # noqa: E402
from vqvae_tf.training.speech_prior import frame_unigram_nats, validation_segments  # noqa: E402
from vqvae_tf.utils import atomic  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "speech" / "ljspeech16k"
SPLIT = ROOT / "vqvae_tf" / "data" / "splits" / "ljspeech16k_validation.txt"
RATE = 16000
STRIDES = (2, 4, 5, 8)
HOP = math.prod(STRIDES)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--steps", type=int, default=500, help="training steps of every VQ-VAE and VAE")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=4800, help="training crop in samples (a multiple of 320)")
    parser.add_argument("--segment", type=int, default=32000, help="prior and held-out segment in samples")
    parser.add_argument("--hidden", type=int, default=8, help="first-stage channels (doubled per stride)")
    parser.add_argument("--blocks", type=int, default=1, help="residual units per stage")
    parser.add_argument("--wide", type=int, default=2, help="decoder width factor of the collapse pair")
    parser.add_argument("--num-codes", type=int, default=256)
    parser.add_argument("--latent-dim", type=int, default=16, help="VQ code size and VAE latents per frame")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--betas", default="1,0.3,0.1,0.07,0.06,0.05,0.03,0.01", help="KL weights of the VAE sweep (seed 0)"
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--prior-steps", type=int, default=800)
    parser.add_argument("--prior-batches", type=int, default=48, help="batches of training segments for the prior")
    parser.add_argument("--prior-dim", type=int, default=64, help="Transformer width (2 heads)")
    parser.add_argument("--prior-layers", type=int, default=2)
    parser.add_argument("--prior-lr", type=float, default=1e-3)
    parser.add_argument("--samples", type=int, default=2, help="WAVs per model from its prior")
    parser.add_argument("--wav-dir", type=Path, default=ROOT / "docs" / "discrete_vs_continuous")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latent_speech.json")
    parser.add_argument(
        "--extend-sweep", default=None, help="only train VAEs at these betas and add them to --out's sweep"
    )
    parser.add_argument(
        "--sweep-seed", type=int, default=None, help="seed of --extend-sweep (default: the run's first)"
    )
    return parser.parse_args(argv)


def load(args):
    """`(crop bundle, segment bundle)`: the same split; training crops of `--crop` and of `--segment` samples."""
    common = dict(batch_size=args.batch, sample_rate=RATE, validation_list=SPLIT)
    crops = make_datasets(f"audio:{args.data}", seed=0, crop_length=args.crop, **common)
    segments = make_datasets(f"audio:{args.data}", seed=1, crop_length=args.segment, **common)
    return crops, segments


def held_out_clips(bundle):
    return [clip.numpy()[0, :, 0] for clip in bundle.validation]


def network(args, bundle):
    """The encoder, decoder and latent grid both kinds of model share (the comparison's premise)."""
    return dict(
        input_channels=1,
        rank=1,
        strides=STRIDES,
        hidden_units=args.hidden,
        num_residual_blocks=args.blocks,
        data_variance=bundle.data_variance,
        sample_rate=RATE,
    )


def make_vqvae(args, bundle, seed, wide=1):
    keras.utils.set_random_seed(seed)
    model = VQVAE(
        num_codes=args.num_codes,
        code_dim=args.latent_dim,
        quantizer="ema",
        quantizer_config={"kmeans_init": True, "dead_code_threshold": 0.2, "seed": seed},
        **network(args, bundle),
    )
    return widen_decoder(model, wide) if wide > 1 else model


def make_vae(args, bundle, seed, beta, wide=1):
    keras.utils.set_random_seed(seed)
    model = GaussianVAE(
        beta=beta,
        latent_dim=args.latent_dim,
        # At the signal's RMS: the default 0.1 is louder than speech and collapses the posterior at once.
        initial_scale=min(math.sqrt(bundle.data_variance), 0.5),
        seed=seed,
        **network(args, bundle),
    )
    return widen_decoder(model, wide) if wide > 1 else model


def train(model, bundle, args):
    start = time.perf_counter()
    model.compile(optimizer=keras.optimizers.Adam(args.lr))
    model.fit(bundle.train, steps_per_epoch=args.steps, epochs=1, verbose=0)
    return time.perf_counter() - start


def evaluate_vqvae(model, bundle, segments, clips, args, seed, with_prior=True):
    """Held-out bits/dim, rates, code usage and quality of a trained VQ-VAE (and its prior, trained here)."""
    test = validation_segments(segments.validation, args.segment)
    frames = args.segment // HOP
    with tempfile.TemporaryDirectory() as tmp:
        test_codes, _ = extract_codes(model, test, Path(tmp) / "test.npz")
        train_codes = None
        if with_prior:
            train_codes, _ = extract_codes(model, segments.train.take(args.prior_batches), Path(tmp) / "train.npz")
    row = {"held_out_segments": len(test_codes), "codes": code_usage(test_codes, args.num_codes)}
    row["packed_bits_per_second"] = RATE / HOP * math.log2(args.num_codes)
    scale = fit_decoder_scale(model, bundle.train.take(8))
    rec_nats, dims, mse = reconstruction_nats(model, test, scale)
    row.update(decoder_scale=scale, reconstruction_bits_per_dim=rec_nats / (dims * LN2), mse=mse)
    row["quality"] = clip_quality(clips, reconstructor(model), HOP, RATE)
    if not with_prior:
        return row, None
    start = time.perf_counter()
    config = PriorConfig(
        kind="transformer",
        embed_dim=args.prior_dim,
        num_heads=2,
        num_layers=args.prior_layers,
        dropout=0.1,
        learning_rate=args.prior_lr,
        seed=seed,
    )
    keras.utils.set_random_seed(seed)
    maps = {"train": train_codes[:, None], "test": test_codes[:, None]}
    prior = build_prior(config, args.num_codes, (1, frames))
    prior.fit(code_dataset(maps["train"], None, 32, seed, True), steps_per_epoch=args.prior_steps, verbose=0)
    nll = nll_per_code(prior, maps["test"])
    unigram = float(frame_unigram_nats(maps["train"], maps["test"], args.num_codes, 1)[0])
    row["prior"] = {
        "bits_per_code": nll / LN2,
        "unigram_bits_per_code": unigram / LN2,
        "train_segments": len(train_codes),
        "seconds": time.perf_counter() - start,
    }
    row["rate_bits_per_second"] = nll / LN2 * RATE / HOP
    row["prior_bits_per_dim"] = nll * frames / (args.segment * LN2)
    row["bits_per_dim"] = vqvae_bits_per_dim(rec_nats, nll * frames, dims)
    return row, prior


def evaluate_vae(model, segments, clips, args):
    """Held-out -ELBO in bits/dim, KL rate and quality of a trained VAE."""
    test = validation_segments(segments.validation, args.segment)
    totals, count = {"reconstruction": 0.0, "kl": 0.0}, 0
    for batch in test:
        terms = model.elbo_terms(batch, sample=True)
        for key in totals:
            totals[key] += float(tf.reduce_sum(terms[key]))
        count += int(batch.shape[0])
    samples, seconds = count * args.segment, count * args.segment / RATE
    return {
        "held_out_segments": count,
        "bits_per_dim": (totals["reconstruction"] + totals["kl"]) / (samples * LN2),
        "reconstruction_bits_per_dim": totals["reconstruction"] / (samples * LN2),
        "kl_bits_per_dim": totals["kl"] / (samples * LN2),
        "rate_bits_per_second": totals["kl"] / LN2 / seconds,
        "likelihood_scale": float(model.likelihood_scale()[0]),
        "quality": clip_quality(clips, reconstructor(model), HOP, RATE),
    }


def vae_samples(vae, count, frames, args, seed):
    """`count` clips of `frames` frames decoded from the VAE's N(0, I) prior."""
    latents = keras.random.normal((count, frames, args.latent_dim), seed=seed)
    return np.clip(np.asarray(vae.decode(latents)), -1.0, 1.0)


def write_samples(vqvae, prior, vae, args, seed):
    """`--samples` WAVs from each model's prior: the VQ prior's codes decoded, and the VAE's N(0, I) latents."""
    clips, _ = sample_images(vqvae, prior, args.samples, seed=seed)
    decoded = vae_samples(vae, args.samples, args.segment // HOP, args, seed)
    return _write(args, (("vqvae_prior_sample", clips), ("vae_prior_sample", decoded)))


def _write(args, named_batches):
    paths = []
    for name, batch in named_batches:
        for k, clip in enumerate(np.asarray(batch, np.float32)):
            path = args.wav_dir / f"{name}_{k}.wav"
            write_wav(path, clip, RATE)
            paths.append(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path))
    return paths


def summarise(results, seeds):
    """Headline means and spreads over seeds, and the VAE's sweep read at the VQ-VAE's rate."""
    runs = [results["seeds"][str(s)] for s in seeds if str(s) in results["seeds"]]
    runs = [r for r in runs if "vqvae" in r and "vae" in r]
    if not runs:
        return
    headline = {}
    for model in ("vqvae", "vae"):
        figures = {
            key: mean_spread([r[model][key] for r in runs])
            for key in ("bits_per_dim", "rate_bits_per_second", "reconstruction_bits_per_dim")
        }
        for key in ("si_snr", "pesq", "stoi", "mel_distance"):
            figures[key] = mean_spread([r[model]["quality"][key] for r in runs])
        headline[model] = figures
    results["headline"] = headline
    sweep = results.get("vae_rd_curve", [])
    if len(sweep) >= 2:
        rate = headline["vqvae"]["rate_bits_per_second"]["mean"]
        rates = [p["rate_bits_per_second"] for p in sweep]
        matched = {"vq_rate_bits_per_second": rate, "method": "linear in log rate between sweep points (seed 0)"}
        for key in ("si_snr", "pesq", "stoi", "mel_distance"):
            matched[f"vae_{key}"] = at_rate(rates, [p["quality"][key] for p in sweep], rate)
            matched[f"vqvae_{key}"] = headline["vqvae"][key]["mean"]
        # The sweep points the reading lies between: far apart, the curve jumps there (a collapse threshold).
        below = [p for p in sweep if p["rate_bits_per_second"] <= rate]
        above = [p for p in sweep if p["rate_bits_per_second"] > rate]
        matched["between"] = [
            {"beta": p["beta"], "rate_bits_per_second": p["rate_bits_per_second"]}
            for p in (
                max(below, key=lambda p: p["rate_bits_per_second"], default=None),
                min(above, key=lambda p: p["rate_bits_per_second"], default=None),
            )
            if p is not None
        ]
        results["matched_rate"] = matched


# Settings that define the models and data: an extension of a sweep must match the run it extends.
MODEL_SETTINGS = ("data", "steps", "batch", "crop", "segment", "hidden", "blocks", "latent_dim", "lr")


def extend_sweep(args):
    """Adds VAEs at `--extend-sweep` betas to the sweep of the run in `--out`.

    At the run's first seed they join its RD curve (`vae_rd_curve`); at another `--sweep-seed` they go to
    `vae_sweep_other_seeds`, a check of the curve's seed 0 points that the matched-rate reading does not use.
    """
    start = time.perf_counter()
    results = json.loads(args.out.read_text())
    saved = results["settings"]
    mismatched = [f"{k}: {saved[k]} vs {getattr(args, k)}" for k in MODEL_SETTINGS if saved[k] != str(getattr(args, k))]
    if mismatched:
        raise SystemExit(f"--extend-sweep needs the settings of {args.out}'s run; these differ: {mismatched}")
    seeds = [int(s) for s in saved["seeds"].split(",")]
    seed = seeds[0] if args.sweep_seed is None else args.sweep_seed
    key = "vae_rd_curve" if seed == seeds[0] else "vae_sweep_other_seeds"
    crops, segments = load(args)
    clips = held_out_clips(crops)
    done = {p["beta"] for p in results.get(key, []) if p.get("seed", seeds[0]) == seed}
    new = [beta for beta in (float(b) for b in args.extend_sweep.split(",")) if beta not in done]
    if new:
        results["extension_commands"] = results.get("extension_commands", []) + [" ".join(["python"] + sys.argv)]
    for beta in new:
        vae = make_vae(args, crops, seed, beta=beta)
        name = f"vae_beta{beta:g}" + ("" if seed == seeds[0] else f"_seed{seed}")
        results["timings_seconds"][name] = train(vae, crops, args)
        point = evaluate_vae(vae, segments, clips, args) | {"beta": beta, "seed": seed}
        results[key] = sorted(results.get(key, []) + [point], key=lambda p: (p.get("seed", seeds[0]), -p["beta"]))
        if seed == seeds[0] and point["rate_bits_per_second"] > 10.0 and args.samples:
            # One second from the prior of a VAE whose posterior did not collapse (beta = 1's is silence).
            decoded = vae_samples(vae, 1, RATE // HOP, args, seed)
            results["samples"] += _write(args, ((f"vae_beta{beta:g}_prior_sample", decoded),))
        results["timings_seconds"]["extension_total"] = (
            results["timings_seconds"].get("extension_total", 0.0) + time.perf_counter() - start
        )
        start = time.perf_counter()
        summarise(results, seeds)
        atomic.write_json(args.out, results)
    # Betas already measured only refresh the summary (e.g. after a change to `summarise`).
    summarise(results, seeds)
    atomic.write_json(args.out, results)
    print_table(results)


def main(argv=None):
    args = parse_args(argv)
    if args.extend_sweep:
        return extend_sweep(args)
    start = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    betas = [float(b) for b in args.betas.split(",")]
    crops, segments = load(args)
    clips = held_out_clips(crops)
    results = {
        "command": " ".join(["python"] + sys.argv),
        "settings": {k: str(v) for k, v in vars(args).items()},
        "data": crops.description,
        "held_out_clips": len(clips),
        "held_out_seconds": sum(len(c) for c in clips) / RATE,
        "frames_per_second": RATE / HOP,
        "network": f"speech network, strides {list(STRIDES)}, hidden {args.hidden}, {args.blocks} unit(s)/stage",
        "likelihood": "discretized Gaussian over the 65,536 bins of 16-bit PCM in [-1, 1), the same for both",
        "vae_form": f"1-D GaussianVAE(rank=1): {args.latent_dim} Gaussian latents per frame, prior N(0, I)",
        "seeds": {},
        "vae_rd_curve": [],
        "timings_seconds": {},
    }

    def save():
        results["timings_seconds"]["total"] = time.perf_counter() - start
        results["load_average_at_save"] = list(os.getloadavg())
        summarise(results, seeds)
        atomic.write_json(args.out, results)

    for seed in seeds:
        row = results["seeds"].setdefault(str(seed), {})
        vqvae = make_vqvae(args, crops, seed)
        results["timings_seconds"][f"vqvae_seed{seed}"] = train(vqvae, crops, args)
        row["vqvae"], prior = evaluate_vqvae(vqvae, crops, segments, clips, args, seed)
        save()
        vae = make_vae(args, crops, seed, beta=1.0)
        results["timings_seconds"][f"vae_seed{seed}"] = train(vae, crops, args)
        row["vae"] = evaluate_vae(vae, segments, clips, args) | {"beta": 1.0}
        if seed == seeds[0]:
            results["samples"] = write_samples(vqvae, prior, vae, args, seed)
            results["vae_rd_curve"].append(row["vae"])
            save()
            for beta in (b for b in betas if b != 1.0):
                vae = make_vae(args, crops, seed, beta=beta)
                results["timings_seconds"][f"vae_beta{beta:g}"] = train(vae, crops, args)
                results["vae_rd_curve"].append(evaluate_vae(vae, segments, clips, args) | {"beta": beta})
                save()
            wide = {"decoder_width_factor": args.wide, "base": {}, "wide": {}}
            for name, width in (("base", 1), ("wide", args.wide)):
                if width == 1:
                    vq_row, vae_row = row["vqvae"], row["vae"]
                else:
                    vq = make_vqvae(args, crops, seed, wide=width)
                    results["timings_seconds"]["vqvae_wide"] = train(vq, crops, args)
                    vq_row, _ = evaluate_vqvae(vq, crops, segments, clips, args, seed, with_prior=False)
                    va = make_vae(args, crops, seed, beta=1.0, wide=width)
                    results["timings_seconds"]["vae_wide"] = train(va, crops, args)
                    vae_row = evaluate_vae(va, segments, clips, args)
                wide[name] = {
                    "vae_kl_bits_per_second": vae_row["rate_bits_per_second"],
                    "vae_si_snr": vae_row["quality"]["si_snr"],
                    "vqvae_perplexity": vq_row["codes"]["perplexity"],
                    "vqvae_fraction_used": vq_row["codes"]["fraction_used"],
                    "vqvae_si_snr": vq_row["quality"]["si_snr"],
                }
            results["collapse"] = wide
        save()
    save()
    print_table(results)
    print(f"wrote {args.out} in {results['timings_seconds']['total']:.0f} s")


if __name__ == "__main__":
    main()

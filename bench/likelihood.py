"""Bits/dim of a Gaussian VAE against the VQ-VAE + prior bound, and reconstructions.

The comparison of van den Oord et al. 2017, sec. 4.1 (CIFAR-10: VAE 4.51,
VQ-VAE 4.67, VIMCO 5.14 bits/dim), at toy scale on this machine: small models
and few steps, on MNIST (`mnist:../shared/data/mnist`, 8,000 / 2,000 split of
the t10k digits, 28x28) and the embedded `photos` (32x32 crops, held-out
photo tiles).

Both models share the encoder/decoder architecture, the latent grid
(`image / downsample`) and the likelihood: the discretized Gaussian over 256
levels of `vqvae_tf.models.gaussian_vae.discretized_gaussian_log_prob` (the VAE
learns a per-channel scale; the VQ-VAE's single scale is fitted on training
images by `prior_training.fit_decoder_scale`). Reported on held-out images:

- VAE: `-ELBO / (H W C ln 2)` with one posterior sample per image (an
  unbiased estimate of the bound);
- VQ-VAE: `(-log p(x | z_q) - log p_prior(z_q)) / (H W C ln 2)` with a gated
  PixelCNN prior (`prior.vqvae_bits_per_dim`);
- MSE and PSNR of the reconstructions clipped to [0, 1] (VAE: decoder at the
  posterior mean). Clipping matters for the VAE: the open edge bins of the
  likelihood let its decoder mean run far below 0 on MNIST's black
  background, which costs nothing in likelihood but everything in raw MSE.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/likelihood.py [--datasets mnist,photos] [--steps 1500]

Writes bench/results/likelihood.json. Not a test: about 10-20 minutes.
"""

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from vqvae_tf.data.datasets import make_datasets  # noqa: E402
from vqvae_tf.models.gaussian_vae import GaussianVAE  # noqa: E402
from vqvae_tf.models.vqvae import VQVAE  # noqa: E402
from vqvae_tf.priors.likelihood import nll_per_code, vqvae_bits_per_dim  # noqa: E402
from vqvae_tf.training.code_files import extract_codes  # noqa: E402
from vqvae_tf.training.decoder_likelihood import fit_decoder_scale, reconstruction_nats  # noqa: E402
from vqvae_tf.training.prior_config import PriorConfig  # noqa: E402
from vqvae_tf.training.prior_training import build_prior  # noqa: E402
from vqvae_tf.utils import atomic  # noqa: E402

DATASETS = {
    "mnist": (f"mnist:{REPO.parent / 'shared' / 'data' / 'mnist'}", 28),
    "photos": ("photos", 32),
}


def psnr(mse):
    return 10.0 * math.log10(1.0 / mse)


def vae_reconstruction_mse(vae, validation):
    squared, count = 0.0, 0
    for batch in validation:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        squared += float(np.sum((np.asarray(images) - vae.predict_on_batch(images)) ** 2))
        count += int(np.prod(images.shape))
    return squared / count


def run(name, args):
    spec, size = DATASETS[name]
    # augment=False: the recorded results predate augmentation; the bench compares models, not data.
    bundle = make_datasets(spec, image_size=size, batch_size=args.batch, seed=0, augment=False)
    arch = dict(downsample=4, hidden_units=args.hidden, residual_units=args.hidden // 2, num_residual_blocks=2)
    result = {
        "dataset": bundle.description,
        "image_size": size,
        "channels": bundle.channels,
        "latent_grid": [size // 4, size // 4],
    }

    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    vqvae = VQVAE(
        input_channels=bundle.channels,
        num_codes=args.num_codes,
        code_dim=args.code_dim,
        quantizer="ema",
        quantizer_config={"kmeans_init": True, "seed": 0},
        data_variance=bundle.data_variance,
        **arch,
    )
    vqvae.compile(optimizer=keras.optimizers.Adam(args.lr))
    vqvae.fit(bundle.train, steps_per_epoch=args.steps, epochs=1, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        train_codes, _ = extract_codes(vqvae, bundle.train.take(args.code_batches), Path(tmp) / "train.npz")
        test_codes, _ = extract_codes(vqvae, bundle.validation, Path(tmp) / "test.npz")
    map_shape = train_codes.shape[1:]
    config = PriorConfig(
        kind="pixelcnn", channels=args.prior_channels, num_layers=args.prior_layers, learning_rate=args.prior_lr
    )
    prior = build_prior(config, args.num_codes, map_shape)
    codes_ds = (
        tf.data.Dataset.from_tensor_slices(train_codes)
        .shuffle(len(train_codes), seed=0)
        .repeat()
        .batch(args.batch, drop_remainder=True)
    )
    prior.fit(codes_ds, steps_per_epoch=args.prior_steps, epochs=1, verbose=0)
    nll = nll_per_code(prior, test_codes)
    scale = fit_decoder_scale(vqvae, bundle.train.take(8))
    rec_nats, dims, mse = reconstruction_nats(vqvae, bundle.validation, scale)
    codes_per_map = int(np.prod(map_shape))
    result["vqvae"] = {
        "bits_per_dim": vqvae_bits_per_dim(rec_nats, nll * codes_per_map, dims),
        "reconstruction_bits_per_dim": rec_nats / (dims * math.log(2)),
        "prior_bits_per_dim": nll * codes_per_map / (dims * math.log(2)),
        "prior_bits_per_code": nll / math.log(2),
        "uniform_prior_bits_per_code": math.log2(args.num_codes),
        "decoder_scale": scale,
        "mse": mse,
        "psnr": psnr(mse),
        "num_codes": args.num_codes,
        "seconds": time.perf_counter() - start,
    }

    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    vae = GaussianVAE(input_channels=bundle.channels, latent_dim=args.latent_dim, seed=0, **arch)
    vae.compile(optimizer=keras.optimizers.Adam(args.lr))
    vae.fit(bundle.train, steps_per_epoch=args.steps, epochs=1, verbose=0)
    logs = vae.evaluate(bundle.validation, return_dict=True, verbose=0)
    vae_mse = vae_reconstruction_mse(vae, bundle.validation)
    result["vae"] = {
        "bits_per_dim": logs["bits_per_dim"],
        "kl_bits_per_dim": logs["kl"] / (dims * math.log(2)),
        "reconstruction_bits_per_dim": logs["reconstruction"] / (dims * math.log(2)),
        "latent_dim": args.latent_dim,
        "mse": vae_mse,
        "psnr": psnr(vae_mse),
        "seconds": time.perf_counter() - start,
    }
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mnist,photos")
    parser.add_argument("--steps", type=int, default=1500, help="training steps of the VQ-VAE and of the VAE")
    parser.add_argument("--prior-steps", type=int, default=1500)
    parser.add_argument("--code-batches", type=int, default=125, help="training batches whose codes fit the prior")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--num-codes", type=int, default=128)
    parser.add_argument("--code-dim", type=int, default=16)
    parser.add_argument("--latent-dim", type=int, default=4, help="VAE latent channels per grid position")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--prior-channels", type=int, default=64)
    parser.add_argument("--prior-layers", type=int, default=4)
    parser.add_argument("--prior-lr", type=float, default=1e-3)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "likelihood.json")
    args = parser.parse_args()

    results = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "settings": vars(args) | {"json": str(args.json)},
        "likelihood": "discretized Gaussian over 256 levels, the same for both models",
        "paper_cifar10_bits_per_dim": {"vae": 4.51, "vqvae": 4.67, "vimco": 5.14},
        "results": {},
    }
    for name in args.datasets.split(","):
        results["results"][name] = run(name, args)
    print(f"{'dataset':8s} {'model':8s} {'bits/dim':>9s} {'MSE':>9s} {'PSNR dB':>8s}  notes")
    for name, r in results["results"].items():
        v, q = r["vae"], r["vqvae"]
        print(
            f"{name:8s} {'VAE':8s} {v['bits_per_dim']:9.3f} {v['mse']:9.5f} {v['psnr']:8.2f}  "
            f"KL {v['kl_bits_per_dim']:.3f} + rec {v['reconstruction_bits_per_dim']:.3f} bits/dim, "
            f"latent {r['latent_grid'][0]}x{r['latent_grid'][1]}x{v['latent_dim']}"
        )
        print(
            f"{name:8s} {'VQ-VAE':8s} {q['bits_per_dim']:9.3f} {q['mse']:9.5f} {q['psnr']:8.2f}  "
            f"prior {q['prior_bits_per_dim']:.3f} + rec {q['reconstruction_bits_per_dim']:.3f} bits/dim, "
            f"{q['prior_bits_per_code']:.2f} of {q['uniform_prior_bits_per_code']:.0f} bits/code"
        )
    atomic.write_json(args.json, results)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

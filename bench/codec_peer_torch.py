"""The CompressAI side of bench/codec_peer.py: trains and evaluates bmshj2018-factorized, in its own venv.

This file runs only in a separate virtual environment with PyTorch and
CompressAI, started as a subprocess by `bench/codec_peer.py`; the project
never imports it (CompressAI imports torchvision, which does not import
beside the project's pinned torch: issue 16, item 7). It imports neither
TensorFlow nor `vqvae_tf`. Make the venv outside the repository:

    python -m venv /work/venv_peer
    printf 'torch==2.14.1\\ntorchvision==0.29.1\\n' > /tmp/peer_constraints.txt
    /work/venv_peer/bin/pip install -c /tmp/peer_constraints.txt torch==2.14.1 torchvision==0.29.1 compressai

(the constraints file keeps pip from replacing torch while it resolves
compressai's requirements). Then, what `bench/codec_peer.py` runs:

    VENV/bin/python bench/codec_peer_torch.py train --photos DIR --checkpoint FILE.pt --minutes 30 --lmbda 0.0035
    VENV/bin/python bench/codec_peer_torch.py evaluate --checkpoint FILE --photos DIR --names LIST \
        --recon DIR --out FILE.json

`train`: `compressai.models.FactorizedPrior(N=128, M=192)` (CompressAI's
`bmshj2018-factorized` at qualities 1-5), the rate-distortion loss
`lambda * 255^2 * MSE + bpp` (`compressai.losses.RateDistortionLoss`),
Adam on the network and a second Adam on the entropy bottleneck's
quantiles (the aux loss; `compressai.optimizers.net_aux_optimizer`, as
CompressAI's example trainer), gradients clipped at norm 1 (the example's
default); the network's rate: linear warmup over `--warmup` steps, then
constant or (`--lr_schedule cosine`) a cosine decay to 0 at the end of the
time budget; a loss that is not finite or above 4x the median of the last
50 restores the state saved every 100 steps at half the rate (counted as
`recoveries`); random crops of the training photos (decoded once with Pillow;
each pass visits every photo once in a random order, one crop and a random
horizontal flip per visit, as the project's folder pipeline), one thread,
until the wall-clock budget is spent (counted from the first step; the
photo decoding before it is not counted). Writes the checkpoint and
FILE.json (steps, seconds, loss of the last steps).

`evaluate`: `net.update(force=True)`, then per photo of the list:
centre-pad to a multiple of 64 (as CompressAI's `eval_model`), `compress`,
`decompress`, crop back, round to uint8 and save the reconstruction as PNG
(lossless) for the project side to score with the same PSNR / MS-SSIM code
as bench/codec_rd.py. The bytes of a photo are the lengths of all its
entropy-coded strings plus a 4-byte header (height and width as two
uint16: all the decoder needs besides the strings, since the latent shape
follows from them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HEADER_BYTES = 4  # height and width, uint16 each
PAD_MULTIPLE = 64
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def _write_json(path, data):
    # Atomic like vqvae_tf.utils.atomic, which this process cannot import (no project, no TensorFlow here).
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def _read_rgb(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def load_photos(folder, crop):
    """Every photo below `folder` decoded once: (list of uint8 arrays, names skipped as smaller than `crop`)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise SystemExit(f"--photos: {folder} holds no {'/'.join(IMAGE_EXTENSIONS)} files")
    photos, small = [], []
    for path in files:
        image = _read_rgb(path)
        if min(image.shape[:2]) < crop:
            small.append(path.name)
        else:
            photos.append(image)
    if not photos:
        raise SystemExit(f"--photos: every photo of {folder} is smaller than --crop {crop}")
    return photos, small


def crop_batches(photos, crop, batch, rng):
    """Infinite float32 (batch, 3, crop, crop) batches in [0, 1]."""
    while True:
        order = rng.permutation(len(photos))
        for start in range(0, len(order) - batch + 1, batch):
            crops = []
            for index in order[start : start + batch]:
                image = photos[index]
                top = rng.integers(0, image.shape[0] - crop + 1)
                left = rng.integers(0, image.shape[1] - crop + 1)
                piece = image[top : top + crop, left : left + crop]
                crops.append(piece[:, ::-1] if rng.random() < 0.5 else piece)
            yield np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def _make_net(n, m):
    from compressai.models import FactorizedPrior

    return FactorizedPrior(N=n, M=m)


def _snapshot(net, optimizers):
    import copy

    return copy.deepcopy((net.state_dict(), {k: o.state_dict() for k, o in optimizers.items()}))


def _restore(net, optimizers, snapshot):
    import copy

    weights, states = copy.deepcopy(snapshot)
    net.load_state_dict(weights)
    for key, optimizer in optimizers.items():
        optimizer.load_state_dict(states[key])


def train(args):
    import torch
    from compressai.losses import RateDistortionLoss
    from compressai.optimizers import net_aux_optimizer

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    photos, small = load_photos(args.photos, args.crop)
    decode_seconds = time.monotonic() - started
    print(f"{len(photos)} photos decoded in {decode_seconds:.1f} s ({len(small)} smaller than {args.crop})", flush=True)
    net = _make_net(args.n, args.m).train()
    optimizers = net_aux_optimizer(
        net, {"net": {"type": "Adam", "lr": args.lr}, "aux": {"type": "Adam", "lr": args.aux_lr}}
    )
    criterion = RateDistortionLoss(lmbda=args.lmbda)
    budget = 60.0 * args.minutes
    batches = crop_batches(photos, args.crop, args.batch, rng)
    recent, steps, start, scale, recoveries = [], 0, time.monotonic(), 1.0, 0
    good = _snapshot(net, optimizers)
    while time.monotonic() - start < budget:
        # Linear warmup over the first --warmup steps (none by default), then constant or a cosine
        # decay over the wall-clock budget, to 0 at its end (no step count is known in advance).
        lr = args.lr * scale * min(1.0, (steps + 1) / max(args.warmup, 1))
        if args.lr_schedule == "cosine":
            lr *= 0.5 * (1.0 + math.cos(math.pi * min((time.monotonic() - start) / budget, 1.0)))
        for group in optimizers["net"].param_groups:
            group["lr"] = lr
        x = torch.from_numpy(next(batches))
        optimizers["net"].zero_grad()
        optimizers["aux"].zero_grad()
        out = criterion(net(x), x)
        loss = out["loss"].item()
        # Diverged (a first run at lr 1e-3 without warmup blew the loss up 10,000-fold, finite): back to the last
        # good state at half the rate (counted in the summary), rather than a lost run.
        typical = float(np.median([v[0] for v in recent[-50:]])) if len(recent) >= 20 else math.inf
        if not math.isfinite(loss) or loss > 4 * typical:
            recoveries += 1
            if recoveries > 5:
                raise SystemExit(f"loss {loss} at step {steps} after {recoveries - 1} recoveries")
            scale *= 0.5
            _restore(net, optimizers, good)
            print(f"step {steps}: loss {loss:.4g} (typical {typical:.4g}); restored the state of step "
                  f"{steps // 100 * 100}, learning rate x{scale:g}", flush=True)  # fmt: skip
            continue
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip)
        optimizers["net"].step()
        aux = net.aux_loss()
        aux.backward()
        optimizers["aux"].step()
        steps += 1
        values = [out[k].item() for k in ("loss", "bpp_loss", "mse_loss")] + [aux.item()]
        if steps % 100 == 0:
            good = _snapshot(net, optimizers)
        recent = (recent + [values])[-200:]
        if steps % args.log_every == 0:
            mean = np.mean(recent, axis=0)
            print(
                f"step {steps} {time.monotonic() - start:.0f} s: loss {mean[0]:.4f} bpp {mean[1]:.4f} "
                f"psnr {10 * math.log10(1 / mean[2]):.2f} dB aux {mean[3]:.1f}",
                flush=True,
            )
    seconds = time.monotonic() - start
    mean = np.mean(recent, axis=0)
    checkpoint = Path(args.checkpoint)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    tmp = checkpoint.with_name(f".{checkpoint.name}.tmp{os.getpid()}")
    torch.save({"state_dict": net.state_dict(), "N": args.n, "M": args.m, "lmbda": args.lmbda}, tmp)
    os.replace(tmp, checkpoint)
    summary = dict(
        steps=steps,
        train_seconds=seconds,
        decode_seconds=decode_seconds,
        photos=len(photos),
        photos_smaller_than_crop=len(small),
        last_steps=len(recent),
        last_loss=mean[0],
        last_bpp_loss=mean[1],
        last_crop_psnr=10 * math.log10(1 / mean[2]),
        last_aux_loss=mean[3],
        recoveries=recoveries,
        args=vars(args),
        torch=torch.__version__,
        compressai=__import__("compressai").__version__,
        threads=torch.get_num_threads(),
    )
    _write_json(checkpoint.with_suffix(".json"), summary)
    print(f"trained {steps} steps in {seconds:.0f} s; wrote {checkpoint}", flush=True)


def evaluate(args):
    import torch
    import torch.nn.functional as F
    from compressai.ops import compute_padding
    from PIL import Image

    torch.set_num_threads(args.threads)
    saved = torch.load(args.checkpoint, map_location="cpu")
    net = _make_net(saved["N"], saved["M"]).eval()
    net.load_state_dict(saved["state_dict"])
    net.update(force=True)
    folder, recon = Path(args.photos), Path(args.recon)
    recon.mkdir(parents=True, exist_ok=True)
    names = [line for line in Path(args.names).read_text().splitlines() if line]
    rows = {}
    for name in names:
        image = _read_rgb(folder / name)
        height, width = image.shape[:2]
        if max(height, width) >= 1 << 16:
            raise SystemExit(f"{name}: {width}x{height} does not fit the 2 x uint16 header")
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().unsqueeze(0) / 255.0
        pad, unpad = compute_padding(height, width, min_div=PAD_MULTIPLE)
        with torch.no_grad():
            start = time.perf_counter()
            coded = net.compress(F.pad(x, pad, mode="constant", value=0))
            encode_s = time.perf_counter() - start
            start = time.perf_counter()
            decoded = net.decompress(coded["strings"], coded["shape"])["x_hat"]
            decode_s = time.perf_counter() - start
        decoded = F.pad(decoded, unpad)[0].clamp(0, 1).mul(255).round().byte().numpy().transpose(1, 2, 0)
        out_path = recon / (name.replace("/", "__") + ".png")
        Image.fromarray(np.ascontiguousarray(decoded)).save(out_path)
        stream = sum(len(s) for strings in coded["strings"] for s in strings)
        rows[name] = dict(
            height=height,
            width=width,
            bytes=stream + HEADER_BYTES,
            stream_bytes=stream,
            recon=str(out_path),
            encode_s=encode_s,
            decode_s=decode_s,
        )
    _write_json(args.out, dict(photos=rows, header_bytes=HEADER_BYTES, pad_multiple=PAD_MULTIPLE))
    print(f"evaluated {len(rows)} photos; wrote {args.out}", flush=True)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--photos", required=True)
    t.add_argument("--checkpoint", required=True)
    t.add_argument("--minutes", type=float, required=True)
    t.add_argument("--lmbda", type=float, required=True)
    t.add_argument("--crop", type=int, default=96)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--lr_schedule", choices=("constant", "cosine"), default="constant")
    t.add_argument("--warmup", type=int, default=0, help="linear warmup steps (0: none, as CompressAI's trainer)")
    t.add_argument("--aux_lr", type=float, default=1e-3)
    t.add_argument("--clip", type=float, default=1.0)
    t.add_argument("--n", type=int, default=128)
    t.add_argument("--m", type=int, default=192)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--log_every", type=int, default=100)
    e = sub.add_parser("evaluate")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--photos", required=True)
    e.add_argument("--names", required=True, help="file naming the photos of --photos to code, one per line")
    e.add_argument("--recon", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "train":
        for name in ("minutes", "lmbda", "lr", "aux_lr", "clip"):
            if not getattr(args, name) > 0:
                parser.error(f"--{name} must be > 0; received {getattr(args, name)}")
        if args.warmup < 0:
            parser.error(f"--warmup must be >= 0; received {args.warmup}")
        if args.crop < 16 or args.crop % 16:
            parser.error(f"--crop must be a multiple of 16 (the network's stride), at least 16; received {args.crop}")
    return args


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    (train if args.command == "train" else evaluate)(args)


if __name__ == "__main__":
    main()

"""Design spike of the speech codec: a few speech-network designs, a few minutes each.

Trains each design with `vqvae_tf.train_and_evaluate` (the code path of
`train.py`) on `ljspeech16k` with its held-out list as validation, one design
after the other in this process, and reports per design: steps per second
(training steps over the run's whole wall time, startup and validation
included, so a lower bound), the final validation SI-SNR (dB), the
validation reconstruction loss (the `stft` loss: squared error / variance
plus the multi-resolution STFT loss), PSNR, code frames per second and the
bit rate `frames/s x stages x log2(K)` at all stages.

    TF_CPP_MIN_LOG_LEVEL=2 nice -n 5 python bench/speech_design.py [--steps 200] [--design NAME ...]

Writes bench/results/speech_design.json (atomically) and prints a table.
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

from vqvae_tf import TrainConfig, train_and_evaluate  # noqa: E402
from vqvae_tf.utils.atomic import write_bytes  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "speech" / "ljspeech16k"
RATE = 16000

#: name -> TrainConfig fields (the rest are COMMON). Every design is at 3 kbps at all stages.
DESIGNS = {
    "50fps_h16_6x1024": dict(audio_strides=(2, 4, 5, 8), hidden_units=16, num_stages=6, num_codes=1024),
    "100fps_h16_3x1024": dict(audio_strides=(2, 4, 4, 5), hidden_units=16, num_stages=3, num_codes=1024),
    "50fps_h32_6x1024": dict(audio_strides=(2, 4, 5, 8), hidden_units=32, num_stages=6, num_codes=1024),
    "50fps_h16_6x1024_noncausal": dict(
        audio_strides=(2, 4, 5, 8), hidden_units=16, num_stages=6, num_codes=1024, causal=False
    ),
}
COMMON = dict(
    dataset=f"audio:{DATA}",
    validation_list="ljspeech16k",
    crop_length=8000,
    batch_size=16,
    quantizer="residual",
    quantizer_dropout=0.5,
    code_dim=64,
    num_residual_blocks=3,
    learning_rate=1e-3,
    warmup_steps=20,
    num_samples=1,
    export=False,
    verbose=0,
)


def run_design(name, fields, steps, epochs, root):
    config = TrainConfig(**COMMON, **fields, epochs=epochs, steps_per_epoch=steps // epochs)
    start = time.perf_counter()
    result = train_and_evaluate(config, Path(root) / name)
    wall = time.perf_counter() - start
    final = result["final"]
    frames = RATE / config.hop
    return dict(
        name=name,
        fields={k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()},
        steps=config.epochs * config.steps_per_epoch,
        wall_seconds=round(wall, 1),
        steps_per_second=round(config.epochs * config.steps_per_epoch / wall, 3),
        frames_per_second=frames,
        bits_per_second=frames * config.num_stages * math.log2(config.num_codes),
        val_si_snr=round(float(final["val_si_snr"]), 2),
        val_stft_loss=round(float(final["val_reconstruction_loss"]), 4),
        val_psnr=round(float(final["val_psnr"]), 2),
        latency_samples=config.hop if config.causal else None,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="training steps per design")
    parser.add_argument("--epochs", type=int, default=2, help="epochs (validations) per design")
    parser.add_argument("--design", action="append", choices=sorted(DESIGNS), help="designs to run (repeat)")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "speech_design.json"))
    args = parser.parse_args()
    names = args.design or list(DESIGNS)[:3]
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for name in names:
            rows.append(run_design(name, DESIGNS[name], args.steps, args.epochs, root))
            print(json.dumps(rows[-1]), flush=True)
    report = dict(common=COMMON, steps=args.steps, load_average=os.getloadavg(), designs=rows)
    write_bytes(args.output, (json.dumps(report, indent=2) + "\n").encode())
    print(f"{'design':32} {'steps/s':>8} {'kbps':>6} {'SI-SNR':>7} {'stft':>7} {'psnr':>6}")
    for row in rows:
        print(
            f"{row['name']:32} {row['steps_per_second']:8.3f} {row['bits_per_second'] / 1000:6.2f} "
            f"{row['val_si_snr']:7.2f} {row['val_stft_loss']:7.4f} {row['val_psnr']:6.2f}"
        )


if __name__ == "__main__":
    main()

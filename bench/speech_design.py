"""Design spike of the speech codec: a few speech-network designs, a few minutes each.

Trains each design with `vqvae_tf.train_and_evaluate` (the code path of
`train.py`) on `ljspeech16k` with its held-out list as validation, one design
after the other in this process, and reports per design: steps per second
(training steps over the run's whole wall time, startup and validation
included, so a lower bound), the final validation SI-SNR (dB), the
validation reconstruction loss (the design's loss), PSNR, wide-band PESQ
and STOI of the final model on the first `--score_clips` held-out clips
(whole, all stages), code frames per second and the bit rate
`frames/s x stages x log2(K)` at all stages. The `_mse`/`_stft` pairs
differ only in `reconstruction_loss`.

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

import keras  # noqa: E402
import numpy as np  # noqa: E402

from vqvae_tf import TrainConfig, train_and_evaluate  # noqa: E402
from vqvae_tf.codec.audio_quality import pesq_wb, stoi  # noqa: E402
from vqvae_tf.data.audio import LJSPEECH16K_VALIDATION, read_name_list  # noqa: E402
from vqvae_tf.data.wav import load_clip  # noqa: E402
from vqvae_tf.utils.atomic import write_bytes  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "speech" / "ljspeech16k"
RATE = 16000

#: The frame network of 80-sample frames, strides 2, 2 (50 frames/s), 128 channels, at 3 kbps.
FRAMES_80 = dict(audio_strides=(2, 2), audio_frame_length=80, hidden_units=128, num_stages=6, num_codes=1024)
#: name -> TrainConfig fields (the rest are COMMON). Every design is at 3 kbps at all stages.
DESIGNS = {
    "50fps_h16_6x1024": dict(audio_strides=(2, 4, 5, 8), hidden_units=16, num_stages=6, num_codes=1024),
    "100fps_h16_3x1024": dict(audio_strides=(2, 4, 4, 5), hidden_units=16, num_stages=3, num_codes=1024),
    "50fps_h32_6x1024": dict(audio_strides=(2, 4, 5, 8), hidden_units=32, num_stages=6, num_codes=1024),
    "50fps_h16_6x1024_noncausal": dict(
        audio_strides=(2, 4, 5, 8), hidden_units=16, num_stages=6, num_codes=1024, causal=False
    ),
    "50fps_h16_rb1_mse": dict(
        audio_strides=(2, 4, 5, 8),
        hidden_units=16,
        num_stages=6,
        num_codes=1024,
        num_residual_blocks=1,
        reconstruction_loss="mse",
    ),
    "50fps_h16_rb1_stft": dict(
        audio_strides=(2, 4, 5, 8),
        hidden_units=16,
        num_stages=6,
        num_codes=1024,
        num_residual_blocks=1,
        reconstruction_loss="stft",
    ),
    # Frame-rate networks (`VQVAE(frame_length=F)`): the first and last layers read and write frames
    # of F samples, every other layer runs at 400 Hz or below (docs/training.md).
    "50fps_f80_h128_mse": dict(FRAMES_80),
    "50fps_f80_h128_stft": dict(FRAMES_80, reconstruction_loss="stft"),
    "50fps_f160_h256_stft": dict(
        FRAMES_80, audio_strides=(2,), audio_frame_length=160, hidden_units=256, reconstruction_loss="stft"
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
    mixed_precision="none",
    warmup_steps=20,
    num_samples=1,
    export=False,
    verbose=0,
)


def score_clips(count):
    """The first `count` held-out clips, each trimmed to whole code frames of the longest hop (320)."""
    names = sorted(read_name_list(LJSPEECH16K_VALIDATION))[:count]
    clips = [np.asarray(load_clip(DATA / (n if n.endswith(".wav") else n + ".wav"), RATE), np.float32) for n in names]
    return [clip.reshape(-1)[: clip.size // 320 * 320] for clip in clips]


def perceptual(model_path, clips):
    """Mean wide-band PESQ and STOI of a trained model's reconstructions of `clips` (all stages)."""
    model = keras.models.load_model(model_path, compile=False)
    pesqs, stois = [], []
    for clip in clips:
        out = np.asarray(model.predict(clip[None, :, None], verbose=0), np.float32)[0, :, 0]
        pesqs.append(pesq_wb(clip, out, RATE))
        stois.append(stoi(clip, out, RATE))
    return round(float(np.mean(pesqs)), 3), round(float(np.mean(stois)), 3)


def run_design(name, fields, steps, epochs, root, clips):
    fields = dict(fields)
    config = TrainConfig(**{**COMMON, **fields}, epochs=epochs, steps_per_epoch=steps // epochs)
    start = time.perf_counter()
    result = train_and_evaluate(config, Path(root) / name)
    wall = time.perf_counter() - start
    final = result["final"]
    frames = RATE / config.hop
    pesq_value, stoi_value = perceptual(Path(root) / name / "model.keras", clips)
    return dict(
        name=name,
        fields={k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()},
        steps=config.epochs * config.steps_per_epoch,
        wall_seconds=round(wall, 1),
        steps_per_second=round(config.epochs * config.steps_per_epoch / wall, 3),
        frames_per_second=frames,
        bits_per_second=frames * config.num_stages * math.log2(config.num_codes),
        val_si_snr=round(float(final["val_si_snr"]), 2),
        val_loss=round(float(final["val_reconstruction_loss"]), 4),
        val_psnr=round(float(final["val_psnr"]), 2),
        pesq=pesq_value,
        stoi=stoi_value,
        latency_samples=config.hop if config.causal else None,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="training steps per design")
    parser.add_argument("--epochs", type=int, default=2, help="epochs (validations) per design")
    parser.add_argument("--design", action="append", choices=sorted(DESIGNS), help="designs to run (repeat)")
    parser.add_argument("--score_clips", type=int, default=6, help="held-out clips scored by PESQ and STOI")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "speech_design.json"))
    args = parser.parse_args()
    names = args.design or list(DESIGNS)[:3]
    rows, clips = [], score_clips(args.score_clips)
    with tempfile.TemporaryDirectory() as root:
        for name in names:
            rows.append(run_design(name, DESIGNS[name], args.steps, args.epochs, root, clips))
            print(json.dumps(rows[-1]), flush=True)
    report = dict(common=COMMON, steps=args.steps, load_average=os.getloadavg(), designs=rows)
    write_bytes(args.output, (json.dumps(report, indent=2) + "\n").encode())
    print(f"{'design':32} {'steps/s':>8} {'kbps':>6} {'SI-SNR':>7} {'loss':>7} {'psnr':>6} {'PESQ':>6} {'STOI':>6}")
    for row in rows:
        print(
            f"{row['name']:32} {row['steps_per_second']:8.3f} {row['bits_per_second'] / 1000:6.2f} "
            f"{row['val_si_snr']:7.2f} {row['val_loss']:7.4f} {row['val_psnr']:6.2f} "
            f"{row['pesq']:6.3f} {row['stoi']:6.3f}"
        )


if __name__ == "__main__":
    main()

"""Training throughput of the paper's CIFAR-size VQ-VAE: ours vs Sonnet vs PyTorch.

One process, one machine, the same model everywhere (van den Oord et al.
2017 / the Sonnet VQ-VAE example): 32x32x3 images, encoder of two strided
4x4 convolutions (64, 128 channels), a 3x3 convolution, two residual blocks
(3x3 conv to 32 channels, 1x1 back), a 1x1 projection to D = 64; a K = 512
EMA codebook (decay 0.99, commitment 0.25); the mirror-image decoder; Adam;
global batch 128. Contenders:

  ours-float32          vqvae_tf.VQVAE + model.fit
  ours-mixed_bfloat16   the same under the mixed_bfloat16 policy (quantizer
                        stays float32)
  sonnet-float32        dm-sonnet 2 modules + snt.nets.VectorQuantizerEMA in
                        a tf.function train step
  torch-float32         PyTorch + vector_quantize_pytorch.VectorQuantize (EMA)

All train on the same in-memory batch of real photo crops. Each contender is
timed for `--steps` steps in each of `--rounds` interleaved rounds (so a
burst of load from other processes hurts everyone alike) and the best round
counts. Then ours (default policy) is timed on each real tf.data pipeline
of `--source` (default `photos`; repeat the flag, e.g. `--source photos
--source folder:../shared/data/photos/train`) against the in-memory batch,
all interleaved in the same rounds, and the ratio of steps per second is
printed for each source. `--pipeline_only` skips the peers (Sonnet and
PyTorch need requirements-bench.txt).

    TF_CPP_MIN_LOG_LEVEL=2 python bench/train_throughput.py [--steps 30 --rounds 3]
    TF_CPP_MIN_LOG_LEVEL=2 python bench/train_throughput.py --pipeline_only --steps 20 --rounds 2 \
        --source photos --source folder:../shared/data/photos/train

Prints a table and writes bench/results/train_throughput.json.
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

HIDDEN, RESIDUAL, BLOCKS, NUM_CODES, CODE_DIM, SIZE = 128, 32, 2, 512, 64, 32
DECAY, COMMITMENT, LEARNING_RATE = 0.99, 0.25, 3e-4


# --------------------------------------------------------------------- data
def photo_batches(batch, count):
    """`count` batches of real 32x32 photo crops (float32 NHWC in [0, 1])."""
    from vqvae_tf.data.datasets import make_datasets

    bundle = make_datasets("photos", image_size=SIZE, batch_size=batch, seed=0, augment=False)  # as recorded
    return np.stack([b.numpy() for b in bundle.train.take(count)]), bundle


def pipeline_batches(source, batch):
    """The real tf.data pipeline of `source` for the benchmark model (no augmentation, seed 0)."""
    from vqvae_tf.data.datasets import make_datasets

    return make_datasets(source, image_size=SIZE, batch_size=batch, seed=0, augment=False)


# --------------------------------------------------------------------- ours
class Ours:
    def __init__(self, images, policy):
        import keras
        import tensorflow as tf

        from vqvae_tf.models.vqvae import VQVAE

        self.name = f"ours-{policy}"
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(policy)
        try:
            self.model = VQVAE(
                input_channels=3,
                downsample=4,
                hidden_units=HIDDEN,
                residual_units=RESIDUAL,
                num_residual_blocks=BLOCKS,
                num_codes=NUM_CODES,
                code_dim=CODE_DIM,
                quantizer="ema",
                quantizer_config=dict(decay=DECAY, commitment_cost=COMMITMENT),
                data_variance=float(images.var()),
            )
            self.model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
            self.model.build((None, SIZE, SIZE, 3))
        finally:
            keras.mixed_precision.set_global_policy(previous)
        self.data = tf.data.Dataset.from_tensors(images[0]).repeat()
        self.losses = []

    def run(self, steps, data=None):
        import keras

        times = {}

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                times["start"] = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                times["end"] = time.perf_counter()

        history = self.model.fit(
            data if data is not None else self.data,
            steps_per_epoch=steps,
            epochs=1,
            verbose=0,
            callbacks=[Timer()],
            shuffle=False,
        )
        self.losses.append(float(history.history["loss"][-1]))
        return times["end"] - times["start"]


# ------------------------------------------------------------------- sonnet
class Sonnet:
    """The Sonnet 2 VQ-VAE example's model and train step (tf.function)."""

    def __init__(self, images):
        import sonnet as snt
        import tensorflow as tf

        self.name = "sonnet-float32"

        class Residual(snt.Module):
            def __init__(self):
                super().__init__()
                self.inner = snt.Conv2D(RESIDUAL, 3)
                self.outer = snt.Conv2D(HIDDEN, 1)

            def __call__(self, x):
                return x + self.outer(tf.nn.relu(self.inner(tf.nn.relu(x))))

        encoder = [
            snt.Conv2D(HIDDEN // 2, 4, stride=2),
            tf.nn.relu,
            snt.Conv2D(HIDDEN, 4, stride=2),
            tf.nn.relu,
            snt.Conv2D(HIDDEN, 3),
            *[Residual() for _ in range(BLOCKS)],
            tf.nn.relu,
            snt.Conv2D(CODE_DIM, 1),
        ]
        decoder = [
            snt.Conv2D(HIDDEN, 3),
            *[Residual() for _ in range(BLOCKS)],
            tf.nn.relu,
            snt.Conv2DTranspose(HIDDEN // 2, 4, stride=2),
            tf.nn.relu,
            snt.Conv2DTranspose(3, 4, stride=2),
        ]
        self.encoder, self.decoder = snt.Sequential(encoder), snt.Sequential(decoder)
        self.vq = snt.nets.VectorQuantizerEMA(
            embedding_dim=CODE_DIM, num_embeddings=NUM_CODES, commitment_cost=COMMITMENT, decay=DECAY
        )
        self.optimizer = snt.optimizers.Adam(LEARNING_RATE)
        self.batch = tf.constant(images[0])
        variance = float(images.var())

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                vq = self.vq(self.encoder(x), is_training=True)
                recon = self.decoder(vq["quantize"])
                loss = tf.reduce_mean(tf.square(recon - x)) / variance + vq["loss"]
            variables = self.encoder.trainable_variables + self.decoder.trainable_variables
            self.optimizer.apply(tape.gradient(loss, variables), variables)
            return loss

        self.step = step
        self.losses = []

    def run(self, steps):
        start = time.perf_counter()
        for _ in range(steps):
            loss = self.step(self.batch)
        loss = float(loss)  # waits for the last step
        self.losses.append(loss)
        return time.perf_counter() - start


# -------------------------------------------------------------------- torch
class Torch:
    """The same model in PyTorch with vector_quantize_pytorch's EMA codebook."""

    def __init__(self, images):
        import torch
        from torch import nn
        from vector_quantize_pytorch import VectorQuantize

        torch.set_num_threads(os.cpu_count())
        self.name = "torch-float32"
        self.torch = torch

        class Residual(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(
                    nn.ReLU(), nn.Conv2d(HIDDEN, RESIDUAL, 3, padding=1), nn.ReLU(), nn.Conv2d(RESIDUAL, HIDDEN, 1)
                )

            def forward(self, x):
                return x + self.body(x)

        self.encoder = nn.Sequential(
            nn.Conv2d(3, HIDDEN // 2, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(HIDDEN // 2, HIDDEN, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(HIDDEN, HIDDEN, 3, padding=1),
            *[Residual() for _ in range(BLOCKS)],
            nn.ReLU(),
            nn.Conv2d(HIDDEN, CODE_DIM, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(CODE_DIM, HIDDEN, 3, padding=1),
            *[Residual() for _ in range(BLOCKS)],
            nn.ReLU(),
            nn.ConvTranspose2d(HIDDEN, HIDDEN // 2, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(HIDDEN // 2, 3, 4, 2, 1),
        )
        self.vq = VectorQuantize(
            dim=CODE_DIM, codebook_size=NUM_CODES, decay=DECAY, commitment_weight=COMMITMENT, accept_image_fmap=True
        )
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        self.optimizer = torch.optim.Adam(params, lr=LEARNING_RATE)
        self.batch = torch.from_numpy(np.ascontiguousarray(images[0].transpose(0, 3, 1, 2)))
        self.variance = float(images.var())
        self.losses = []

    def run(self, steps):
        torch = self.torch
        start = time.perf_counter()
        for _ in range(steps):
            self.optimizer.zero_grad(set_to_none=True)
            quantized, _, commit = self.vq(self.encoder(self.batch))
            loss = torch.mean((self.decoder(quantized) - self.batch) ** 2) / self.variance + commit.sum()
            loss.backward()
            self.optimizer.step()
        self.losses.append(float(loss.detach()))
        return time.perf_counter() - start


# --------------------------------------------------------------------- main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--source", action="append", help="a make_datasets spec timed against in-memory crops (repeatable)"
    )
    parser.add_argument("--pipeline_only", action="store_true", help="skip the Sonnet and PyTorch peers")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "train_throughput.json")
    args = parser.parse_args()

    from vqvae_tf.training.loop import resolve_mixed_precision
    from vqvae_tf.utils import atomic

    images, _ = photo_batches(args.batch, 1)
    contenders = [Ours(images, "float32"), Ours(images, "mixed_bfloat16")]
    if not args.pipeline_only:
        contenders += [Sonnet(images), Torch(images)]
    images_per_s = {}
    if not args.pipeline_only:
        for contender in contenders:
            contender.run(args.warmup)
        best = {c.name: float("inf") for c in contenders}
        for _ in range(args.rounds):
            for contender in contenders:
                best[contender.name] = min(best[contender.name], contender.run(args.steps))
        images_per_s = {name: args.steps * args.batch / seconds for name, seconds in best.items()}
        peer = max(images_per_s["sonnet-float32"], images_per_s["torch-float32"])

    # Input pipelines: ours with the default policy, each real source vs in
    # memory, interleaved round by round so that load hurts all alike.
    default_policy = resolve_mixed_precision("auto")
    ours = (
        next(c for c in contenders if c.name == f"ours-{default_policy}") if default_policy != "none" else contenders[0]
    )
    sources = args.source or ["photos"]
    pipelines = {}
    for source in sources:
        start = time.perf_counter()
        pipelines[source] = pipeline_batches(source, args.batch).train
        build_s = time.perf_counter() - start
        ours.run(args.warmup, pipelines[source])
        print(f"{source}: pipeline built in {build_s:.1f} s")
    ours.run(args.warmup)
    memory_s = float("inf")
    pipe_s = dict.fromkeys(sources, float("inf"))
    for _ in range(args.rounds):
        memory_s = min(memory_s, ours.run(args.steps))
        for source in sources:
            pipe_s[source] = min(pipe_s[source], ours.run(args.steps, pipelines[source]))

    print(
        f"\nTraining throughput, 32x32x3, K={NUM_CODES} D={CODE_DIM} hidden={HIDDEN}, batch {args.batch}, "
        f"best of {args.rounds} x {args.steps} steps ({os.cpu_count()} CPU cores)"
    )
    if images_per_s:
        print(f"{'contender':<22} {'images/s':>9} {'vs faster peer':>15} {'last loss':>10}")
        for contender in contenders:
            name = contender.name
            print(
                f"{name:<22} {images_per_s[name]:>9.0f} {images_per_s[name] / peer:>14.2f}x "
                f"{contender.losses[-1]:>10.3f}"
            )
    print(f"\nInput pipeline ({ours.name}), in-memory {args.steps / memory_s:.2f} steps/s:")
    for source in sources:
        print(
            f"  {source} tf.data {args.steps / pipe_s[source]:.2f} steps/s vs in-memory "
            f"{args.steps / memory_s:.2f} steps/s = {100 * memory_s / pipe_s[source]:.1f}% (target >= 95%)"
        )
    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        | {"hidden_units": HIDDEN, "residual_units": RESIDUAL, "num_codes": NUM_CODES, "code_dim": CODE_DIM},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "pipeline": {
            "policy": ours.name,
            "in_memory_steps_per_s": args.steps / memory_s,
            "sources": {
                source: {"steps_per_s": args.steps / pipe_s[source], "ratio": memory_s / pipe_s[source]}
                for source in sources
            },
        },
    }
    if images_per_s:
        fastest_ours = max(images_per_s["ours-float32"], images_per_s["ours-mixed_bfloat16"])
        print(f"ours (best policy) / faster peer = {fastest_ours / peer:.2f}x (target >= 1.25x)")
        result |= {
            "images_per_s": images_per_s,
            "ratio_to_faster_peer": {k: v / peer for k, v in images_per_s.items()},
            "best_ours_vs_faster_peer": fastest_ours / peer,
            "last_losses": {c.name: c.losses[-1] for c in contenders},
        }
    atomic.write_json(args.json, result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

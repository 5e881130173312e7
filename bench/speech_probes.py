"""What the codes hold (van den Oord et al. 2017, sec. 4.3): digit and speaker probes on frozen FSDD latents.

On the Free Spoken Digit Dataset (`../shared/data/speech/fsdd`, 8 kHz,
`digit_speaker_take.wav`, 5 speakers x 10 digits x 50 takes), split by take
(takes 0-4 are the test clips, the rest train), this trains, on random
`--crop`-sample crops of the training clips (`vqvae_tf.data.audio`):

* a VQ-VAE (`VQVAE(rank=1, strides=...)`, EMA codebook with k-means
  initialisation, `reconstruction_loss="mse"`);
* a Gaussian VAE (`GaussianVAE(rank=1, strides=...)`, the 16-bit PCM
  likelihood) with the same encoder, decoder and latent grid (one latent
  vector per hop: strides (4, 5, 8) are 160 samples, 50 frames per second at
  8 kHz, the frame rate of the 16 kHz (2, 4, 5, 8) model).

Then both are frozen and every whole clip (cut to a whole number of hops)
is encoded: the VQ-VAE's code embeddings (the codebook vectors of its
codes), the VAE's posterior means. A clip's feature is the mean over each
of `--segments` equal stretches of its frames (so a little of the order
survives) and the standard deviation over all of them; a scikit-learn
`LogisticRegression` on standardised features predicts the digit (chance
10%) and the speaker (chance 20%); the test accuracy is reported. The same
probe on log power spectra of the waveform, framed at the same hop with no
model, is the reference of what the signal itself gives the probe; the
VQ-VAE's codes are also probed as code histograms (the share of each code in
each stretch: which codes occur, not their vectors). Also
reported, on the test clips: SI-SNR of the reconstructions (VQ-VAE from its
codes, VAE at the posterior mean), the VQ-VAE's code perplexity and bits per
second at `log2(num_codes)` per code, the VAE's KL in bits per second.

A second probe reads the frame sequences themselves (`--sequence-epochs`):
a small 1-D CNN (two kernel-5 convolutions, masked mean and max over the
clip's frames, a linear layer) trained on the training clips' frames,
reported as `digit_sequence` / `speaker_sequence` beside the pooled probe.

The encoders are causal, so a batch of clips zero-padded at the end gives
each clip the frames it would get alone; only the frames of its own samples
are kept.

    nice -n 19 python bench/speech_probes.py                       # the full run (wall time in the JSON)
    nice -n 19 python bench/speech_probes.py --steps 60 --out /tmp/probes.json   # a quick check

Writes bench/results/speech_probes.json.
"""

import argparse
import math
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from vqvae_tf.data.datasets import make_datasets  # noqa: E402
from vqvae_tf.models.gaussian_vae import GaussianVAE  # noqa: E402
from vqvae_tf.models.metrics import si_snr  # noqa: E402
from vqvae_tf.models.vqvae import VQVAE  # noqa: E402
from vqvae_tf.utils import atomic  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "speech" / "fsdd"
RESULTS = ROOT / "bench" / "results"
RATE = 8000
#: FSDD file names: `3_jackson_12.wav`.
NAME = re.compile(r"^(?P<digit>\d+)_(?P<speaker>[a-z]+)_(?P<take>\d+)\.wav$", re.IGNORECASE)
#: The pipeline's classes are "digit_speaker" (its groups joined by `_`); the probes split them.
LABEL_PATTERN = r"^(\d+)_([a-z]+)_\d+\.wav$"
TASKS = ("digit", "speaker")
# Any batch and length: one trace encodes every batch of clips.
WAVES = tf.TensorSpec((None, None, 1), tf.float32)


def make_parser(description=None):
    """The probes' flags (data, split, model and probe settings); `bench/voice_conversion.py` adds its own."""
    parser = argparse.ArgumentParser(description=description or __doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder of digit_speaker_take.wav files")
    parser.add_argument("--test-takes", type=int, default=5, help="takes 0..N-1 are the test clips")
    parser.add_argument("--steps", type=int, default=5000, help="training steps of the VQ-VAE and of the VAE")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--crop", type=int, default=1120, help="training crop in samples (FSDD's shortest: 1148)")
    parser.add_argument("--strides", default="4,5,8", help="speech network strides (4,5,8: 50 frames/s at 8 kHz)")
    parser.add_argument("--hidden", type=int, default=16, help="channels of the first stage (doubled per stride)")
    parser.add_argument("--blocks", type=int, default=2, help="residual units per stage")
    parser.add_argument("--num-codes", type=int, default=128)
    parser.add_argument("--dead-code-threshold", type=float, default=0.2, help="restart codes used less per batch")
    parser.add_argument("--code-dim", type=int, default=32, help="VQ code size and VAE latent size per frame")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--segments", type=int, default=3, help="stretches of a clip whose frame means are pooled")
    parser.add_argument("--probe-c", type=float, default=1.0, help="inverse L2 strength of the logistic probes")
    parser.add_argument(
        "--sequence-epochs", type=int, default=40, help="epochs of the sequence probe (a small 1-D CNN); 0: none"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deterministic", action="store_true", help="reproducible batches and ops (slower)")
    parser.add_argument("--out", type=Path, default=RESULTS / "speech_probes.json")
    return parser


def parse_args(argv=None):
    return make_parser().parse_args(argv)


# ------------------------------------------------------------------ data
def split_by_take(directory, test_takes):
    """`(train names, test names)`: the FSDD-named WAV files below `directory`, test = takes below `test_takes`."""
    train, test = [], []
    for path in sorted(Path(directory).rglob("*")):
        match = NAME.match(path.name)
        if match and path.is_file():
            (test if int(match["take"]) < test_takes else train).append(path.relative_to(directory).as_posix())
    if not train or not test:
        raise SystemExit(
            f"{directory}: expected digit_speaker_take.wav files with takes below and from {test_takes}; "
            f"found {len(train)} train and {len(test)} test clips"
        )
    return train, test


def labelled_clips(bundle):
    """The bundle's validation clips as `(list of 1-D float32 arrays, {task: label text per clip})`."""
    clips, labels = [], {task: [] for task in TASKS}
    for clip, label in bundle.validation:
        clips.append(clip.numpy()[0, :, 0])
        digit, speaker = bundle.class_names[int(label.numpy()[0])].split("_")
        labels["digit"].append(digit)
        labels["speaker"].append(speaker)
    return clips, labels


def load(args, clip_crop=None):
    """`(training bundle, train clips and labels, test clips and labels)`, all through `make_datasets`.

    The bundle trains on `args.crop`-sample crops (clips shorter are left out of training); the whole
    clips come from views built with `clip_crop` (None: `args.crop`), so a short one keeps every clip.
    """
    train_names, test_names = split_by_take(args.data, args.test_takes)
    common = dict(
        batch_size=args.batch,
        seed=args.seed,
        sample_rate=RATE,
        label_pattern=LABEL_PATTERN,
        with_labels=True,
        deterministic=args.deterministic,
    )
    clip_crop = args.crop if clip_crop is None else clip_crop
    with tempfile.TemporaryDirectory() as tmp:
        lists = {}
        for split, names in (("test", test_names), ("train", train_names)):
            lists[split] = Path(tmp) / f"{split}.txt"
            lists[split].write_text("\n".join(names) + "\n")
        # Trained on the train takes (the test takes are its validation set) ...
        bundle = make_datasets(f"audio:{args.data}", validation_list=lists["test"], crop_length=args.crop, **common)
        test_view = bundle
        if clip_crop != args.crop:
            test_view = make_datasets(
                f"audio:{args.data}", validation_list=lists["test"], crop_length=clip_crop, **common
            )
        # ... and a view whose validation set is the whole train clips, for the probes' training.
        train_view = make_datasets(
            f"audio:{args.data}", validation_list=lists["train"], crop_length=clip_crop, **common
        )
    return bundle, labelled_clips(train_view), labelled_clips(test_view)


# ---------------------------------------------------------------- models
def strides_of(args):
    return tuple(int(s) for s in args.strides.split(","))


def train_vqvae(bundle, args, data=None, **options):
    """The VQ-VAE of the probes trained on `data` (None: `bundle.train`); `options` add `VQVAE` arguments."""
    keras.utils.set_random_seed(args.seed)
    model = VQVAE(
        input_channels=1,
        rank=1,
        strides=strides_of(args),
        hidden_units=args.hidden,
        num_residual_blocks=args.blocks,
        num_codes=args.num_codes,
        code_dim=args.code_dim,
        quantizer="ema",
        quantizer_config={"kmeans_init": True, "dead_code_threshold": args.dead_code_threshold, "seed": args.seed},
        data_variance=bundle.data_variance,
        sample_rate=RATE,
        **options,
    )
    model.compile(optimizer=keras.optimizers.Adam(args.lr))
    model.fit(bundle.train if data is None else data, steps_per_epoch=args.steps, epochs=1, verbose=0)
    return model


def train_vae(bundle, args):
    keras.utils.set_random_seed(args.seed)
    rms = math.sqrt(bundle.data_variance)
    model = GaussianVAE(
        input_channels=1,
        rank=1,
        strides=strides_of(args),
        hidden_units=args.hidden,
        num_residual_blocks=args.blocks,
        latent_dim=args.code_dim,
        # The likelihood scale starts at the signal's RMS: the default 0.1 is several times louder than
        # speech, which weighs the reconstruction so little that the first steps collapse the posterior.
        initial_scale=min(rms, 0.5),
        seed=args.seed,
        sample_rate=RATE,
        data_variance=bundle.data_variance,
    )
    model.compile(optimizer=keras.optimizers.Adam(args.lr))
    model.fit(bundle.train, steps_per_epoch=args.steps, epochs=1, verbose=0)
    return model


def encode_clips(encode, clips, hop, batch=64):
    """`encode(waves (B, T, 1)) -> dict of (B, T / hop, ...) arrays`, per clip: a list of dicts of `(frames, ...)`.

    Clips are cut to whole hops and batched by length, zero-padded at the
    end (the networks are causal: the padding does not reach a clip's own
    frames).
    """
    order = np.argsort([len(c) for c in clips])
    out = [None] * len(clips)
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        frames = [len(clips[i]) // hop for i in chunk]
        waves = np.zeros((len(chunk), max(frames) * hop, 1), np.float32)
        for row, i in enumerate(chunk):
            waves[row, : frames[row] * hop, 0] = clips[i][: frames[row] * hop]
        encoded = {k: np.asarray(v) for k, v in encode(tf.constant(waves)).items()}
        for row, i in enumerate(chunk):
            # Per-frame outputs keep `frames` steps, per-sample ones (reconstructions) `frames * hop`.
            out[i] = {k: v[row, : frames[row] * (v.shape[1] // max(frames))] for k, v in encoded.items()}
    return out


def vqvae_encoder(model):
    def encode(waves):
        codes = model.codes(waves)
        return {
            "features": model.quantizer.lookup(codes),
            "codes": codes,
            "reconstruction": model.decode_codes(codes)[..., 0],
        }

    return tf.function(encode, input_signature=[WAVES])


def vae_encoder(model):
    def encode(waves):
        posterior = model.posterior(waves)
        kl = tf.reduce_sum(posterior.kl_divergence(type(posterior)(0.0, 1.0)), axis=-1)
        return {"features": posterior.mean(), "kl": kl, "reconstruction": model(waves)[..., 0]}

    return tf.function(encode, input_signature=[WAVES])


def spectrum_encoder(hop):
    """Log power spectra of `2 hop`-sample Hann windows, one per hop: the probe's reference without a model."""

    def encode(waves):
        x = np.asarray(waves)[..., 0]
        padded = np.pad(x, ((0, 0), (hop, 0)))
        frames = np.lib.stride_tricks.sliding_window_view(padded, 2 * hop, axis=1)[:, ::hop][:, : x.shape[1] // hop]
        power = np.abs(np.fft.rfft(frames * np.hanning(2 * hop), axis=-1)) ** 2
        return {"features": np.log(power + 1e-8)}

    return encode


# ---------------------------------------------------------------- probes
def pooled(frames, segments):
    """A clip's feature: the mean of each of `segments` equal stretches of its frames, then their std."""
    frames = np.asarray(frames, np.float64)
    index = np.minimum((np.arange(segments * len(frames)) // segments), len(frames) - 1)
    # Each frame repeated `segments` times: any clip with a frame splits into `segments` non-empty parts.
    parts = np.array_split(frames[index], segments)
    return np.concatenate([p.mean(axis=0) for p in parts] + [frames.std(axis=0)])


def probe_accuracy(train_features, train_labels, test_features, test_labels, c=1.0, seed=0):
    """Test accuracy of a logistic-regression probe trained on the train features."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, random_state=seed))
    probe.fit(train_features, train_labels)
    return float(probe.score(test_features, test_labels))


def sequence_probe_accuracy(train_frames, train_labels, test_frames, test_labels, args):
    """Test accuracy of a small 1-D CNN on the frame sequences (standardised with the training frames' statistics).

    Two kernel-5 convolutions (64 channels, ReLU), then the mean and the max over each clip's own
    frames (the padding of a batch is masked out: the clip's length is not a feature) and a linear
    layer; Adam, `args.sequence_epochs` epochs of batch 64, no early stopping (no validation split).
    """
    classes = sorted(set(train_labels))
    frames = np.concatenate(train_frames).astype(np.float64)
    mean, std = frames.mean(axis=0), frames.std(axis=0) + 1e-6

    def padded(sequences):
        longest = max(len(f) for f in sequences)
        x = np.zeros((len(sequences), longest, frames.shape[1]), np.float32)
        mask = np.zeros((len(sequences), longest), np.float32)
        for i, f in enumerate(sequences):
            x[i, : len(f)], mask[i, : len(f)] = (np.asarray(f) - mean) / std, 1.0
        return x, mask

    keras.utils.set_random_seed(args.seed)
    x_in, mask_in = keras.Input((None, frames.shape[1])), keras.Input((None,))
    h = keras.layers.Conv1D(64, 5, padding="same", activation="relu")(x_in)
    h = keras.layers.Conv1D(64, 5, padding="same", activation="relu")(h)
    m = keras.ops.expand_dims(mask_in, -1)
    average = keras.ops.sum(h * m, axis=1) / keras.ops.maximum(keras.ops.sum(m, axis=1), 1.0)
    peak = keras.ops.max(h + (m - 1.0) * 1e9, axis=1)
    h = keras.layers.Dropout(0.3)(keras.layers.Concatenate()([average, peak]))
    model = keras.Model([x_in, mask_in], keras.layers.Dense(len(classes))(h))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    y_train = np.array([classes.index(label) for label in train_labels])
    model.fit(list(padded(train_frames)), y_train, batch_size=64, epochs=args.sequence_epochs, verbose=0)
    predicted = np.argmax(model.predict(list(padded(test_frames)), batch_size=64, verbose=0), axis=1)
    return float(np.mean(np.array(classes)[predicted] == np.asarray(test_labels)))


def run_probes(encoders, train, test, hop, args):
    """{name: {task: test accuracy, "chance": ...}} of the probes on each encoder's features."""
    (train_clips, train_labels), (test_clips, test_labels) = train, test
    results = {}
    for name, encode in encoders.items():
        start = time.perf_counter()
        encoded = {"train": encode_clips(encode, train_clips, hop), "test": encode_clips(encode, test_clips, hop)}
        views = {name: lambda e: pooled(e["features"], args.segments)}
        if "codes" in encoded["test"][0]:
            views[name.replace("codes", "code_histograms")] = lambda e: code_histogram(e["codes"], args)
        for view, feature in views.items():
            features = {k: np.stack([feature(e) for e in v]) for k, v in encoded.items()}
            row = {"feature_dim": int(features["train"].shape[1])}
            for task in TASKS:
                row[task] = probe_accuracy(
                    features["train"], train_labels[task], features["test"], test_labels[task], args.probe_c, args.seed
                )
            results[view] = row
        if args.sequence_epochs:
            # The sequence probe reads the frames themselves (code vectors, means or spectra), not a pooled view.
            sequences = {k: [e["features"] for e in v] for k, v in encoded.items()}
            for task in TASKS:
                results[name][f"{task}_sequence"] = sequence_probe_accuracy(
                    sequences["train"], train_labels[task], sequences["test"], test_labels[task], args
                )
        results[name].update(_model_figures(encoded["test"], test_clips, hop, args))
        results[name]["seconds"] = time.perf_counter() - start
    return results


def code_histogram(codes, args):
    """The share of each code in each of `segments` stretches of a clip's frames (a bag of codes per stretch)."""
    one_hot = np.eye(args.num_codes)[np.asarray(codes)]
    return pooled(one_hot, args.segments)[: args.segments * args.num_codes]


def _model_figures(encoded, clips, hop, args):
    """Test-set SI-SNR, code usage and rates, when the encoder gives them."""
    figures = {}
    if "reconstruction" in encoded[0]:
        scores = [
            float(si_snr(c[None, : len(e["reconstruction"]), None], e["reconstruction"][None, :, None])[0])
            for c, e in zip(clips, encoded)
        ]
        figures["si_snr_db"] = float(np.mean(scores))
    seconds = sum(len(e["features"]) for e in encoded) * hop / RATE
    if "codes" in encoded[0]:
        counts = np.bincount(np.concatenate([e["codes"] for e in encoded]), minlength=args.num_codes)
        p = counts[counts > 0] / counts.sum()
        figures.update(
            codes_used=int((counts > 0).sum()),
            perplexity=float(np.exp(-(p * np.log(p)).sum())),
            bits_per_second=RATE / hop * math.log2(args.num_codes),
        )
    if "kl" in encoded[0]:
        figures["kl_bits_per_second"] = float(sum(e["kl"].sum() for e in encoded) / math.log(2) / seconds)
    return figures


# ------------------------------------------------------------------ main
def run(args):
    """The whole bench: `{settings..., "probes": {...}, "chance": {...}}`."""
    start = time.perf_counter()
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    bundle, train, test = load(args)
    hop = math.prod(strides_of(args))
    chance = {task: 1.0 / len(set(train[1][task]) | set(test[1][task])) for task in TASKS}
    timings = {}
    tick = time.perf_counter()
    vqvae = train_vqvae(bundle, args)
    timings["vqvae_training"] = time.perf_counter() - tick
    tick = time.perf_counter()
    vae = train_vae(bundle, args)
    timings["vae_training"] = time.perf_counter() - tick
    encoders = {"vq_codes": vqvae_encoder(vqvae), "vae_means": vae_encoder(vae), "log_spectrum": spectrum_encoder(hop)}
    probes = run_probes(encoders, train, test, hop, args)
    return {
        "data": bundle.description,
        "split": f"test: takes 0-{args.test_takes - 1} ({len(test[0])} clips); train: the rest ({len(train[0])})",
        "frames_per_second": RATE / hop,
        "chance": chance,
        "probes": probes,
        "timings_seconds": timings | {"total": time.perf_counter() - start},
    }


def main(argv=None):
    args = parse_args(argv)
    results = {"command": " ".join(["python"] + sys.argv), "settings": {k: str(v) for k, v in vars(args).items()}}
    results |= run(args)
    chance = results["chance"]
    print(f"{'features':18s} {'digit':>7s} {'speaker':>8s}  notes")
    print(f"{'chance':18s} {chance['digit']:7.1%} {chance['speaker']:8.1%}")
    for name, row in results["probes"].items():
        notes = ", ".join(
            f"{k} {row[k]:.3g}"
            for k in ("digit_sequence", "speaker_sequence", "si_snr_db", "perplexity", "bits_per_second")
            + ("kl_bits_per_second",)
            if k in row
        )
        print(f"{name:18s} {row['digit']:7.1%} {row['speaker']:8.1%}  {notes}")
    vq, vae = results["probes"]["vq_codes"], results["probes"]["vae_means"]
    print(
        f"VQ / VAE accuracy: digit {vq['digit'] / max(vae['digit'], 1e-9):.2f}x, "
        f"speaker {vq['speaker'] / max(vae['speaker'], 1e-9):.2f}x; wall {results['timings_seconds']['total']:.0f} s"
    )
    atomic.write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

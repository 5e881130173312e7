"""Voice conversion (van den Oord et al. 2017, sec. 4.3): FSDD codes decoded with another speaker's embedding.

On the Free Spoken Digit Dataset split by take as in `bench/speech_probes.py`
(takes 0-4 test, the rest train; its data loading, model and probe code are
imported from there), this trains on the training takes:

* a VQ-VAE whose decoder is conditioned on the speaker
  (`VQVAE(num_speakers=5, speaker_conditioning="stages")`: a learned vector
  per speaker added to every code frame the decoder reads, and a FiLM scale
  and shift per speaker at each decoder stage; `--conditioning input` keeps
  only the vector), and the same VQ-VAE without it, for the same steps; both
  with `reconstruction_loss="stft"` (`--loss`);
* a digit and a speaker classifier on real audio: logistic regression on the
  pooled log power spectra of `bench/speech_probes.py` (20 ms frames, hop
  160 whatever the model's rate).

On the test takes it reports: the classifiers' accuracy on the real clips,
on the reconstructions of both models (SI-SNR beside), and, for conversion
(each test clip's codes decoded with each of the 4 other speakers'
embeddings), the share classified as the target speaker, the share still
classified as the source speaker, and the digit accuracy. It also runs the
speaker and digit probes of `bench/speech_probes.py` on both models' code
embeddings: the conditioned decoder takes the speaker from its embedding, so
its codes need to hold less of it.

The latent rate is `--strides` (default the probes' 4,5,8: 50 code frames
per second; 4,5,8,2 is 25 and 4,5,8,4 12.5), and `--crop` must be a multiple
of the hop. A spike chose these defaults (docs/discrete_vs_continuous.md,
"Speech: voice conversion"): coarser codes did not learn the digit within
1,200 steps, the waveform MSE alone left nothing classifiable, and the
per-stage FiLM moved the speaker where the input vector alone barely did.

    nice -n 19 python bench/voice_conversion.py                  # the full run (wall time in the JSON)
    nice -n 19 python bench/voice_conversion.py --quick          # an 81 s check (--steps 100, no probes)

Writes bench/results/voice_conversion.json and, with `--examples DIR`, a few
WAVs: source, reconstruction and conversion of 4 test clips.
"""

import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from bench import speech_probes as probes  # noqa: E402
from vqvae_tf.models.metrics import si_snr  # noqa: E402
from vqvae_tf.utils import atomic  # noqa: E402
from vqvae_tf.utils.wav import write_wav  # noqa: E402

RATE = probes.RATE
#: The classifiers' frame hop (20 ms at 8 kHz), the same whatever the model's rate.
CLASSIFIER_HOP = 160
#: Samples of FSDD's shortest clip: a crop this short keeps them all.
SHORTEST_CLIP = 1148
CODES = tf.TensorSpec((None, None), tf.int32)
SPEAKERS = tf.TensorSpec((None,), tf.int32)


def parse_args(argv=None):
    parser = probes.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--loss", default="stft", choices=("mse", "stft"), help="the VQ-VAEs' reconstruction_loss")
    parser.add_argument("--speaker-dim", type=int, default=None, help="speaker embedding size (None: code_dim)")
    parser.add_argument(
        "--conditioning", default="stages", choices=("input", "stages"), help="VQVAE(speaker_conditioning=...)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the unconditioned model and the probes")
    parser.add_argument("--quick", action="store_true", help="--steps 100 --no-baseline, to /tmp")
    parser.add_argument("--examples", type=Path, default=None, help="write example WAVs (4 clips) to this folder")
    parser.set_defaults(steps=4000, out=probes.RESULTS / "voice_conversion.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.no_baseline = min(args.steps, 100), True
        if args.out == probes.RESULTS / "voice_conversion.json":
            args.out = Path("/tmp/voice_conversion_quick.json")
    hop = math.prod(probes.strides_of(args))
    if args.crop % hop:
        parser.error(f"--crop must be a multiple of the hop {hop} of --strides {args.strides}; received {args.crop}")
    return args


# ----------------------------------------------------------- classifiers
def spectrum_features(clips, segments):
    """Pooled log power spectra (`bench/speech_probes.py`) of each clip, scaled to unit RMS: the classifiers' input.

    The unit RMS keeps a decoder's overall gain (MSE-trained decoders start quiet) from deciding the class.
    """
    clips = [c / max(float(np.sqrt(np.mean(np.square(c)))), 1e-6) for c in clips]
    encoded = probes.encode_clips(probes.spectrum_encoder(CLASSIFIER_HOP), clips, CLASSIFIER_HOP)
    return np.stack([probes.pooled(e["features"], segments) for e in encoded])


def train_classifiers(train, args):
    """{task: logistic regression on real training audio} for the digit and the speaker."""
    clips, labels = train
    features = spectrum_features(clips, args.segments)
    classifiers = {}
    for task in probes.TASKS:
        classifiers[task] = make_pipeline(
            StandardScaler(), LogisticRegression(C=args.probe_c, max_iter=3000, random_state=args.seed)
        )
        classifiers[task].fit(features, labels[task])
    return classifiers


def classify(classifiers, clips, args):
    features = spectrum_features(clips, args.segments)
    return {task: classifiers[task].predict(features) for task in probes.TASKS}


# ---------------------------------------------------------------- models
def with_speaker_ids(bundle, speakers):
    """`bundle.train` with each batch's "digit_speaker" class index mapped to the speaker's index in `speakers`."""
    index = [speakers.index(name.split("_")[1]) for name in bundle.class_names]
    table = tf.constant(index, tf.int32)

    def relabel(x, label):
        return x, tf.gather(table, label)

    return bundle.train.map(relabel, num_parallel_calls=tf.data.AUTOTUNE)


def code_encoder(model):
    """Code embeddings and codes per frame: what `probes.run_probes` reads (no reconstruction: it needs a speaker)."""

    def encode(waves):
        codes = model.codes(waves)
        return {"features": model.quantizer.lookup(codes), "codes": codes}

    return tf.function(encode, input_signature=[probes.WAVES], autograph=False)


def decode_clips(model, codes, speakers, batch=64):
    """Waveforms decoded from per-clip code sequences, as `speakers[i]` (None for an unconditioned model).

    Batched by length, codes padded at the end: the decoder is causal, so the
    padding does not reach a clip's own samples.
    """

    def decode(codes, speaker_ids):
        if model.num_speakers is None:
            return model.decode_codes(codes)[..., 0]
        return model.decode_codes(codes, speaker=speaker_ids)[..., 0]

    decode = tf.function(decode, input_signature=[CODES, SPEAKERS], autograph=False)
    hop = model.downsample
    order = np.argsort([len(c) for c in codes])
    out = [None] * len(codes)
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        frames = max(len(codes[i]) for i in chunk)
        padded = np.zeros((len(chunk), frames), np.int32)
        for row, i in enumerate(chunk):
            padded[row, : len(codes[i])] = codes[i]
        ids = np.array([0 if speakers is None else speakers[i] for i in chunk], np.int32)
        waves = decode(tf.constant(padded), tf.constant(ids)).numpy()
        for row, i in enumerate(chunk):
            out[i] = waves[row, : len(codes[i]) * hop]
    return out


def mean_si_snr(clips, reconstructions):
    scores = [float(si_snr(c[None, : len(r), None], r[None, :, None])[0]) for c, r in zip(clips, reconstructions)]
    return float(np.mean(scores))


def level_db(clips, reconstructions):
    """Mean over clips of the reconstruction's energy over the source's, in dB (0: as loud)."""
    ratios = [np.sum(np.square(r)) / max(np.sum(np.square(c[: len(r)])), 1e-12) for c, r in zip(clips, reconstructions)]
    return float(np.mean(10 * np.log10(np.maximum(ratios, 1e-12))))


def accuracies(predicted, digits, speakers):
    return {
        "digit": float(np.mean(predicted["digit"] == np.asarray(digits))),
        "speaker": float(np.mean(predicted["speaker"] == np.asarray(speakers))),
    }


# ------------------------------------------------------------ evaluation
def evaluate(models, classifiers, test, speakers, args):
    """Classifier figures of the real test clips, the reconstructions and the conversions."""
    clips, labels = test
    hop = math.prod(probes.strides_of(args))
    digits, sources = labels["digit"], labels["speaker"]
    source_ids = [speakers.index(s) for s in sources]
    results = {"real": accuracies(classify(classifiers, clips, args), digits, sources)}
    outputs = {}
    for name, model in models.items():
        codes = [e["codes"] for e in probes.encode_clips(code_encoder(model), clips, hop)]
        conditioned = model.num_speakers is not None
        reconstructions = decode_clips(model, codes, source_ids if conditioned else None)
        results[name] = accuracies(classify(classifiers, reconstructions, args), digits, sources)
        results[name]["si_snr_db"] = mean_si_snr(clips, reconstructions)
        results[name]["level_db"] = level_db(clips, reconstructions)
        outputs[name] = {"codes": codes, "reconstructions": reconstructions}
        if not conditioned:
            continue
        # Every test clip decoded as each of the other speakers.
        pairs = [(i, t) for i in range(len(clips)) for t in range(len(speakers)) if t != source_ids[i]]
        converted = decode_clips(model, [codes[i] for i, _ in pairs], [t for _, t in pairs])
        predicted = classify(classifiers, converted, args)
        results["conversion"] = {
            "clips": len(pairs),
            "target_speaker": float(np.mean(predicted["speaker"] == np.array([speakers[t] for _, t in pairs]))),
            "source_speaker": float(np.mean(predicted["speaker"] == np.array([sources[i] for i, _ in pairs]))),
            "digit": float(np.mean(predicted["digit"] == np.array([digits[i] for i, _ in pairs]))),
            "digit_drop_points": 100.0
            * (results[name]["digit"] - float(np.mean(predicted["digit"] == np.array([digits[i] for i, _ in pairs])))),
        }
        outputs["conversion"] = dict(zip(pairs, converted))
    return results, outputs


def write_examples(directory, test, outputs, speakers):
    """4 test clips (4 source speakers, 4 digits): source, reconstruction and conversion to the next speaker."""
    clips, labels = test
    written, used = [], set()
    for i, (digit, source) in enumerate(zip(labels["digit"], labels["speaker"])):
        # Under 1.75 s: each 16-bit file stays under 30 KB.
        if len(written) == 12 or source in used or digit in used or len(clips[i]) > 14000:
            continue
        used |= {digit, source}
        target = (speakers.index(source) + 1) % len(speakers)
        stem = f"{digit}_{source}"
        waves = {
            f"{stem}_source.wav": clips[i][: len(outputs["conditioned"]["reconstructions"][i])],
            f"{stem}_reconstruction.wav": outputs["conditioned"]["reconstructions"][i],
            f"{stem}_as_{speakers[target]}.wav": outputs["conversion"][(i, target)],
        }
        for name, wave in waves.items():
            write_wav(Path(directory) / name, wave, RATE)
            written.append(name)
    return written


# ------------------------------------------------------------------ main
def run(args):
    start = time.perf_counter()
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    # Every clip is evaluated, also those shorter than the training crop.
    bundle, train, test = probes.load(args, clip_crop=min(args.crop, SHORTEST_CLIP))
    speakers = sorted(set(train[1]["speaker"]))
    hop = math.prod(probes.strides_of(args))
    timings = {}
    options = dict(reconstruction_loss=args.loss)
    tick = time.perf_counter()
    models = {
        "conditioned": probes.train_vqvae(
            bundle,
            args,
            data=with_speaker_ids(bundle, speakers),
            num_speakers=len(speakers),
            speaker_dim=args.speaker_dim,
            speaker_conditioning=args.conditioning,
            **options,
        )
    }
    timings["conditioned_training"] = time.perf_counter() - tick
    if not args.no_baseline:
        tick = time.perf_counter()
        models["unconditioned"] = probes.train_vqvae(bundle, args, **options)
        timings["unconditioned_training"] = time.perf_counter() - tick
    tick = time.perf_counter()
    classifiers = train_classifiers(train, args)
    results, outputs = evaluate(models, classifiers, test, speakers, args)
    timings["classifiers_and_conversion"] = time.perf_counter() - tick
    probe_results = None
    if not args.no_baseline:
        tick = time.perf_counter()
        encoders = {
            "vq_codes": code_encoder(models["unconditioned"]),
            "vq_codes_conditioned": code_encoder(models["conditioned"]),
        }
        probe_results = probes.run_probes(encoders, train, test, hop, args)
        timings["probes"] = time.perf_counter() - tick
    examples = write_examples(args.examples, test, outputs, speakers) if args.examples else []
    return {
        "data": bundle.description,
        "split": f"test: takes 0-{args.test_takes - 1} ({len(test[0])} clips); train: the rest ({len(train[0])})",
        "speakers": speakers,
        "frames_per_second": RATE / hop,
        "bits_per_second": RATE / hop * math.log2(args.num_codes),
        "chance": {"digit": 0.1, "speaker": 1.0 / len(speakers)},
        "classifiers": results,
        "probes": probe_results,
        "examples": examples,
        "timings_seconds": timings | {"total": time.perf_counter() - start},
    }


def main(argv=None):
    args = parse_args(argv)
    results = {"command": " ".join(["python"] + sys.argv), "settings": {k: str(v) for k, v in vars(args).items()}}
    results |= run(args)
    c = results["classifiers"]
    print(f"{results['frames_per_second']:.1f} code frames/s, {results['bits_per_second']:.0f} bits/s")
    print(f"{'clips':16s} {'digit':>7s} {'speaker':>8s}  SI-SNR")
    for name in ("real", "unconditioned", "conditioned"):
        if name in c:
            print(
                f"{name:16s} {c[name]['digit']:7.1%} {c[name]['speaker']:8.1%}  "
                f"{c[name].get('si_snr_db', math.nan):.2f}"
            )
    v = c["conversion"]
    print(
        f"conversion: target speaker {v['target_speaker']:.1%}, source speaker {v['source_speaker']:.1%}, "
        f"digit {v['digit']:.1%} ({v['digit_drop_points']:+.1f} points below the conditioned reconstructions)"
    )
    if results["probes"]:
        p = results["probes"]
        print(
            f"speaker probe on codes: unconditioned {p['vq_codes']['speaker']:.1%}, "
            f"conditioned {p['vq_codes_conditioned']['speaker']:.1%}; digit probe "
            f"{p['vq_codes']['digit']:.1%} / {p['vq_codes_conditioned']['digit']:.1%}"
        )
    print(f"wall {results['timings_seconds']['total']:.0f} s")
    atomic.write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

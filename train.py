"""Trains a VQ-VAE, then exports it; or trains a prior over its codes.

    python train.py                                   # default: photos, ~10 min on 2 CPU cores
    python train.py --workdir=runs/mnist --dataset=mnist:../shared/data/mnist --epochs=20
    python train.py --stage=prior --workdir=runs/mnist --prior=pixelcnn --prior_conditional
    python train.py --workdir=runs/speech --dataset=audio:../shared/data/speech/ljspeech16k \
        --validation_list=ljspeech16k --crop_length=8000 --audio_strides=2,4,5,8   # a speech model
    python train.py --stage=prior --workdir=runs/speech --prior=transformer   # tokens of speech

The prior stage reads the VQ-VAE of --workdir (model.keras, config.json) and
writes WORKDIR/prior/ (prior.keras, prior_metrics.json, samples.png, or for
a speech run samples/prior_sample_k.wav); sample more with
`python -m vqvae_tf.training.sample`.

Outputs go to --workdir (see vqvae_tf/training/loop.py). Run the same command again
after an interruption to resume; --overwrite starts afresh. On resume only
--epochs, --max_minutes, --validation_steps, --strategy, --jit_compile, the export flags,
--num_samples and --keras_verbose may change (raising --epochs of a cosine run
stretches the schedule over the new total); anything else is refused. Bad
input exits with code 2 and a one-line message; a NaN loss exits with code 3.
"""

import sys

from absl import app, flags, logging

from vqvae_tf.training import config as cfg

_DEFAULTS = cfg.TrainConfig()

flags.DEFINE_enum(
    "stage",
    "vqvae",
    ["vqvae", "prior"],
    "vqvae: train (and export) the VQ-VAE; prior: train a prior on the codes of --workdir's VQ-VAE.",
)
flags.DEFINE_string("workdir", "runs/default", "Directory of the run's outputs (resumed if it holds one).")
flags.DEFINE_enum(
    "prior",
    "auto",
    ["auto", "pixelcnn", "transformer"],
    "Prior model (--stage=prior); auto: pixelcnn for image runs, transformer for speech runs (their tokens are "
    "sequences; the PixelCNN is 2-D).",
)
flags.DEFINE_string(
    "prior_dir", None, "Output directory of --stage=prior (default: WORKDIR/prior; the run itself is only read)."
)
flags.DEFINE_bool("prior_conditional", False, "Class-conditional prior (labelled data, --stage=prior).")
flags.DEFINE_integer("prior_steps", 2000, "Prior training steps (--stage=prior).", lower_bound=1)
flags.DEFINE_integer("prior_layers", 4, "Gated layers / Transformer blocks (--stage=prior).", lower_bound=1)
flags.DEFINE_float(
    "prior_max_minutes", 0.0, "Stop the prior's training after this many minutes; 0 = no limit.", lower_bound=0.0
)
flags.DEFINE_integer("prior_epochs", 1, "Validation passes over --prior_steps (--stage=prior).", lower_bound=1)
flags.DEFINE_integer("prior_embed_dim", 128, "Transformer width (--stage=prior).", lower_bound=1)
flags.DEFINE_float(
    "prior_learning_rate", 3e-4, "Adam learning rate of the prior (--stage=prior).", lower_bound=1e-9, upper_bound=1.0
)
flags.DEFINE_float(
    "prior_dropout", 0.0, "Transformer residual dropout (--stage=prior).", lower_bound=0.0, upper_bound=0.9
)
flags.DEFINE_integer(
    "prior_train_batches",
    None,
    "Batches of the run's training pipeline to extract codes from (--stage=prior); unset: one pass over the "
    "training images when their number is known, else 64 batches; speech: 64 random crops per training clip.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "prior_stages",
    None,
    "Model only the first N codes of each position of a residual VQ-VAE (--stage=prior); 1 = the coarse stage, "
    "the codec's stage-0 prior (finer stages under static tables); unset: every stage.",
    lower_bound=1,
)
flags.DEFINE_bool("overwrite", False, "Delete the outputs of a previous run in --workdir first.")
flags.DEFINE_string(
    "dataset",
    _DEFAULTS.dataset,
    "photos | digits | mnist:DIR | folder:DIR | npz:FILE | npy:FILE | tfrecord:GLOB | tfds:NAME[:SPLIT] | "
    "audio:DIR (WAV files: a rank-1 waveform model).",
)
flags.DEFINE_string(
    "validation_dataset",
    _DEFAULTS.validation_dataset,
    "folder:DIR: validate on the centre crops of its images instead of a split of --dataset "
    "(a folder --dataset then trains on all of its files).",
)
flags.DEFINE_bool(
    "augment",
    _DEFAULTS.augment,
    "Random rotations, reflections, hue and saturation of the "
    "training crops (unset: on for photos, off for other datasets).",
)
flags.DEFINE_integer(
    "image_size", _DEFAULTS.image_size, "Side of the square training images (not for audio).", lower_bound=4
)
flags.DEFINE_integer(
    "sample_rate",
    _DEFAULTS.sample_rate,
    "Audio: the model's sample rate in Hz; WAV files are resampled to it.",
    lower_bound=8000,
    upper_bound=48000,
)
flags.DEFINE_integer(
    "crop_length",
    _DEFAULTS.crop_length,
    "Audio: training crop in samples (a multiple of --downsample; shorter clips are skipped).",
    lower_bound=16,
)
flags.DEFINE_string(
    "validation_list",
    None,
    "Audio: file naming the validation clips, one per line, or a shipped list's name (ljspeech16k); "
    "unset: a hash-chosen fifth of the clips.",
)
flags.DEFINE_string("label_pattern", None, "Audio: regular expression giving each clip's class from its file name.")
flags.DEFINE_enum(
    "reconstruction_loss",
    _DEFAULTS.reconstruction_loss,
    cfg.RECONSTRUCTION_LOSS_CHOICES,
    "mse: squared error / data variance; stft: plus a multi-resolution STFT loss (audio); "
    "stft_mel: plus a log-mel loss too (audio); auto: mse for images, "
    f"{cfg.AUDIO_AUTO_LOSS} for audio.",
)
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Epochs (may be raised to continue a finished run).", lower_bound=1)
flags.DEFINE_float(
    "max_minutes",
    _DEFAULTS.max_minutes,
    "Stop training after this many minutes (mid-epoch; that epoch still validates); 0 = no limit.",
    lower_bound=0.0,
)
flags.DEFINE_integer("steps_per_epoch", _DEFAULTS.steps_per_epoch, "Training steps per epoch.", lower_bound=1)
flags.DEFINE_integer(
    "validation_steps",
    _DEFAULTS.validation_steps,
    "Validation batches per epoch; 0 = the whole validation set.",
    lower_bound=0,
)
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Global batch size (all replicas).", lower_bound=1)
flags.DEFINE_float(
    "learning_rate", _DEFAULTS.learning_rate, "Peak Adam learning rate.", lower_bound=1e-9, upper_bound=1.0
)
flags.DEFINE_enum("lr_schedule", _DEFAULTS.lr_schedule, cfg.LR_SCHEDULES, "Learning-rate schedule.")
flags.DEFINE_integer("warmup_steps", _DEFAULTS.warmup_steps, "Linear warmup steps (cosine).", lower_bound=0)
flags.DEFINE_enum(
    "quantizer",
    _DEFAULTS.quantizer,
    cfg.QUANTIZERS,
    "ema: EMA codebook; vq: trained codebook; residual: EMA stages; fsq: finite scalar "
    "quantization; gumbel: Gumbel-softmax.",
)
flags.DEFINE_integer("num_stages", _DEFAULTS.num_stages, "Residual stages (quantizer=residual).", lower_bound=1)
flags.DEFINE_float(
    "quantizer_dropout",
    _DEFAULTS.quantizer_dropout,
    "Probability of training on a random prefix of the stages (quantizer=residual).",
    lower_bound=0.0,
    upper_bound=0.999,
)
flags.DEFINE_float("commitment_cost", _DEFAULTS.commitment_cost, "Commitment loss weight beta.", lower_bound=0.0)
flags.DEFINE_float("decay", _DEFAULTS.decay, "EMA decay (quantizer=ema).", lower_bound=0.0, upper_bound=0.9999)
flags.DEFINE_bool("kmeans_init", _DEFAULTS.kmeans_init, "Initialise the codebook by k-means.")
flags.DEFINE_float(
    "dead_code_threshold",
    _DEFAULTS.dead_code_threshold,
    "Restart codes used less than this often per step (0 = never).",
    lower_bound=0.0,
)
flags.DEFINE_bool("l2_normalize", _DEFAULTS.l2_normalize, "Cosine-similarity codes.")
flags.DEFINE_integer(
    "lookup_dim",
    _DEFAULTS.lookup_dim,
    "Search the codebook in a learned projection of this many dimensions "
    "(0 or >= --code_dim: in the code space itself).",
    lower_bound=0,
)
flags.DEFINE_integer("num_codes", _DEFAULTS.num_codes, "Codebook size K.", lower_bound=2, upper_bound=1 << 20)
flags.DEFINE_integer("code_dim", _DEFAULTS.code_dim, "Code vector size D.", lower_bound=1)
flags.DEFINE_list(
    "audio_strides",
    None,
    "Audio: strides of the speech network, e.g. 2,4,5,8 (a 320-sample hop: 50 code frames/s at 16 kHz); "
    "unset: the paper's network with --downsample.",
)
flags.DEFINE_bool("causal", _DEFAULTS.causal, "With --audio_strides: a causal (streamable) network.")
flags.DEFINE_integer(
    "audio_frame_length",
    _DEFAULTS.audio_frame_length,
    "With --audio_strides: samples per frame of the speech network's first and last layers "
    "(the hop is this times the strides' product; 1: those layers run at the sample rate).",
    lower_bound=1,
)
flags.DEFINE_enum(
    "downsample",
    str(_DEFAULTS.downsample),
    [str(d) for d in cfg.DOWNSAMPLE],
    "Spatial reduction from image to code map.",
)
flags.DEFINE_integer("hidden_units", _DEFAULTS.hidden_units, "Channels of the convolutions.", lower_bound=1)
flags.DEFINE_integer("residual_units", _DEFAULTS.residual_units, "Channels inside residual blocks.", lower_bound=1)
flags.DEFINE_integer("num_residual_blocks", _DEFAULTS.num_residual_blocks, "Residual blocks.", lower_bound=0)
flags.DEFINE_enum("strategy", _DEFAULTS.strategy, cfg.STRATEGIES, "tf.distribute strategy.")
flags.DEFINE_enum(
    "mixed_precision",
    _DEFAULTS.mixed_precision,
    cfg.MIXED_PRECISION,
    "auto: bfloat16 on TPU and on CPUs with bfloat16 instructions, float16 on GPU.",
)
flags.DEFINE_bool("jit_compile", _DEFAULTS.jit_compile, "XLA-compile the train step (slower on CPU).")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of weights, data order and quantizer.", lower_bound=0)
flags.DEFINE_bool("export", _DEFAULTS.export, "Export the final model to WORKDIR/export.")
flags.DEFINE_multi_enum(
    "export_formats", list(_DEFAULTS.export_formats), cfg.EXPORT_FORMATS, "Export formats (repeat the flag)."
)
flags.DEFINE_multi_enum(
    "export_quantizations",
    list(_DEFAULTS.export_quantizations),
    cfg.EXPORT_QUANTIZATIONS,
    "TFLite variants (repeat the flag); int8 is calibrated on training images.",
)
flags.DEFINE_integer(
    "num_samples", _DEFAULTS.num_samples, "Images in the sample grids (audio: clips).", lower_bound=1, upper_bound=64
)

flags.DEFINE_integer(
    "keras_verbose",
    _DEFAULTS.verbose,
    "Keras fit output: 1 progress bar, 2 a line per epoch, 0 none.",
    lower_bound=0,
    upper_bound=2,
)

flags.register_multi_flags_validator(
    ["image_size", "downsample"],
    lambda f: f["image_size"] % int(f["downsample"]) == 0,
    message="--image_size must be a multiple of --downsample.",
)
flags.register_multi_flags_validator(
    ["learning_rate", "lr_schedule", "warmup_steps", "epochs", "steps_per_epoch"],
    lambda f: f["lr_schedule"] != "cosine" or f["warmup_steps"] < f["epochs"] * f["steps_per_epoch"],
    message="--warmup_steps must be smaller than --epochs x --steps_per_epoch.",
)

FLAGS = flags.FLAGS

EXIT_BAD_INPUT = 2
EXIT_NAN = 3


def config_from_flags():
    # Config fields are flags of the same name, except `verbose` (absl owns --verbosity/-v).
    renamed = {"verbose": "keras_verbose"}
    fields = {name: FLAGS[renamed.get(name, name)].value for name in cfg.TrainConfig.__dataclass_fields__}
    fields["downsample"] = int(fields["downsample"])
    if fields["audio_strides"] is not None:
        try:
            fields["audio_strides"] = tuple(int(s) for s in fields["audio_strides"])
        except ValueError:
            raise cfg.ConfigError(
                f"--audio_strides must be integers such as 2,4,5,8; received {','.join(FLAGS.audio_strides)}."
            ) from None
    audio = fields["dataset"].partition(":")[0] == cfg.AUDIO_SCHEME
    if fields["audio_strides"] is not None and FLAGS["downsample"].present:
        raise cfg.ConfigError("--downsample does not apply with --audio_strides (the hop is the strides' product).")
    if audio and fields["audio_strides"] is None and FLAGS["causal"].present:
        raise cfg.ConfigError("--causal applies with --audio_strides (the speech network).")
    # Flags of the other kind of data are refused, not silently ignored.
    audio_flags = ["sample_rate", "crop_length", "validation_list", "label_pattern", "audio_strides", "causal"]
    audio_flags.append("audio_frame_length")
    misplaced = ["image_size"] if audio else audio_flags
    given = [f"--{name}" for name in misplaced if FLAGS[name].present]
    if given:
        kind = "image datasets" if audio else "audio datasets (audio:DIR)"
        raise cfg.ConfigError(f"{', '.join(given)} applies to {kind}, not to --dataset={fields['dataset']}.")
    return cfg.TrainConfig(**fields)


def run(make_config, workdir, overwrite=False):
    """Trains and returns the exit code; library errors become one log line."""
    from vqvae_tf.training import loop as training
    from vqvae_tf.training.callbacks import NonFiniteLossError

    try:
        result = training.train_and_evaluate(make_config(), workdir, overwrite=overwrite)
    except NonFiniteLossError as error:
        logging.error("train.py: %s", error)
        return EXIT_NAN
    except (ValueError, OSError) as error:  # DatasetError, StrategyError, ExportError, ConfigError
        logging.error("train.py: %s", " ".join(str(error).split()))
        return EXIT_BAD_INPUT
    final = result["final"]
    logging.info(
        "%s after %d epochs (%d in this run): val_loss %.4f, val_psnr %.2f dB; outputs in %s",
        result["status"],
        result["initial_epoch"] + result["epochs_run"],
        result["epochs_run"],
        final.get("val_loss", float("nan")),
        final.get("val_psnr", float("nan")),
        result["workdir"],
    )
    return 0


def _prior_kind(workdir):
    """--prior, with auto resolved by the run's config.json: transformer for a speech run, else pixelcnn."""
    from pathlib import Path

    if FLAGS.prior != "auto":
        return FLAGS.prior
    config_path = Path(workdir) / "config.json"
    audio = config_path.exists() and cfg.TrainConfig.load(config_path).is_audio
    return "transformer" if audio else "pixelcnn"


def run_prior(workdir):
    """Trains a prior on the codes of the VQ-VAE in `workdir`; returns the exit code."""
    from pathlib import Path

    from vqvae_tf.training.prior_training import PriorConfig, train_prior

    try:
        config = PriorConfig(
            kind=_prior_kind(workdir),
            conditional=FLAGS.prior_conditional,
            steps=FLAGS.prior_steps,
            epochs=FLAGS.prior_epochs,
            num_layers=FLAGS.prior_layers,
            embed_dim=FLAGS.prior_embed_dim,
            learning_rate=FLAGS.prior_learning_rate,
            dropout=FLAGS.prior_dropout,
            batch_size=FLAGS.batch_size,
            seed=FLAGS.seed,
            strategy=FLAGS.strategy,
            verbose=FLAGS.keras_verbose,
            train_batches=FLAGS.prior_train_batches,
            stages=FLAGS.prior_stages,
        )
        prior_dir = Path(FLAGS.prior_dir or Path(workdir) / "prior")
        metrics = train_prior(config, workdir, prior_dir, max_seconds=60 * FLAGS.prior_max_minutes or None)
    except (ValueError, OSError) as error:
        logging.error("train.py: %s", " ".join(str(error).split()))
        return EXIT_BAD_INPUT
    if metrics["audio"]:
        logging.info(
            "prior: held-out speech %.3f bits/token (unigram %.3f): %.2f kbps (unigram %.2f, packed codes %.2f); "
            "outputs in %s",
            metrics["bits_per_code"],
            metrics["unigram_bits_per_code"],
            metrics["prior_kbps"],
            metrics["unigram_kbps"],
            metrics["packed_kbps"],
            prior_dir,
        )
        return 0
    logging.info(
        "prior: test NLL %.3f bits/code (unigram %.3f), VQ-VAE + prior bound %.3f bits/dim; outputs in %s",
        metrics["bits_per_code"],
        metrics["unigram_bits_per_code"],
        metrics["bits_per_dim"],
        prior_dir,
    )
    return 0


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.stage == "prior":
        sys.exit(run_prior(FLAGS.workdir))
    sys.exit(run(config_from_flags, FLAGS.workdir, FLAGS.overwrite))


if __name__ == "__main__":
    app.run(main)

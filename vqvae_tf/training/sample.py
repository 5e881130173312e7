"""Draws samples from a trained prior and decodes them with the VQ-VAE.

    python -m vqvae_tf.sample --workdir=RUN --prior=RUN/prior --num=64 \\
        --temperature=1.0 --top_k=0 --labels=0,1,2 --out=grid.png

`--workdir` holds the VQ-VAE (`model.keras`), `--prior` the prior run of
`train.py --stage=prior` (`prior.keras`; default `WORKDIR/prior`). A
class-conditional prior draws one row per label (`--labels`, default every
class) of `ceil(num / rows)` samples; an unconditional one a near-square grid
of `--num` samples. For a speech run `--out` is a directory, which gets
`prior_sample_k.wav` files instead of a grid. Bad input exits with code 2
and a one-line message.

The flags are defined in `main()`, not at import: importing this module
defines nothing.
"""

import math
import sys


def _define_flags():
    from absl import flags

    flags.DEFINE_string("workdir", None, "Training run holding the VQ-VAE's model.keras.", required=True)
    flags.DEFINE_string("prior", None, "Directory holding prior.keras (default: WORKDIR/prior).")
    flags.DEFINE_integer("num", 64, "Number of samples.", lower_bound=1, upper_bound=4096)
    flags.DEFINE_float("temperature", 1.0, "Sampling temperature; 0 = greedy.", lower_bound=0.0)
    flags.DEFINE_integer("top_k", 0, "Sample among the k most likely codes; 0 = all.", lower_bound=0)
    flags.DEFINE_list("labels", [], "Class ids, one row each (conditional priors); default: all classes.")
    flags.DEFINE_integer("seed", 0, "Sampling seed.", lower_bound=0)
    flags.DEFINE_string("out", "samples.png", "Output PNG (a speech run: a directory for WAV files).")
    return flags.FLAGS


def _grid_rows(num):
    """Largest divisor of `num` not above its square root (8 for 64)."""
    return max(d for d in range(1, math.isqrt(num) + 1) if num % d == 0)


def _parse_labels(values):
    try:
        return [int(v) for v in values]
    except ValueError:
        raise ValueError(f"--labels must be comma-separated integers; received {','.join(values)!r}.") from None


def _sample_rate(vqvae, workdir):
    """A speech VQ-VAE's rate: its own (the speech network stores it), else its run's config.json."""
    from vqvae_tf.training.config import TrainConfig

    if vqvae.sample_rate is not None:
        return vqvae.sample_rate
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(f"{workdir / 'config.json'} does not exist: it gives the speech run's sample rate.")
    return TrainConfig.load(workdir / "config.json").sample_rate


def run(workdir, prior_dir, num, temperature, top_k, labels, seed, out):
    """The command without flags: returns the written path."""
    from pathlib import Path

    import vqvae_tf  # noqa: F401  (registers the VQ-VAE classes)
    from vqvae_tf.priors.loading import load_prior
    from vqvae_tf.training.prior_samples import sample_images
    from vqvae_tf.utils.image_grid import save_image_grid
    from vqvae_tf.utils.keras_files import load_keras_file

    model_path = Path(workdir) / "model.keras"
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path} does not exist: pass the workdir of a trained VQ-VAE.")
    prior = load_prior(Path(prior_dir or Path(workdir) / "prior") / "prior.keras")
    vqvae = load_keras_file(model_path, what="VQ-VAE")
    if top_k > prior.num_codes:
        raise ValueError(f"--top_k must be at most num_codes={prior.num_codes}; received {top_k}.")
    speech = getattr(vqvae, "rank", 2) == 1
    if speech and Path(out).suffix:
        raise ValueError(f"a speech run's samples are WAV files: --out must be a directory; received {out}.")
    if prior.num_classes:
        labels = labels or list(range(prior.num_classes))
        bad = [v for v in labels if not 0 <= v < prior.num_classes]
        if bad:
            raise ValueError(f"--labels must be in [0, {prior.num_classes}); received {bad}.")
        images, rows = sample_images(
            vqvae, prior, -(-num // len(labels)), labels=labels, temperature=temperature, top_k=top_k, seed=seed
        )
    else:
        if labels:
            raise ValueError("--labels given, but this prior is unconditional.")
        images, _ = sample_images(vqvae, prior, num, temperature=temperature, top_k=top_k, seed=seed)
        rows = _grid_rows(num)
    if speech:
        from vqvae_tf.training.speech_prior import write_sample_wavs

        write_sample_wavs(out, images, _sample_rate(vqvae, Path(workdir)))
        return Path(out)
    return save_image_grid(out, images, rows)


def main(argv=None):
    from absl import app, flags

    flag_values = _define_flags()

    def parse(args):
        try:
            return flag_values(args)
        except flags.Error as error:
            sys.stderr.write(f"error: {error}\n")
            sys.exit(2)

    def command(_):
        try:
            path = run(
                flag_values.workdir,
                flag_values.prior,
                flag_values.num,
                flag_values.temperature,
                flag_values.top_k,
                _parse_labels(flag_values.labels),
                flag_values.seed,
                flag_values.out,
            )
        except (ValueError, TypeError, FileNotFoundError, OSError) as error:
            sys.stderr.write(f"error: {error}\n")
            sys.exit(2)
        sys.stdout.write(f"wrote {path}\n")

    app.run(command, argv=argv, flags_parser=parse)


if __name__ == "__main__":
    main()

"""Stage two of the paper: fit an autoregressive prior to a VQ-VAE's codes.

`train_prior(config, vqvae_workdir, workdir)` is the tested core of
`train.py --stage=prior`. It loads the trained VQ-VAE of a training run
(`vqvae_workdir/model.keras` and `config.json`), runs it once over the data
to cache the code maps (`vqvae_tf.training.code_files`), fits a
`GatedPixelCNN` or `TransformerPrior` with `model.fit` under a
`tf.distribute` strategy (`vqvae_tf.training.distribute.fit`), evaluates it
against a unigram baseline and the VQ-VAE's own likelihood
(`vqvae_tf.training.decoder_likelihood`) and writes, atomically:

    workdir/prior_config.json       the `PriorConfig` (JSON)
    workdir/codes_train.npz         cached training code maps (+ labels)
    workdir/codes_validation.npz    cached validation code maps (+ labels)
    workdir/prior.keras             the trained prior
    workdir/prior_metrics.json      test NLL, bits/code, bits/dim bound,
                                    unigram baseline
    workdir/samples.png             samples decoded by the VQ-VAE (one row
                                    per class for a conditional prior)

On a speech run (an `audio:` dataset, a rank-1 VQ-VAE) the prior models
segments of the run's crop length as 1-row token maps and must be the
Transformer (`vqvae_tf.training.speech_prior`); the metrics add the
prior-coded bit rate of held-out speech against the packed rate, and the
samples are `workdir/samples/prior_sample_k.wav` instead of the PNG.

The names the old `vqvae_tf.prior_training` module exported all import from
here.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from vqvae_tf.training.code_files import (
    DEFAULT_TRAIN_BATCHES,
    code_dataset,
    code_fingerprint,
    extract_codes,
    extraction_batches,
    load_codes,
    prior_code_maps,
)
from vqvae_tf.training.config import ConfigError
from vqvae_tf.training.decoder_likelihood import fit_decoder_scale, reconstruction_nats
from vqvae_tf.training.prior_config import PRIOR_KINDS, PriorConfig
from vqvae_tf.training.prior_samples import sample_images
from vqvae_tf.training.speech_prior import (
    audio_extraction_batches,
    frame_unigram_nats,
    speech_rates,
    stage_nats,
    validation_segments,
    write_sample_wavs,
)
from vqvae_tf.utils import atomic
from vqvae_tf.utils.image_grid import save_image_grid
from vqvae_tf.utils.keras_files import load_keras_file

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TRAIN_BATCHES",
    "PRIOR_KINDS",
    "PriorConfig",
    "build_prior",
    "extract_codes",
    "fit_decoder_scale",
    "load_codes",
    "reconstruction_nats",
    "sample_images",
    "save_image_grid",
    "train_prior",
]


def build_prior(config, num_codes, map_shape, num_classes=0):
    """A compiled prior for `config` (call inside `strategy.scope()`)."""
    import keras

    from vqvae_tf.priors.pixelcnn import GatedPixelCNN
    from vqvae_tf.priors.transformer import TransformerPrior

    if config.kind == "pixelcnn":
        prior = GatedPixelCNN(
            num_codes,
            num_classes=num_classes,
            channels=config.channels,
            num_layers=config.num_layers,
            kernel_size=config.kernel_size,
            map_shape=map_shape,
        )
    else:
        prior = TransformerPrior(
            num_codes,
            map_shape,
            num_classes=num_classes,
            embed_dim=config.embed_dim,
            num_heads=config.num_heads,
            num_layers=config.num_layers,
            dropout=config.dropout,
        )
    prior.compile(keras.optimizers.Adam(config.learning_rate))
    # Build now, under the caller's strategy scope, so the variables are mirrored.
    prior(np.zeros((1,) + tuple(map_shape), np.int32), np.zeros((1,), np.int32) if num_classes else None)
    return prior


# ----------------------------------------------------------------------------
# The steps of `train_prior`, in order


def _vqvae_model_path(config, vqvae_workdir):
    """Checks the config and returns the run's `model.keras`."""
    if not isinstance(config, PriorConfig):
        raise TypeError(f"config must be a PriorConfig; received {type(config).__name__}.")
    config.validate()
    model_path = Path(vqvae_workdir) / "model.keras"
    if not model_path.exists():
        raise FileNotFoundError(f"{model_path} does not exist: train the VQ-VAE first (train.py).")
    return model_path


def _saved_config(vqvae_workdir):
    """The run's `TrainConfig` from its config.json, or None without one."""
    from vqvae_tf.training.config import TrainConfig

    config_path = Path(vqvae_workdir) / "config.json"
    return TrainConfig.load(config_path) if config_path.exists() else None


def _check_speech_prior(config, vqvae_workdir):
    if config.kind != "transformer":
        raise ConfigError(
            f"{vqvae_workdir} is a speech run, whose tokens are sequences (1-row maps): its prior must be "
            f"kind='transformer' (train.py --prior=transformer); received kind={config.kind!r}, a 2-D model."
        )


def _vqvae_settings(saved, vqvae_workdir, dataset, image_size):
    """(dataset spec, image size, batch size, seed) from the run's config.json and overrides."""
    config_path = Path(vqvae_workdir) / "config.json"
    if saved is not None:
        return (dataset or saved.dataset, image_size or saved.image_size, saved.batch_size, saved.seed)
    if dataset is None or image_size is None:
        raise FileNotFoundError(
            f"{config_path} does not exist: pass dataset= and image_size= to say which data the VQ-VAE was trained on."
        )
    return dataset, image_size, 64, 0


def _fit_prior(config, strategy, maps, max_seconds=None):
    """Builds the prior under `strategy` and fits it to the code maps; returns `(prior, history, steps run)`."""
    import keras

    from vqvae_tf.training import distribute
    from vqvae_tf.training.callbacks import TimeLimit

    limit = TimeLimit(max_seconds) if max_seconds else None

    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        prior = build_prior(config, maps.vocabulary, maps.map_shape, maps.num_classes)
    history = distribute.fit(
        prior,
        code_dataset(maps.train, maps.train_labels, config.batch_size, config.seed, True),
        strategy=strategy,
        epochs=config.epochs,
        steps_per_epoch=config.steps // config.epochs,
        validation_data=code_dataset(maps.test, maps.test_labels, config.batch_size, config.seed, False),
        verbose=config.verbose,
        callbacks=[limit] if limit else [],
    )
    steps = limit.steps if limit else config.steps // config.epochs * config.epochs
    return prior, history, steps


def _evaluation_batch(maps):
    """Maps per forward pass of the test NLL: logits of at most 2**24 floats (speech: S * K tokens, 150 a map)."""
    return max(1, min(256, 2**24 // (maps.map_shape[0] * maps.map_shape[1] * maps.vocabulary)))


def _nll_metrics(nll, unigram_nll):
    return {
        "nll_nats": nll,
        "bits_per_code": nll / math.log(2),
        "unigram_nll_nats": unigram_nll,
        "unigram_bits_per_code": unigram_nll / math.log(2),
        "nll_reduction_vs_unigram": 1.0 - nll / unigram_nll,
    }


def _speech_metrics(vqvae, prior, maps, sample_rate):
    """Test NLL of the prior and of the per-stage unigram, and the bit rates they code held-out speech at."""
    stages = stage_nats(prior, maps.test, maps.test_labels, maps.num_stages, _evaluation_batch(maps))
    unigram_stages = frame_unigram_nats(maps.train, maps.test, maps.vocabulary, maps.num_stages)
    metrics = _nll_metrics(float(stages.mean()), float(unigram_stages.mean()))
    rates = speech_rates(
        metrics["bits_per_code"],
        metrics["unigram_bits_per_code"],
        sample_rate,
        vqvae.downsample,
        vqvae.num_codes,
        maps.num_stages,
    )
    return {
        **metrics,
        **rates,
        "bits_per_stage": [float(v) for v in stages / math.log(2)],
        "unigram_bits_per_stage": [float(v) for v in unigram_stages / math.log(2)],
        "unigram": "per-stage code frequencies of the training segments, pooled over time",
    }


def _likelihood_metrics(vqvae, prior, maps, bundle, train_batches):
    """Test NLL of the prior and of the unigram baseline, and the VQ-VAE + prior bound in bits/dim."""
    from vqvae_tf.priors.likelihood import (
        bits_per_dim,
        nll_per_code,
        vqvae_bits_per_dim,
    )
    from vqvae_tf.priors.unigram import UnigramPrior

    nll = nll_per_code(prior, maps.test, maps.test_labels, batch_size=_evaluation_batch(maps))
    unigram = UnigramPrior(maps.vocabulary, maps.map_shape).fit(maps.train)
    unigram_nll = nll_per_code(unigram, maps.test, batch_size=_evaluation_batch(maps))
    scale = fit_decoder_scale(vqvae, bundle.train.take(min(train_batches, 8)))
    rec_nats, dims, mse = reconstruction_nats(vqvae, bundle.validation, scale)
    codes_per_map = maps.map_shape[0] * maps.map_shape[1]
    return {
        **_nll_metrics(nll, unigram_nll),
        "unigram": "per-position code frequencies of the training maps",
        "bits_per_dim": vqvae_bits_per_dim(rec_nats, nll * codes_per_map, dims),
        "prior_bits_per_dim": bits_per_dim(nll * codes_per_map, dims),
        "reconstruction_nats": rec_nats,
        "decoder_scale": scale,
        "likelihood": "discretized Gaussian over 256 levels (vqvae_tf.models.gaussian_vae)",
        "mse": mse,
    }


def _image_data(config, model_path, saved, vqvae_workdir, dataset, image_size):
    """`(bundle, train images, test images, cache fingerprint, train batches)` of an image run."""
    from vqvae_tf.data.datasets import make_datasets

    spec, size, image_batch, data_seed = _vqvae_settings(saved, vqvae_workdir, dataset, image_size)
    # No augmentation: the prior models the codes of the photos as they are,
    # and its training crops are extracted once, so augmenting them would
    # change the data, not add to it.
    bundle = make_datasets(
        spec, image_size=size, batch_size=image_batch, seed=data_seed, with_labels=config.conditional, augment=False
    )
    batches = extraction_batches(config.train_batches, bundle, image_batch)
    fingerprint = code_fingerprint(model_path, spec, size, image_batch, data_seed, batches)
    return bundle, bundle.train.take(batches), bundle.validation, fingerprint, batches


def _audio_data(config, model_path, saved, dataset):
    """The same for a speech run: its random training crops, and its held-out clips cut into crops."""
    from vqvae_tf.data.datasets import make_datasets

    spec = dataset or saved.dataset
    bundle = make_datasets(
        spec,
        batch_size=saved.batch_size,
        seed=saved.seed,
        with_labels=config.conditional,
        crop_length=saved.crop_length,
        sample_rate=saved.sample_rate,
        validation_list=saved.validation_list_path(),
        label_pattern=saved.label_pattern,
    )
    batches = audio_extraction_batches(config.train_batches, bundle.num_train, saved.batch_size)
    segment = f"{saved.crop_length} samples at {saved.sample_rate} Hz"
    fingerprint = code_fingerprint(model_path, spec, segment, saved.batch_size, saved.seed, batches)
    test = validation_segments(bundle.validation, saved.crop_length)
    return bundle, bundle.train.take(batches), test, fingerprint, batches


def train_prior(config, vqvae_workdir, workdir, *, dataset=None, image_size=None, max_seconds=None):
    """Trains a prior on the codes of the VQ-VAE in `vqvae_workdir`.

    Args:
        config: a `PriorConfig`.
        vqvae_workdir: a training run's workdir holding `model.keras` (and
            `config.json`, from which the dataset and image size are read;
            a speech run's needs its config.json).
        workdir: output directory (created), e.g. `vqvae_workdir / "prior"`.
        dataset: optional dataset spec overriding config.json's (required
            when there is no config.json).
        image_size: optional image size overriding config.json's (same;
            images only).
        max_seconds: optional wall-clock budget of the prior's training:
            it stops at the first step past it (`callbacks.TimeLimit`), and
            `steps_run` says how far it got. None (default): no limit.

    Returns:
        The metrics dict also written to `prior_metrics.json`: `nll_nats`
        (test NLL, nats per code), `bits_per_code`, `unigram_nll_nats` and
        `unigram_bits_per_code` (unigram baseline: per position for images,
        per stage for speech, as `unigram` says),
        `nll_reduction_vs_unigram` (fraction), `map_shape` (of the prior's
        maps), `num_codes` (of the VQ-VAE), `num_stages`, `num_train_maps`,
        `num_test_maps`, `steps_run`, `history` (per-epoch training logs) and
        `paths`;
        for images also `bits_per_dim` (the paper's VQ-VAE + prior bound on
        test images), `prior_bits_per_dim`, `reconstruction_nats`,
        `decoder_scale` and `mse`; for speech (`audio`: True) the
        `speech_rates` of `vqvae_tf.training.speech_prior` (`prior_kbps`,
        `unigram_kbps`, `packed_kbps`, ...) and `sample_rate`.

    Raises:
        FileNotFoundError: no `model.keras` (or no config.json and no
            dataset/image_size).
        ConfigError: bad config, or a PixelCNN asked for a speech run.
        vqvae_tf.data.datasets.DatasetError: e.g. `conditional=True` on data without
            labels.
    """

    import vqvae_tf  # noqa: F401  (registers the Keras classes for load_model)
    from vqvae_tf.training import distribute
    from vqvae_tf.utils.atomic import save_model

    model_path = _vqvae_model_path(config, vqvae_workdir)
    saved = _saved_config(vqvae_workdir)
    audio = saved is not None and saved.is_audio
    if audio:
        _check_speech_prior(config, vqvae_workdir)
        if image_size is not None:
            raise ConfigError(
                f"image_size applies to image runs; {vqvae_workdir} is a speech run (received {image_size})."
            )
    else:
        _vqvae_settings(saved, vqvae_workdir, dataset, image_size)  # fails early without a dataset
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config.save(workdir / "prior_config.json")

    strategy = distribute.make_strategy(config.strategy)
    distribute.check_global_batch(config.batch_size, strategy)
    vqvae = load_keras_file(model_path, what="VQ-VAE")
    if audio:
        bundle, train_data, test_data, fingerprint, train_batches = _audio_data(config, model_path, saved, dataset)
    else:
        bundle, train_data, test_data, fingerprint, train_batches = _image_data(
            config, model_path, saved, vqvae_workdir, dataset, image_size
        )
    num_classes = (bundle.num_classes or 0) if config.conditional else 0
    maps = prior_code_maps(vqvae, train_data, test_data, workdir, fingerprint, num_classes, config.stages)

    prior, history, steps_run = _fit_prior(config, strategy, maps, max_seconds)
    save_model(prior, workdir / "prior.keras")
    if audio:
        likelihoods = {**_speech_metrics(vqvae, prior, maps, saved.sample_rate), "sample_rate": saved.sample_rate}
    else:
        likelihoods = _likelihood_metrics(vqvae, prior, maps, bundle, train_batches)
    samples, rows = sample_images(
        vqvae, prior, config.num_samples, temperature=config.temperature, top_k=config.top_k, seed=config.seed
    )
    if audio:
        samples_path = [str(p) for p in write_sample_wavs(workdir / "samples", samples, saved.sample_rate)]
    else:
        samples_path = str(save_image_grid(workdir / "samples.png", samples, rows))

    metrics = {
        "kind": config.kind,
        "conditional": bool(num_classes),
        "audio": audio,
        **likelihoods,
        "map_shape": list(maps.map_shape),
        "num_codes": int(vqvae.num_codes),
        "num_stages": int(maps.num_stages),
        "num_train_maps": len(maps.train),
        "num_test_maps": len(maps.test),
        "steps_run": int(steps_run),
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
        "paths": {"prior": str(workdir / "prior.keras"), "samples": samples_path},
    }
    atomic.write_json(workdir / "prior_metrics.json", metrics, sort_keys=True)
    if audio:
        logger.info(
            "Prior %s: held-out speech %.3f bits/token (unigram %.3f), %.2f kbps (unigram %.2f, packed %.2f).",
            config.kind,
            metrics["bits_per_code"],
            metrics["unigram_bits_per_code"],
            metrics["prior_kbps"],
            metrics["unigram_kbps"],
            metrics["packed_kbps"],
        )
    else:
        logger.info(
            "Prior %s: test NLL %.3f bits/code (unigram %.3f), VQ-VAE bound %.3f bits/dim.",
            config.kind,
            metrics["bits_per_code"],
            metrics["unigram_bits_per_code"],
            metrics["bits_per_dim"],
        )
    return metrics

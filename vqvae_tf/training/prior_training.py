"""Stage two of the paper: fit an autoregressive prior to a VQ-VAE's codes.

`train_prior(config, vqvae_workdir, workdir)` is the tested core of
`train.py --stage=prior`. It loads the trained VQ-VAE of a training run
(`vqvae_workdir/model.keras` and `config.json`), runs it once over the data
to cache the code maps (`extract_codes`), fits a `GatedPixelCNN` or
`TransformerPrior` with `model.fit` under a `tf.distribute` strategy
(`vqvae_tf.training.distribute.fit`) and writes, atomically:

    workdir/prior_config.json       the `PriorConfig` (JSON)
    workdir/codes_train.npz         cached training code maps (+ labels)
    workdir/codes_validation.npz    cached validation code maps (+ labels)
    workdir/prior.keras             the trained prior
    workdir/prior_metrics.json      test NLL, bits/code, bits/dim bound,
                                    unigram baseline
    workdir/samples.png             samples decoded by the VQ-VAE (one row
                                    per class for a conditional prior)

The code caches are keyed by a fingerprint of `model.keras` and the data
settings, so a retrained VQ-VAE is never paired with stale codes. A
residual VQ-VAE's `(h, w, S)` code maps are modelled as `(h, w * S)` maps of
`S * K` tokens (`vqvae_tf.priors.stage_tokens`), coarse stage first at each position.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np

from vqvae_tf.utils import atomic
from vqvae_tf.utils.atomic import atomic_output
from vqvae_tf.training.config import STRATEGIES, ConfigError
from vqvae_tf.priors.stage_tokens import stages_to_tokens, tokens_to_stages

logger = logging.getLogger(__name__)

__all__ = [
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

PRIOR_KINDS = ("pixelcnn", "transformer")
# Image batches used for code extraction when the source does not say how
# many training images it has (random photo crops, streamed sources).
DEFAULT_TRAIN_BATCHES = 64
# Candidate decoder scales (in [0, 1] units) for the VQ-VAE likelihood.
_SCALE_GRID = np.geomspace(1e-3, 2.0, 64)


@dataclasses.dataclass
class PriorConfig:
    """Settings of one prior training run.

    Attributes:
        kind: "pixelcnn" (`GatedPixelCNN`) or "transformer"
            (`TransformerPrior`). Defaults to "pixelcnn".
        conditional: condition on class labels (the dataset must have
            them, e.g. MNIST). Defaults to False.
        channels: PixelCNN width. Defaults to 64.
        num_layers: gated layers / Transformer blocks. Defaults to 4.
        kernel_size: PixelCNN kernel. Defaults to 3.
        embed_dim: Transformer width. Defaults to 128.
        num_heads: Transformer heads. Defaults to 4.
        dropout: Transformer residual dropout. Defaults to 0.0.
        steps: total training steps. Defaults to 2000.
        epochs: `steps` are split into this many Keras epochs (one
            validation pass each). Defaults to 1.
        batch_size: global batch of code maps. Defaults to 64.
        learning_rate: Adam learning rate. Defaults to 3e-4.
        seed: weights, data order and sampling. Defaults to 0.
        strategy: a `vqvae_tf.training.distribute.make_strategy` name. Defaults to
            "auto".
        train_batches: image batches of the VQ-VAE's training pipeline to
            extract codes from; None = one pass over the training images
            when the source knows their number (mnist, digits, arrays),
            else `DEFAULT_TRAIN_BATCHES` (photos: random crops).
        num_samples: samples per row of the grid. Defaults to 8.
        temperature: sampling temperature of the grid. Defaults to 1.0.
        top_k: top-k of the grid's sampling, 0 = off. Defaults to 0.
        verbose: Keras `fit` verbosity. Defaults to 0.
    """

    kind: str = "pixelcnn"
    conditional: bool = False
    channels: int = 64
    num_layers: int = 4
    kernel_size: int = 3
    embed_dim: int = 128
    num_heads: int = 4
    dropout: float = 0.0
    steps: int = 2000
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 3e-4
    seed: int = 0
    strategy: str = "auto"
    train_batches: int | None = None
    num_samples: int = 8
    temperature: float = 1.0
    top_k: int = 0
    verbose: int = 0

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raises `ConfigError` naming the first bad field and its value."""
        if self.kind not in PRIOR_KINDS:
            raise ConfigError(f"kind must be one of {', '.join(PRIOR_KINDS)}; received {self.kind!r}.")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}; received {self.strategy!r}.")
        if not isinstance(self.conditional, bool):
            raise ConfigError(f"conditional must be a bool; received {self.conditional!r}.")
        for name, minimum in (("channels", 1), ("num_layers", 1), ("kernel_size", 3), ("embed_dim", 1),
                              ("num_heads", 1), ("steps", 1), ("epochs", 1), ("batch_size", 1),
                              ("seed", 0), ("num_samples", 1), ("top_k", 0), ("verbose", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{name} must be an integer >= {minimum}; received {value!r}.")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd; received {self.kernel_size}.")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads}).")
        if self.steps < self.epochs:
            raise ConfigError(f"steps ({self.steps}) must be >= epochs ({self.epochs}).")
        if self.train_batches is not None and (
            isinstance(self.train_batches, bool) or not isinstance(self.train_batches, int) or self.train_batches < 1
        ):
            raise ConfigError(f"train_batches must be None or an integer >= 1; received {self.train_batches!r}.")
        for name, low, high in (("learning_rate", 0.0, None), ("dropout", 0.0, 1.0), ("temperature", 0.0, None)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number; received {value!r}.")
            if value < low or (high is not None and value >= high) or (name == "learning_rate" and value == 0):
                raise ConfigError(f"{name} must be in [{low}, {high or 'inf'}) (learning_rate > 0); received {value!r}.")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown prior config fields {unknown}; known fields: {sorted(known)}.")
        return cls(**data)

    @classmethod
    def load(cls, path):
        """Reads a `prior_config.json` written by `save`."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path} is not valid JSON: {error}.") from None

    def save(self, path):
        """Writes the config as JSON, atomically."""
        atomic.write_json(path, self.to_dict(), sort_keys=True)


# ----------------------------------------------------------------------------
# Codes


def extract_codes(vqvae, dataset, path, *, fingerprint=""):
    """Runs `vqvae` once over `dataset` and caches the code maps in an NPZ file.

    Args:
        vqvae: a built `VQVAE` (anything with `codes(images)`).
        dataset: a FINITE iterable (e.g. `tf.data.Dataset.take(n)`) of image
            batches `(B, H, W, C)` or `(images, labels)` pairs.
        path: the `.npz` to write (atomically: temp file + `os.replace`).
        fingerprint: str stored with the codes (see `load_codes`).
            Defaults to "".

    Returns:
        `(codes, labels)`: int32 `(N, h, w)` and int32 `(N,)` (or None when
        the batches carry no labels, or labels are all -1).

    Raises:
        ValueError: the dataset yielded no images.
    """
    codes, labels = [], []
    for batch in dataset:
        images, batch_labels = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        codes.append(np.asarray(vqvae.codes(images), np.int32))
        if batch_labels is not None:
            labels.append(np.asarray(batch_labels, np.int32))
    if not codes:
        raise ValueError("extract_codes received an empty dataset; expected at least one batch of images.")
    codes = np.concatenate(codes)
    labels = np.concatenate(labels) if labels else None
    if labels is not None and (labels < 0).all():
        labels = None  # sources without labels yield -1
    arrays = {"codes": codes, "fingerprint": np.array(fingerprint)}
    if labels is not None:
        arrays["labels"] = labels
    path = Path(path)
    with atomic_output(path) as temp:
        with open(temp, "wb") as handle:
            np.savez(handle, **arrays)
    logger.info("Cached %d code maps of shape %s in %s.", len(codes), codes.shape[1:], path)
    return codes, labels


def load_codes(path, fingerprint=None):
    """Reads an `extract_codes` cache; None if missing or made for another fingerprint."""
    path = Path(path)
    if not path.exists():
        return None
    with np.load(path) as data:
        if fingerprint is not None and str(data["fingerprint"]) != fingerprint:
            return None
        return data["codes"], (data["labels"] if "labels" in data else None)


# ----------------------------------------------------------------------------
# The prior


def build_prior(config, num_codes, map_shape, num_classes=0):
    """A compiled prior for `config` (call inside `strategy.scope()`)."""
    import keras

    from vqvae_tf.priors.pixelcnn import GatedPixelCNN
    from vqvae_tf.priors.transformer import TransformerPrior

    if config.kind == "pixelcnn":
        prior = GatedPixelCNN(num_codes, num_classes=num_classes, channels=config.channels,
                              num_layers=config.num_layers, kernel_size=config.kernel_size,
                              map_shape=map_shape)
    else:
        prior = TransformerPrior(num_codes, map_shape, num_classes=num_classes, embed_dim=config.embed_dim,
                                 num_heads=config.num_heads, num_layers=config.num_layers,
                                 dropout=config.dropout)
    prior.compile(keras.optimizers.Adam(config.learning_rate))
    # Build now, under the caller's strategy scope, so the variables are mirrored.
    prior(np.zeros((1,) + tuple(map_shape), np.int32), np.zeros((1,), np.int32) if num_classes else None)
    return prior


def _code_dataset(codes, labels, batch_size, seed, train):
    import tensorflow as tf

    elements = codes if labels is None else (codes, labels)
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if train:
        dataset = dataset.shuffle(len(codes), seed=seed, reshuffle_each_iteration=True).repeat()
    return dataset.batch(batch_size, drop_remainder=train).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------
# The VQ-VAE likelihood (the reconstruction term of the paper's bound)


def _decoder_means(vqvae, dataset):
    for batch in dataset:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        # predict_on_batch runs the compiled predict function (fast), not eager layers.
        yield np.asarray(images, np.float32), np.asarray(vqvae.predict_on_batch(images), np.float32)


def fit_decoder_scale(vqvae, dataset):
    """Maximum-likelihood scale of the discretized Gaussian on the VQ-VAE's output.

    The VQ-VAE decoder gives only a mean; its likelihood
    (`gaussian_vae.discretized_gaussian_log_prob`, the same model as the
    `GaussianVAE` baseline) needs a scale, chosen here by a grid search over
    `_SCALE_GRID` on TRAINING images, one scale for all pixels.

    Args:
        vqvae: the VQ-VAE.
        dataset: finite iterable of image batches (or `(images, labels)`).

    Returns:
        Python float, the scale in [0, 1] units.
    """
    from vqvae_tf.models.gaussian_vae import discretized_gaussian_log_prob

    grid = _SCALE_GRID.astype(np.float32)[:, None, None, None, None]
    totals = np.zeros(len(_SCALE_GRID))
    for images, means in _decoder_means(vqvae, dataset):
        log_prob = discretized_gaussian_log_prob(images[None], means[None], grid)
        totals -= np.asarray(log_prob, np.float64).reshape(len(_SCALE_GRID), -1).sum(axis=1)
    return float(_SCALE_GRID[int(np.argmin(totals))])


def reconstruction_nats(vqvae, dataset, scale):
    """Mean `-log p(x | z_q(x))` in nats per image, with `fit_decoder_scale`'s scale.

    Returns:
        `(nats_per_image, num_dims, mse)`: the mean reconstruction NLL, the
        dimensions of one image (H * W * C) and the mean squared error of
        the reconstructions clipped to the data range [0, 1].
    """
    from vqvae_tf.models.gaussian_vae import discretized_gaussian_log_prob

    total, squared, count, dims = 0.0, 0.0, 0, None
    for images, means in _decoder_means(vqvae, dataset):
        total -= float(np.sum(discretized_gaussian_log_prob(images, means, scale)))
        squared += float(np.sum((images - np.clip(means, 0.0, 1.0)) ** 2))
        count += len(images)
        dims = int(np.prod(images.shape[1:]))
    if not count:
        raise ValueError("reconstruction_nats received an empty dataset.")
    return total / count, dims, squared / (count * dims)


# ----------------------------------------------------------------------------
# Sample grids


def save_image_grid(path, images, rows, padding=2):
    """Writes images `(rows * cols, H, W, C)` in [0, 1] as one PNG grid, atomically.

    Nearest-neighbour upscaling makes each image at least 64 pixels tall.
    """
    from PIL import Image

    images = np.clip(np.nan_to_num(np.asarray(images, np.float32)), 0.0, 1.0)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) % rows:
        raise ValueError(
            f"save_image_grid expects (rows * cols, H, W, 1 or 3) images; received shape {images.shape} "
            f"for {rows} rows."
        )
    scale = max(1, -(-64 // images.shape[1]))
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    if images.shape[-1] == 1:
        images = images.repeat(3, axis=-1)
    n, h, w, _ = images.shape
    cols = n // rows
    grid = np.ones((rows * (h + padding) + padding, cols * (w + padding) + padding, 3), np.float32)
    for index, image in enumerate(images):
        r, c = divmod(index, cols)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top:top + h, left:left + w] = image
    with atomic_output(path) as temp:
        Image.fromarray(np.round(grid * 255).astype(np.uint8)).save(temp, format="PNG")
    return Path(path)


def sample_images(vqvae, prior, num_per_row, labels=None, temperature=1.0, top_k=0, seed=0):
    """Samples code maps from `prior` and decodes them with `vqvae`.

    Args:
        vqvae: the VQ-VAE whose codes the prior models.
        prior: a trained prior with a `map_shape`.
        num_per_row: samples per row (per class for a conditional prior).
        labels: class ids, one row each; None for an unconditional prior
            (one row). A conditional prior given None gets every class.
        temperature, top_k, seed: as in `AutoregressivePrior.sample`
            (`top_k=0` means no top-k).

    Returns:
        `(images, rows)`: float images `(rows * num_per_row, H, W, C)` in
        row-major order, and the number of rows.
    """
    if prior.num_classes:
        labels = list(range(prior.num_classes)) if labels is None else [int(v) for v in labels]
        sample_labels = np.repeat(np.asarray(labels, np.int32), num_per_row)
        rows = len(labels)
    else:
        if labels is not None:
            raise ValueError("this prior is unconditional (num_classes=0); expected no labels.")
        sample_labels, rows = None, 1
    codes = prior.sample(rows * num_per_row, labels=sample_labels, temperature=temperature,
                         top_k=top_k or None, seed=seed)
    stages = getattr(vqvae.quantizer, "code_shape", ())
    if stages:
        codes = tokens_to_stages(codes, vqvae.num_codes, stages[0])
    return np.asarray(vqvae.decode_codes(codes), np.float32), rows


# ----------------------------------------------------------------------------
# The whole stage


def _vqvae_settings(vqvae_workdir, dataset, image_size):
    """(dataset spec, image size, batch size, seed) from the run's config.json and overrides."""
    from vqvae_tf.training.config import TrainConfig

    config_path = Path(vqvae_workdir) / "config.json"
    if config_path.exists():
        saved = TrainConfig.load(config_path)
        return (dataset or saved.dataset, image_size or saved.image_size, saved.batch_size, saved.seed)
    if dataset is None or image_size is None:
        raise FileNotFoundError(
            f"{config_path} does not exist: pass dataset= and image_size= to say which data the VQ-VAE "
            "was trained on."
        )
    return dataset, image_size, 64, 0


def _file_digest(path):
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _train_batches(config, bundle, batch_size):
    if config.train_batches is not None:
        return config.train_batches
    if bundle.num_train is not None and bundle.num_train >= 4 * batch_size:
        return bundle.num_train // batch_size
    return DEFAULT_TRAIN_BATCHES


def train_prior(config, vqvae_workdir, workdir, *, dataset=None, image_size=None):
    """Trains a prior on the codes of the VQ-VAE in `vqvae_workdir`.

    Args:
        config: a `PriorConfig`.
        vqvae_workdir: a training run's workdir holding `model.keras` (and
            `config.json`, from which the dataset and image size are read).
        workdir: output directory (created), e.g. `vqvae_workdir / "prior"`.
        dataset: optional dataset spec overriding config.json's (required
            when there is no config.json).
        image_size: optional image size overriding config.json's (same).

    Returns:
        The metrics dict also written to `prior_metrics.json`: `nll_nats`
        (test NLL, nats per code), `bits_per_code`, `unigram_nll_nats` and
        `unigram_bits_per_code` (per-position unigram baseline),
        `nll_reduction_vs_unigram` (fraction), `bits_per_dim` (the paper's
        VQ-VAE + prior bound on test images), `reconstruction_nats`,
        `decoder_scale`, `mse`, `map_shape` (of the prior's maps), `num_codes`
        (of the VQ-VAE), `num_stages`, `num_train_maps`,
        `num_test_maps`, `history` (per-epoch training logs) and `paths`.

    Raises:
        FileNotFoundError: no `model.keras` (or no config.json and no
            dataset/image_size).
        ConfigError: bad config.
        vqvae_tf.data.datasets.DatasetError: e.g. `conditional=True` on data without
            labels.
    """
    import keras

    import vqvae_tf  # noqa: F401  (registers the Keras classes for load_model)
    from vqvae_tf.training import distribute
    from vqvae_tf.utils.atomic import save_model
    from vqvae_tf.data.datasets import make_datasets
    from vqvae_tf.priors.autoregressive import UnigramPrior, bits_per_dim, nll_per_code, vqvae_bits_per_dim

    if not isinstance(config, PriorConfig):
        raise TypeError(f"config must be a PriorConfig; received {type(config).__name__}.")
    config.validate()
    model_path = Path(vqvae_workdir) / "model.keras"
    if not model_path.exists():
        raise FileNotFoundError(f"{model_path} does not exist: train the VQ-VAE first (train.py).")
    spec, size, image_batch, data_seed = _vqvae_settings(vqvae_workdir, dataset, image_size)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config.save(workdir / "prior_config.json")

    strategy = distribute.make_strategy(config.strategy)
    distribute.check_global_batch(config.batch_size, strategy)
    vqvae = keras.models.load_model(model_path)
    # No augmentation: the prior models the codes of the photos as they are,
    # and its training crops are extracted once, so augmenting them would
    # change the data, not add to it.
    bundle = make_datasets(spec, image_size=size, batch_size=image_batch, seed=data_seed,
                           with_labels=config.conditional, augment=False)
    train_batches = _train_batches(config, bundle, image_batch)
    fingerprint = f"{_file_digest(model_path)}|{spec}|{size}|{image_batch}|{data_seed}|{train_batches}"
    splits = {}
    for name, data in (("train", bundle.train.take(train_batches)), ("validation", bundle.validation)):
        path = workdir / f"codes_{name}.npz"
        splits[name] = load_codes(path, fingerprint) or extract_codes(vqvae, data, path, fingerprint=fingerprint)
    (train_codes, train_labels), (test_codes, test_labels) = splits["train"], splits["validation"]
    # A residual VQ-VAE's (h, w, S) maps are modelled as (h, w * S) token maps.
    num_stages = train_codes.shape[3] if train_codes.ndim == 4 else 1
    vocabulary = vqvae.num_codes * num_stages
    if train_codes.ndim == 4:
        train_codes, test_codes = (stages_to_tokens(c, vqvae.num_codes) for c in (train_codes, test_codes))
    map_shape = tuple(int(s) for s in train_codes.shape[1:])
    num_classes = (bundle.num_classes or 0) if config.conditional else 0

    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        prior = build_prior(config, vocabulary, map_shape, num_classes)
    history = distribute.fit(
        prior,
        _code_dataset(train_codes, train_labels if num_classes else None, config.batch_size, config.seed, True),
        strategy=strategy,
        epochs=config.epochs,
        steps_per_epoch=config.steps // config.epochs,
        validation_data=_code_dataset(test_codes, test_labels if num_classes else None, config.batch_size,
                                      config.seed, False),
        verbose=config.verbose,
    )
    save_model(prior, workdir / "prior.keras")

    test_labels = test_labels if num_classes else None
    nll = nll_per_code(prior, test_codes, test_labels)
    unigram = UnigramPrior(vocabulary, map_shape).fit(train_codes)
    unigram_nll = nll_per_code(unigram, test_codes)
    scale = fit_decoder_scale(vqvae, bundle.train.take(min(train_batches, 8)))
    rec_nats, dims, mse = reconstruction_nats(vqvae, bundle.validation, scale)
    codes_per_map = map_shape[0] * map_shape[1]
    images, rows = sample_images(vqvae, prior, config.num_samples, temperature=config.temperature,
                                 top_k=config.top_k, seed=config.seed)
    samples_path = save_image_grid(workdir / "samples.png", images, rows)
    metrics = {
        "kind": config.kind,
        "conditional": bool(num_classes),
        "nll_nats": nll,
        "bits_per_code": nll / math.log(2),
        "unigram_nll_nats": unigram_nll,
        "unigram_bits_per_code": unigram_nll / math.log(2),
        "nll_reduction_vs_unigram": 1.0 - nll / unigram_nll,
        "bits_per_dim": vqvae_bits_per_dim(rec_nats, nll * codes_per_map, dims),
        "prior_bits_per_dim": bits_per_dim(nll * codes_per_map, dims),
        "reconstruction_nats": rec_nats,
        "decoder_scale": scale,
        "likelihood": "discretized Gaussian over 256 levels (vqvae_tf.models.gaussian_vae)",
        "mse": mse,
        "map_shape": list(map_shape),
        "num_codes": int(vqvae.num_codes),
        "num_stages": int(num_stages),
        "num_train_maps": int(len(train_codes)),
        "num_test_maps": int(len(test_codes)),
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
        "paths": {"prior": str(workdir / "prior.keras"), "samples": str(samples_path)},
    }
    atomic.write_json(workdir / "prior_metrics.json", metrics, sort_keys=True)
    logger.info("Prior %s: test NLL %.3f bits/code (unigram %.3f), VQ-VAE bound %.3f bits/dim.",
                config.kind, metrics["bits_per_code"], metrics["unigram_bits_per_code"], metrics["bits_per_dim"])
    return metrics

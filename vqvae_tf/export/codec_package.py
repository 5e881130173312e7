"""Codec models from exported files: `package_model` and `add_prior` (the training side of the codec).

These make the directories that `vqvae_tf.codec.load_model` reads: they
measure code usage and prior rates by running the codec on the bundled
training photos, and `add_prior` needs TensorFlow to load and re-save a
Keras prior. The codec (device side) never imports this module; the command
line reaches it as `python -m vqvae_tf.codec package|add-prior`.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np

from vqvae_tf.codec.api import encode_codes
from vqvae_tf.codec.bitstream.static import code_probabilities_from_counts
from vqvae_tf.codec.chunking import encode_audio_codes
from vqvae_tf.codec.images import IMAGE_EXTENSIONS, read_image
from vqvae_tf.codec.model import COUNTS, LITE_PRIOR, MANIFEST, PRIOR, CodecError, load_model
from vqvae_tf.codec.prior_coding.lite_transformer import LiteTransformerPrior
from vqvae_tf.codec.prior_coding.sequences import encode_sequence_payload
from vqvae_tf.codec.prior_coding.tiled import encode_prior_payload, prior_fingerprint
from vqvae_tf.data.audio import read_name_list, validation_list_file
from vqvae_tf.data.image_io import load_photo, photo_names
from vqvae_tf.export.prior_tflite import convert_prior, split_geometry
from vqvae_tf.utils import atomic
from vqvae_tf.utils.checks import check_int
from vqvae_tf.utils.wav import read_wav, resample

__all__ = ["add_prior", "package_model"]


def package_model(
    export_dir,
    out_dir,
    *,
    encoder: str = "int8",
    decoder: str = "float16",
    command: str = "",
    overwrite: bool = False,
    audio_dir=None,
    audio_exclude=None,
    photos=None,
    max_photos: int = 200,
    preset=None,
) -> Path:
    """Makes a codec model directory from an exporter's `tflite/` directory.

    Copies `encoder_<encoder>.tflite`, `decoder_<decoder>.tflite` and their
    sidecars, measures code usage counts (per stage for a residual model) by
    compressing the bundled training photos
    (`vqvae_tf.data.image_io.photo_names("train")`, whole, as the codec sees
    them) and writes `code_counts.json` and `codec.json` (with `rates`: the
    packed and static bits per pixel of every quality, i.e. stages kept). The directory
    is built next to `out_dir` and renamed into place at the end
    (`vqvae_tf.utils.atomic.atomic_directory`).

    Args:
        export_dir: directory holding the exported TFLite files.
        out_dir: the codec model directory to create.
        encoder, decoder: quantization of the files to copy. Defaults to
            "int8" and "float16".
        command: the training command, recorded in `codec.json`.
        overwrite: replace an existing `out_dir`. Defaults to False.
        audio_dir: for an audio (rank-1) model, the folder of WAV files
            (its training clips) whose codes are counted, each coded as the
            codec does (`vqvae_tf.codec.audio`); the rates are then kbps
            (`packed_kbps`, `static_kbps_on_training_audio`). Required for
            audio models, refused for image models.
        audio_exclude: clips of `audio_dir` not to count (the held-out
            ones): a validation-list file or a shipped list's name
            (`vqvae_tf.data.VALIDATION_LISTS`, e.g. "ljspeech16k"), as for
            `train.py --validation_list`. Defaults to None (count every file).
        preset: a preset directory (`VQVAE.save_to_preset`) holding the
            model the TFLite files were exported from: its `model.keras` is
            copied as it is (a compact preset stays compact) and its
            `preset.json` gains the rates and `command`, so the directory is
            also a Keras preset. Refused unless its `model_id` is the
            TFLite files'. Defaults to None.
    """
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise CodecError(f"{out_dir} exists; pass overwrite=True (--overwrite) to replace it")
    with atomic.atomic_directory(out_dir) as staging:
        names = {}
        for kind, quantization in (("encoder", encoder), ("decoder", decoder)):
            stem = f"{kind}_{quantization}"
            for suffix in (".tflite", ".json"):
                source = export_dir / f"{stem}{suffix}"
                if not source.is_file():
                    raise FileNotFoundError(f"{source} not found; export the model with quantization {quantization}")
                shutil.copyfile(source, staging / source.name)
            names[kind] = f"{stem}.tflite"
        (staging / MANIFEST).write_text(json.dumps(dict(names, name=out_dir.name), indent=2) + "\n")
        model = load_model(staging)
        # Per stage for a residual model: its stages use their codes very
        # differently, and the static method codes each under its own row.
        stages = model.total_stages
        counts = np.zeros((stages, model.num_codes), dtype=np.int64)
        signals, source = _training_signals(model, audio_dir, audio_exclude, photos, max_photos)
        for codes in signals:
            codes = codes.reshape(-1, stages)
            for stage in range(stages):
                counts[stage] += np.bincount(codes[:, stage], minlength=model.num_codes)
        # Bits per code of each stage under its own smoothed distribution.
        entropies = [float(-(row / row.sum() * np.log2(code_probabilities_from_counts(row))).sum()) for row in counts]
        (staging / COUNTS).write_text(
            json.dumps(
                dict(
                    model_id=model.model_id,
                    num_codes=model.num_codes,
                    source=source,
                    counts=(counts if model.code_shape else counts[0]).tolist(),
                ),
                indent=1,
            )
            + "\n"
        )
        bits = math.ceil(math.log2(model.num_codes))
        rates, unit = _rates(model, bits, entropies)
        manifest = dict(
            name=out_dir.name,
            encoder=names["encoder"],
            decoder=names["decoder"],
            model_id=model.model_id,
            downsample=model.downsample,
            num_codes=model.num_codes,
            channels=model.channels,
            code_shape=list(model.code_shape),
            total_stages=stages,
            **{key: value for key, value in rates[-1].items() if key != "quality"},
            rates=rates,
            **{f"codes_used_on_training_{unit}": int((counts.sum(axis=0) > 0).sum())},
            train_command=command,
        )
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if preset is not None:
            _copy_preset(Path(preset), staging, model.model_id, rates=rates, train_command=command)
    return out_dir


def _copy_preset(preset: Path, staging: Path, expected_id: str, **fields) -> None:
    """Copies the preset at `preset` into `staging`, adding `fields` to its preset.json."""
    from vqvae_tf.models.presets import MODEL_FILE, PRESET_FILE, read_preset_metadata

    try:
        meta = read_preset_metadata(preset)
    except ValueError as error:
        raise CodecError(f"preset {preset}: {error}") from None
    if meta["model_id"] != expected_id:
        raise CodecError(
            f"preset {preset} holds model {meta['model_id']!r}, not {expected_id!r} of the TFLite files: "
            "export the codec files from the preset's own model.keras"
        )
    shutil.copyfile(preset / MODEL_FILE, staging / MODEL_FILE)
    meta = {key: value for key, value in meta.items() if key != "model_keras_bytes"}
    meta.update(fields, model_keras_bytes=(staging / MODEL_FILE).stat().st_size)
    (staging / PRESET_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _training_signals(model, audio_dir, audio_exclude, photos, max_photos, purpose="its code usage"):
    """(iterator of code maps, description) of the signals `purpose` is measured on (checked now, read lazily)."""
    if model.kind == "image":
        if audio_dir is not None or audio_exclude is not None:
            raise CodecError(f"audio_dir is for audio models; model {model.name!r} is an image model")
        return _training_photos(model, photos, max_photos)
    if photos is not None:
        raise CodecError(f"photos is for image models; model {model.name!r} is an audio model (use audio_dir)")
    if audio_dir is None or not Path(audio_dir).is_dir():
        raise CodecError(
            f"model {model.name!r} is an audio model: pass audio_dir (--audio_dir), a folder of its training WAV "
            f"files, to measure {purpose}; received {audio_dir!r}"
        )
    if model.sample_rate is None:
        raise CodecError(f"audio model {model.name!r} has no sample_rate in its sidecars; export it with one")
    files = sorted(Path(audio_dir).glob("*.wav"))
    held_out = set()
    if audio_exclude is not None:
        held_out = {
            name if name.lower().endswith(".wav") else f"{name}.wav"
            for name in read_name_list(validation_list_file(audio_exclude))
        }
        unknown = held_out - {path.name for path in files}
        if unknown:
            raise CodecError(f"audio_exclude names clips not in {audio_dir}: {sorted(unknown)[:3]}")
        files = [path for path in files if path.name not in held_out]
    if not files:
        raise CodecError(f"audio_dir {audio_dir} holds no .wav files" + (" once excluded" if held_out else ""))

    def maps():
        for path in files:
            samples, rate = read_wav(path)
            yield encode_audio_codes(resample(samples, rate, model.sample_rate), model)

    excluded = f" ({len(held_out)} held-out ones left out)" if held_out else ""
    return maps(), f"{len(files)} WAV files of {audio_dir}{excluded}"


def _training_photos(model, folder, max_photos):
    """Code maps of the bundled training photos, or of up to `max_photos` of `folder`, evenly spaced."""
    if folder is None:
        names = photo_names("train")
        maps = (encode_codes(np.asarray(load_photo(name)), model) for name in names)
        return maps, f"photos train split: {', '.join(names)}"
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"photos folder {folder} does not exist")
    paths = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise CodecError(f"photos folder {folder} holds no {'/'.join(IMAGE_EXTENSIONS)} files")
    check_int("max_photos", max_photos, minimum=1, error=CodecError)
    picks = np.linspace(0, len(paths) - 1, min(max_photos, len(paths))).round().astype(int)
    chosen = [paths[i] for i in dict.fromkeys(picks.tolist())]
    maps = (encode_codes(read_image(path), model) for path in chosen)
    return maps, f"{len(chosen)} of the {len(paths)} photos of {folder.name}/, evenly spaced in name order"


def _rates(model, bits: int, entropies) -> tuple[list, str]:
    """One rate per quality (stages kept), code bits only (the ~62-byte header comes on top), and the unit."""
    if model.kind == "image":
        per_position = model.downsample**2
        rates = [
            dict(
                quality=quality,
                packed_bits_per_pixel=quality * bits / per_position,
                static_bits_per_pixel_on_training_photos=round(sum(entropies[:quality]) / per_position, 4),
            )
            for quality in range(1, len(entropies) + 1)
        ]
        return rates, "photos"
    frames_per_second = model.sample_rate / model.downsample
    rates = [
        dict(
            quality=quality,
            packed_kbps=quality * bits * frames_per_second / 1000,
            static_kbps_on_training_audio=round(sum(entropies[:quality]) * frames_per_second / 1000, 4),
        )
        for quality in range(1, len(entropies) + 1)
    ]
    return rates, "audio"


def add_prior(
    model,
    prior_path,
    *,
    command: str = "",
    overwrite: bool = False,
    keras_copy: bool = True,
    photos=None,
    max_photos: int = 200,
    audio_dir=None,
    audio_exclude=None,
    quantization: str = "float32",
) -> Path:
    """Adds a trained prior to a codec model directory (needs TensorFlow).

    An audio model takes a speech `TransformerPrior` over the tokens of all
    its S stages (vocabulary S * K, map `(1, T * S)`); its rate is measured
    on `audio_dir` and its `prior.tflite` has the one `step` signature
    (`_add_speech_prior`). The rest of this docstring is the image side.

    Checks that the prior fits the model (`CodecModel.prior`), measures the
    `prior` method's rate on the bundled training photos (whole, as the
    codec sees them) and writes `prior.keras`, `prior.tflite` (the TFLite
    model the codec runs with LiteRT, `vqvae_tf.export.prior_tflite`) and
    their sidecar `prior.json` (the model id, the prior's fingerprint, map
    size and TFLite window, the training command, the rate) into the
    model's directory, each atomically; both files must reload with the
    recorded fingerprint. The
    written prior holds the weights only, without the optimizer state that
    `train.py` saves for resuming (a third of the size).

    Args:
        model: anything `load_model` takes.
        prior_path: the trained `prior.keras` (`train.py --stage=prior`).
        command: the prior's training command, recorded in `prior.json`.
        overwrite: replace a prior the model already has. Defaults to False.
        keras_copy: also write `prior.keras` (what `--prior prior.keras`
            runs under TensorFlow; the streams are the same). False writes
            only `prior.tflite` and `prior.json`, half the bytes, for a
            model whose shipped size counts. Defaults to True.
        photos, max_photos: the photos the rate is measured on, as for
            `package_model`: None (default) the bundled training photos,
            else up to `max_photos` of that folder, evenly spaced.
        audio_dir, audio_exclude: an audio model's training WAVs the rate
            is measured on, as for `package_model` (required for audio).
        quantization: an audio model's `prior.tflite` weights, "float32"
            (default) or "float16" (half the bytes; a fingerprint of its
            own, since its logits are not the Keras prior's within the
            coding margin: streams coded with `prior.keras` then decode
            only with `prior.keras`).

    Returns:
        The path of the written `prior.keras`, or of `prior.tflite` when
        `keras_copy` is False.
    """
    model = load_model(model)
    existing = [name for name in (PRIOR, LITE_PRIOR) if (model.directory / name).is_file()]
    if existing and not overwrite:
        raise CodecError(
            f"model {model.name!r} already has {existing[0]}; pass overwrite=True (--overwrite) to replace it"
        )
    prior_path = Path(prior_path)
    if prior_path.suffix != ".keras":
        raise CodecError(f"add-prior takes a trained prior.keras; received {prior_path}")
    prior = model.prior(prior_path)
    if model.kind == "audio":
        return _add_speech_prior(model, prior, command, keras_copy, audio_dir, audio_exclude, quantization)
    if audio_dir is not None or audio_exclude is not None or quantization != "float32":
        raise CodecError(
            f"audio_dir, audio_exclude and quantization are for audio models; model {model.name!r} is an image model"
        )
    bits, count = 0, 0
    maps, source = _training_photos(model, photos, max_photos)
    for codes in maps:
        # A residual model's prior codes its first stage (CodecModel.prior).
        coarse = np.ascontiguousarray(codes[..., 0]) if model.code_shape else codes
        bits += 8 * len(encode_prior_payload(prior, coarse)[1])
        count += coarse.size
    sidecar = dict(
        model_id=model.model_id,
        signal="image",
        num_codes=model.num_codes,
        kind=type(prior).__name__,
        fingerprint=prior_fingerprint(prior).hex(),
        map_shape=None if prior.map_shape is None else list(prior.map_shape),
        train_command=command,
        bits_per_code_on_training_photos=round(bits / count, 4),
        packed_bits_per_code=math.ceil(math.log2(model.num_codes)),
        stages_coded="the first; the later stages under the static tables" if model.code_shape else "all",
        source=source,
    )
    sidecar["tflite"] = dict(reach=split_geometry(prior)[0], file=LITE_PRIOR)
    return _write_prior(model, prior, convert_prior(prior), sidecar, keras_copy, sidecar["fingerprint"])


def _write_prior(model, prior, lite_bytes: bytes, sidecar: dict, keras_copy: bool, keras_fingerprint: str) -> Path:
    """Writes prior.tflite, prior.json and (with `keras_copy`) prior.keras atomically; checks they reload."""
    target, lite = model.directory / PRIOR, model.directory / LITE_PRIOR
    if keras_copy:
        _save_inference_copy(prior, target)
    elif target.is_file():
        target.unlink()  # an older Keras copy would no longer match prior.json
    atomic.write_bytes(lite, lite_bytes)
    atomic.write_json(target.with_suffix(".json"), sidecar)
    model._priors.clear()
    expected = {lite: sidecar["fingerprint"], target: keras_fingerprint}
    for path in (target, lite) if keras_copy else (lite,):
        if prior_fingerprint(model.prior(path)).hex() != expected[path]:
            raise CodecError(f"{path} does not reload as the prior it was written from")
    return target if keras_copy else lite


def _add_speech_prior(model, prior, command, keras_copy, audio_dir, audio_exclude, quantization) -> Path:
    """`add_prior` for an audio model: a speech `TransformerPrior` (checked by `CodecModel.prior`) over all stages.

    The rate is the `prior` method's payload on the training WAVs (each
    coded whole, as the codec codes a file) with the `prior.tflite` that is
    shipped, in kilobits per second of audio (headers excluded, as the
    `rates` of codec.json).
    """
    from vqvae_tf.export.errors import ExportError
    from vqvae_tf.export.transformer_prior_tflite import convert_transformer_prior

    if quantization not in ("float32", "float16"):
        raise CodecError(f"prior quantization must be 'float32' or 'float16'; received {quantization!r}")
    maps, source = _training_signals(model, audio_dir, audio_exclude, None, 1, "the prior's rate")
    try:
        lite_bytes = convert_transformer_prior(prior, quantization=quantization)
    except ExportError as error:
        raise CodecError(f"cannot export the speech prior: {error}") from None
    keras_fingerprint = prior_fingerprint(prior)
    # float16 weights move the logits by more than the coding margin: the
    # file codes streams of its own, which the Keras prior must refuse.
    fingerprint = keras_fingerprint
    if quantization != "float32":
        fingerprint = hashlib.blake2b(keras_fingerprint + quantization.encode(), digest_size=8).digest()
    lite = LiteTransformerPrior(lite_bytes, num_threads=model.num_threads, fingerprint=fingerprint)
    bits = frames = 0
    for codes in maps:
        bits += 8 * len(encode_sequence_payload(lite, codes, model.num_codes)[1])
        frames += len(codes)
    frames_per_second = model.sample_rate / model.downsample
    stages, length = model.total_stages, lite.length
    manifest = json.loads((model.directory / MANIFEST).read_text())  # load_model read it: it exists
    sidecar = dict(
        model_id=model.model_id,
        signal="audio",
        num_codes=model.num_codes,
        num_stages=stages,
        vocabulary=model.num_codes * stages,
        segment_frames=length // stages,
        segment_tokens=length,
        kind=type(prior).__name__,
        fingerprint=fingerprint.hex(),
        keras_fingerprint=keras_fingerprint.hex(),
        train_command=command,
        prior_kbps_on_training_audio=round(bits * frames_per_second / frames / 1000, 4),
        static_kbps_on_training_audio=manifest.get("static_kbps_on_training_audio"),
        packed_kbps=manifest.get("packed_kbps"),  # package_model's `_rates`, all stages
        stages_coded="all",
        source=source,
        tflite=dict(file=LITE_PRIOR, signature="step", quantization=quantization),
    )
    return _write_prior(model, prior, lite_bytes, sidecar, keras_copy, keras_fingerprint.hex())


def _save_inference_copy(prior, path: Path) -> None:
    """Saves `prior`'s architecture and weights, without its optimizer, atomically."""
    copy = type(prior).from_config(prior.get_config())
    map_shape = prior.map_shape or (1, 1)
    copy(np.zeros((1,) + tuple(map_shape), np.int32))
    copy.set_weights(prior.get_weights())
    atomic.save_model(copy, path)

"""Rate control of the codec (`vqvae_tf.codec.rate`): quality = stages kept, --bpp, --kbps, kinds.

A tiny residual VQVAE (3 stages, a lookup projection, as the shipped
residual design) gets its stage codebooks from k-means on its own encoder
outputs (so each stage's codes vary, without a slow `fit`), is exported to
float32 TFLite once per module and packaged as a codec model.
"""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from tests.tiny_models import codebooks_from_encoder, package_tiny, smooth_image, tiny_vqvae
from vqvae_tf import codec
from vqvae_tf.codec import bitstream, tiling
from vqvae_tf.codec.streams import static_probabilities

from .test_codec import _cli

STAGES = 3
NUM_CODES = 32


@pytest.fixture(scope="module")
def keras_model():
    model = tiny_vqvae(
        NUM_CODES,
        "residual",
        seed=3,
        quantizer_config=dict(num_stages=STAGES, lookup_dim=4, quantizer_dropout=0.5, kmeans_iters=3),
    )
    images = np.stack([smooth_image(32, 32, seed=s) for s in range(8)]).astype(np.float32) / 255
    return codebooks_from_encoder(model, images)


@pytest.fixture(scope="module")
def rvq_dir(keras_model, tmp_path_factory):
    return package_tiny(keras_model, tmp_path_factory.mktemp("rate"), "rvq")


@pytest.fixture(scope="module")
def rvq(rvq_dir):
    return codec.load_model(rvq_dir)


IMAGE = smooth_image(30, 42, seed=21)


def test_every_quality_decodes_to_the_keras_model_with_that_many_stages(rvq, keras_model):
    codes = rvq.encoder.encode(tiling.pad_to_multiple(IMAGE, 4))
    assert codes.shape == (8, 11, STAGES)
    assert all(len(np.unique(codes[..., s])) >= 4 for s in range(STAGES)), "each stage must use several codes"
    decoded = {}
    for quality in range(1, STAGES + 1):
        for method in ("packed", "static"):
            data = codec.compress_image(IMAGE, rvq, method, quality=quality)
            header = bitstream.read_header(data)
            assert (header.version, header.kept_stages, header.total_stages) == (2, quality, STAGES)
            stream = bitstream.decode_stream(data, code_probabilities=rvq.code_probabilities(quality))
            np.testing.assert_array_equal(stream.codes, codes[..., :quality])
            got = codec.decompress_bytes(data, rvq)
            keras_pixels = keras_model.decode_codes(codes[None, ..., :quality]).numpy()[0]
            # float32 TFLite against Keras: <= 1e-4 before rounding, so at most one level after.
            expected = tiling.to_uint8(keras_pixels)[:30, :42]
            assert np.abs(got.astype(int) - expected).max() <= 1 and np.mean(got != expected) < 0.01
            decoded.setdefault(quality, got)
            np.testing.assert_array_equal(got, decoded[quality])  # packed and static: the same pixels
    assert all(not np.array_equal(decoded[q], decoded[q + 1]) for q in range(1, STAGES))
    # The default is every stage.
    assert bitstream.read_header(codec.compress_image(IMAGE, rvq)).kept_stages == STAGES


def test_packaging_writes_per_stage_counts_and_the_rate_of_every_quality(rvq, rvq_dir):
    counts = json.loads((rvq_dir / "code_counts.json").read_text())["counts"]
    assert np.shape(counts) == (STAGES, NUM_CODES)
    manifest = json.loads((rvq_dir / "codec.json").read_text())
    assert manifest["total_stages"] == STAGES
    assert [r["quality"] for r in manifest["rates"]] == [1, 2, 3]
    assert [r["packed_bits_per_pixel"] for r in manifest["rates"]] == [q * 5 / 16 for q in (1, 2, 3)]
    static = [r["static_bits_per_pixel_on_training_photos"] for r in manifest["rates"]]
    assert static == sorted(static) and static[-1] == manifest["static_bits_per_pixel_on_training_photos"]
    assert rvq.rates == manifest["rates"]
    # Version-1 static streams used one distribution pooled over the stages.
    pooled = bitstream.code_probabilities_from_counts(np.sum(counts, axis=0))
    np.testing.assert_array_equal(rvq.code_probabilities(), pooled)
    assert rvq.code_probabilities(2).shape == (2, NUM_CODES)


@pytest.fixture(scope="module")
def stage_prior(tmp_path_factory):
    """A tiny untrained gated PixelCNN over the model's K codes: the prior of stage 0."""
    from .test_codec import _save_prior

    return _save_prior(tmp_path_factory.mktemp("stage_prior") / "prior.keras", NUM_CODES, seed=5)


@pytest.mark.parametrize("method", ["packed", "static", "prior"])
def test_bpp_picks_the_highest_quality_whose_whole_file_fits(rvq, method, stage_prior):
    options = dict(prior=stage_prior) if method == "prior" else {}
    sizes = {q: len(codec.compress_image(IMAGE, rvq, method, quality=q, **options)) for q in range(1, STAGES + 1)}
    options["depth"] = "uniform"
    bpp = {q: 8 * size / (30 * 42) for q, size in sizes.items()}
    assert bpp[1] < bpp[2] < bpp[3]
    for target, expected in ((bpp[3], 3), (bpp[3] - 1e-6, 2), (bpp[2], 2), ((bpp[1] + bpp[2]) / 2, 1), (9.0, 3)):
        data = codec.compress_image(IMAGE, rvq, method, bpp=target, **options)
        assert bitstream.read_header(data).kept_stages == expected, (target, bpp)
        assert 8 * len(data) / (30 * 42) <= target
    with pytest.raises(codec.CodecError) as info:
        codec.compress_image(IMAGE, rvq, method, bpp=bpp[1] * 0.99, **options)
    assert f"the lowest reachable is {bpp[1]:.4f} bpp (quality 1)" in str(info.value)
    assert "30x42 image" in str(info.value)


@pytest.mark.parametrize("method", ["packed", "static", "prior"])
def test_adaptive_depth_fills_a_bpp_target_between_two_qualities(rvq, method, stage_prior):
    options = dict(prior=stage_prior) if method == "prior" else {}
    sizes = {q: len(codec.compress_image(IMAGE, rvq, method, quality=q, **options)) for q in range(1, STAGES + 1)}
    target = 8 * (sizes[1] + sizes[2]) / 2 / (30 * 42)
    data = codec.compress_image(IMAGE, rvq, method, bpp=target, **options)
    header = bitstream.read_header(data)
    assert header.variable_depth and len(data) <= target * 30 * 42 / 8
    # Larger than the uniform stream that fits: the spare bytes went to finer stages somewhere.
    assert len(data) > sizes[1]
    prior = rvq.prior(stage_prior) if method == "prior" else None
    stream = bitstream.decode_stream(data, code_probabilities=static_probabilities(header, rvq), prior=prior)
    assert stream.depth.shape == header.code_shape[:2] and 1 <= stream.depth.min() < stream.depth.max()
    # Each position keeps its first depth[p] stages of the full code map, the rest absent.
    full = codec.api.encode_codes(IMAGE, rvq)
    kept = np.arange(STAGES) < stream.depth[..., None]
    np.testing.assert_array_equal(stream.codes, np.where(kept, full, bitstream.ABSENT))
    decoded = codec.decompress_bytes(data, rvq, **{k: v for k, v in options.items() if k == "prior"})
    assert decoded.shape == IMAGE.shape
    # `quality` and `depth="uniform"` never write a depth section; a target above every stage keeps them all.
    assert not bitstream.read_header(codec.compress_image(IMAGE, rvq, method, bpp=9.0, **options)).variable_depth


def test_depth_must_be_adaptive_or_uniform(rvq):
    with pytest.raises(codec.CodecError, match="depth must be one of adaptive, uniform; received 'deep'"):
        codec.compress_image(IMAGE, rvq, bpp=1.0, depth="deep")


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(quality=0), "quality must be an integer in 1..3 (stages kept of model 'rvq''s 3); received 0"),
        (dict(quality=4), "in 1..3"),
        (dict(quality=2.5), "received 2.5"),
        (dict(quality=True), "received True"),
        (dict(quality=2, bpp=0.5), "pass at most one of quality, bpp and kbps"),
        (dict(bpp=0), "bpp"),
        (dict(bpp=float("nan")), "bpp"),
        (dict(kbps=3.0), "--kbps is for audio models; model 'rvq' is an image model: use --bpp"),
    ],
)
def test_bad_rate_arguments_fail_clearly(rvq, kwargs, expected):
    with pytest.raises(codec.CodecError) as info:
        codec.compress_image(IMAGE, rvq, **kwargs)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_a_single_stage_model_has_quality_1_only():
    shipped = codec.load_model("d8k512")
    assert shipped.total_stages == 1
    image = smooth_image(16, 24, seed=4)
    data = codec.compress_image(image, shipped, quality=1)
    assert bitstream.read_header(data).kept_stages == 1 and data == codec.compress_image(image, shipped)
    with pytest.raises(codec.CodecError, match="quality must be 1 for model 'd8k512': it has one quantizer stage"):
        codec.compress_image(image, shipped, quality=2)
    # --bpp works on a single stage as a check: its one rate fits, or the error gives it.
    assert codec.compress_image(image, shipped, bpp=64.0) == data
    with pytest.raises(codec.CodecError, match="lowest reachable is"):
        codec.compress_image(image, shipped, bpp=0.01)


def test_a_decoder_without_absent_code_refuses_lower_qualities(rvq):
    old = dataclasses.replace(rvq, absent_code=None, _encoder=None, _decoder=None)
    with pytest.raises(codec.CodecError, match="exported before partial-stage decoding.*re-export"):
        codec.compress_image(IMAGE, old, quality=2)
    partial = codec.compress_image(IMAGE, rvq, quality=2)
    with pytest.raises(codec.CodecError, match="exported before partial-stage decoding"):
        codec.decompress_bytes(partial, old)
    full = codec.compress_image(IMAGE, old)
    assert bitstream.read_header(full).kept_stages == STAGES
    np.testing.assert_array_equal(codec.decompress_bytes(full, old), codec.decompress_bytes(full, rvq))
    # --bpp only considers the qualities the decoder can decode.
    with pytest.raises(codec.CodecError, match=r"\(quality 3\)"):
        codec.compress_image(IMAGE, old, bpp=0.5)


def test_audio_streams_and_audio_models_are_refused_naming_both_kinds(rvq):
    codes = np.zeros((10, 2), np.int32)
    audio = bitstream.encode_stream(
        codes,
        num_codes=NUM_CODES,
        model_id=rvq.stream_id,
        audio=bitstream.AudioFormat(sample_rate=16000, num_samples=3200),
        total_stages=STAGES,
    )
    with pytest.raises(codec.CodecError, match="the stream holds audio, but model 'rvq' is an image model"):
        codec.decompress_bytes(audio, rvq)
    with pytest.raises(codec.CodecError, match="the stream holds audio; decompress_bytes decodes image streams"):
        codec.decompress_bytes(audio)
    speech = dataclasses.replace(rvq, name="speech", rank=1, _encoder=None, _decoder=None)
    assert speech.kind == "audio"
    with pytest.raises(codec.CodecError, match="the input holds an image, but model 'speech' is an audio model"):
        codec.compress_image(IMAGE, speech)
    image_stream = codec.compress_image(IMAGE, rvq)
    with pytest.raises(codec.CodecError, match="holds an image, but model 'speech' is an audio model"):
        codec.decompress_bytes(image_stream, speech)
    from vqvae_tf.codec.rate import check_rate

    with pytest.raises(
        codec.CodecError, match="--bpp is for image models; model 'speech' is an audio model: use --kbps"
    ):
        check_rate(speech, bpp=0.2)
    assert check_rate(speech, kbps=3.0).target == ("kbps", 3.0)


def test_info_shows_kind_quality_stages_and_rate(rvq, tmp_path):
    path = tmp_path / "x.vqz"
    path.write_bytes(codec.compress_image(IMAGE, rvq, "static", quality=2))
    info = codec.describe(path)
    assert (info["version"], info["kind"], info["quality"], info["stages"]) == (2, "image", 2, [2, 3])
    assert info["bits_per_pixel"] == round(8 * path.stat().st_size / (30 * 42), 5)
    assert info["code_shape"] == [8, 11, 2] and info["image_shape"] == [30, 42, 3]
    speech = tmp_path / "s.vqz"
    speech.write_bytes(
        bitstream.encode_stream(
            np.zeros((25, 1), np.int32),
            num_codes=8,
            model_id=bytes(16),
            audio=bitstream.AudioFormat(sample_rate=8000, num_samples=4000, source_channels=2),
            total_stages=4,
        )
    )
    info = codec.describe(speech)
    assert (info["kind"], info["quality"], info["stages"], info["sample_rate"]) == ("audio", 1, [1, 4], 8000)
    assert (info["num_samples"], info["source_channels"], info["duration_seconds"]) == (4000, 2, 0.5)
    assert info["kilobits_per_second"] == round(8 * speech.stat().st_size / 0.5 / 1000, 5)
    assert "image_shape" not in info and "bits_per_pixel" not in info


def test_cli_quality_and_bpp_and_one_line_errors(rvq_dir, tmp_path):
    Image.fromarray(IMAGE).save(tmp_path / "in.png")
    done = _cli("compress", tmp_path / "in.png", tmp_path / "q1.vqz", "--model", rvq_dir, "--quality", "1")
    assert done.returncode == 0 and "quality 1: 1 of 3 stages" in done.stdout, done.stderr
    size = (tmp_path / "q1.vqz").stat().st_size
    done = _cli("compress", tmp_path / "in.png", tmp_path / "b.vqz", "--model", rvq_dir, "--bpp", str(8 * size / 1260))
    assert done.returncode == 0 and "quality 1" in done.stdout, done.stderr
    assert (tmp_path / "b.vqz").read_bytes() == (tmp_path / "q1.vqz").read_bytes()
    done = _cli("decompress", tmp_path / "q1.vqz", tmp_path / "out.png", "--model", rvq_dir)
    assert done.returncode == 0, done.stderr
    done = _cli("info", tmp_path / "q1.vqz")
    assert json.loads(done.stdout)["stages"] == [1, 3] and not json.loads(done.stdout)["variable_depth"]
    # Between quality 1 and 2: a variable-depth stream by default, quality 1 with --depth uniform.
    _cli("compress", tmp_path / "in.png", tmp_path / "q2.vqz", "--model", rvq_dir, "--quality", "2")
    target = str(4 * (size + (tmp_path / "q2.vqz").stat().st_size) / 1260)
    done = _cli("compress", tmp_path / "in.png", tmp_path / "v.vqz", "--model", rvq_dir, "--bpp", target)
    assert done.returncode == 0 and " of 3 stages per position)" in done.stdout, done.stderr
    info = json.loads(_cli("info", tmp_path / "v.vqz").stdout)
    assert info["variable_depth"] and 1 < info["stages_per_position"] < info["stages"][0]
    assert f"quality {info['stages'][0]}: {info['stages_per_position']:.2f} of 3" in done.stdout
    done = _cli(
        "compress", tmp_path / "in.png", tmp_path / "u.vqz", "--model", rvq_dir, "--bpp", target, "--depth", "uniform"
    )
    assert done.returncode == 0 and "quality 1: 1 of 3 stages)" in done.stdout, done.stderr
    assert (tmp_path / "u.vqz").read_bytes() == (tmp_path / "q1.vqz").read_bytes()
    for name in ("q2.vqz", "v.vqz", "u.vqz"):
        (tmp_path / name).unlink()
    for flags, message in (
        (("--quality", "4"), "quality must be an integer in 1..3"),
        (("--bpp", "0.01"), "the lowest reachable is"),
        (("--kbps", "3"), "--kbps is for audio models"),
        (("--quality", "2", "--bpp", "1"), "pass at most one of"),
    ):
        done = _cli("compress", tmp_path / "in.png", tmp_path / "o.vqz", "--model", rvq_dir, *flags)
        lines = done.stderr.strip().splitlines()
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        assert lines[-1].startswith("vqvae_tf.codec: error:") and message in lines[-1], done.stderr
    assert not (tmp_path / "o.vqz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.vqz", "in.png", "out.png", "q1.vqz"]


def test_prior_method_codes_stage_zero_with_the_prior_at_every_quality(rvq, stage_prior):
    codes = codec.encode_codes(IMAGE, rvq)
    for quality in range(1, STAGES + 1):
        data = codec.compress_image(IMAGE, rvq, "prior", quality=quality, prior=stage_prior)
        header = bitstream.read_header(data)
        assert (header.method, header.kept_stages, header.has_stage_axis) == (bitstream.Method.PRIOR, quality, True)
        stream = bitstream.decode_stream(
            data, prior=rvq.prior(stage_prior), code_probabilities=rvq.code_probabilities(quality)
        )
        np.testing.assert_array_equal(stream.codes, codes[..., :quality])
        packed = codec.compress_image(IMAGE, rvq, "packed", quality=quality)
        expected = codec.decompress_bytes(packed, rvq)
        np.testing.assert_array_equal(codec.decompress_bytes(data, rvq, prior=stage_prior), expected)


def test_eval_measures_a_chosen_quality(rvq):
    from vqvae_tf.codec import evaluation

    row = evaluation.evaluate_image(IMAGE, rvq, quality=1)
    assert row["quality"] == 1
    assert row["bits_per_pixel"] == 8 * len(codec.compress_image(IMAGE, rvq, quality=1)) / (30 * 42)
    assert evaluation.evaluate_image(IMAGE, rvq)["quality"] == STAGES

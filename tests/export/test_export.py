"""Export parity: SavedModel, TFLite (four quantizations) and ONNX against Keras.

A tiny VQVAE is trained once per module on 16x16 tiles of real photos (so
its codes are not all near-ties) and exported once; held-out photos give the
evaluation images. Tolerances are stated next to each assertion.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.export.onnx_parity import assert_onnx_matches_keras
from tests.tiny_models import deterministic_ops, tiny_vqvae
from vqvae_tf import export
from vqvae_tf.codec.lite_runtime import LiteDecoder, LiteEncoder
from vqvae_tf.data.embedded_photos import load_photo
from vqvae_tf.data.image_arrays import tiles
from vqvae_tf.export import metadata  # noqa: F401  (export.metadata below)
from vqvae_tf.export.api import ExportError, export_model
from vqvae_tf.quantizers.registry import QUANTIZERS, get_quantizer
from vqvae_tf.utils import atomic

REPO = Path(__file__).resolve().parents[2]
TRAIN_PHOTOS = ("astronaut", "camera", "rocket", "coffee")
HELD_OUT_PHOTOS = ("chelsea",)
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))


def psnr(a, b):
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def data():
    train = np.concatenate([tiles(load_photo(n), 16) for n in TRAIN_PHOTOS]).astype("float32") / 255
    held_out = np.concatenate([tiles(load_photo(n), 32) for n in HELD_OUT_PHOTOS])[:64]
    return train, held_out.astype("float32") / 255


@pytest.fixture(scope="module")
def trained(data):
    train, _ = data
    # The quantized-export bars below are measured on this model (its codes
    # have near-ties, so a differently trained model moves the agreements by
    # about a point): it is trained under `deterministic_ops`.
    with deterministic_ops():
        model = tiny_vqvae(
            64,
            seed=0,
            hidden_units=48,
            residual_units=24,
            code_dim=32,
            quantizer_config={"kmeans_init": True, "seed": 1},
        )
        model.compile(optimizer=keras.optimizers.Adam(2e-3))
        model.fit(train, batch_size=64, epochs=6, verbose=0)  # about 380 steps
    return model


@pytest.fixture(scope="module")
def exported(trained, data, tmp_path_factory):
    train, _ = data
    out = tmp_path_factory.mktemp("export") / "model"
    export_model(trained, out, representative_data=train[::8][:256])
    return out


@pytest.fixture(scope="module")
def reference(trained, data):
    _, images = data
    codes = trained.codes(images).numpy()
    return images, codes, trained.decode_codes(codes).numpy()


@pytest.mark.slow
def test_layout_and_sidecars(exported, trained):
    manifest = json.loads((exported / "export.json").read_text())
    for quantization in export.QUANTIZATIONS:
        for name in ("encoder", "decoder", "vqvae"):
            stem = f"tflite/{name}_{quantization}"
            assert f"{stem}.tflite" in manifest["files"]
            sidecar = json.loads((exported / f"{stem}.json").read_text())
            assert sidecar["quantization"] == quantization
            assert sidecar["model_id"] == manifest["model_id"]
            assert (sidecar["downsample"], sidecar["num_codes"], sidecar["input_channels"]) == (4, 64, 3)
            assert sidecar["value_range"] == [0.0, 1.0]
    for name in ("encoder", "decoder", "reconstruct"):
        assert f"onnx/{name}.onnx" in manifest["files"]
    assert not list(exported.parent.glob(".*tmp-*")), "staging directory left behind"
    assert export.metadata.model_id(trained) == manifest["model_id"]


# ---------------------------------------------------------------- SavedModel
SUBPROCESS_RELOAD = """
import sys, numpy as np, tensorflow as tf
images = np.load(sys.argv[2])
loaded = tf.saved_model.load(sys.argv[1])
sig = loaded.signatures
codes = sig["encode"](images=tf.constant(images))["codes"].numpy()
decoded = sig["decode"](codes=tf.constant(codes))["images"].numpy()
reconstruction = sig["reconstruct"](images=tf.constant(images))["reconstruction"].numpy()
default = sig["serving_default"](images=tf.constant(images))["reconstruction"].numpy()
assert not any(m.startswith("vqvae_tf") for m in sys.modules), "library imported"
np.savez(sys.argv[3], codes=codes, decoded=decoded, reconstruction=reconstruction, default=default)
"""


@pytest.mark.slow
def test_saved_model_fresh_process(exported, reference, tmp_path):
    images, codes, decoded = reference
    np.save(tmp_path / "images.npy", images[:8])
    env = dict(ENV, PYTHONPATH="")  # the library must not be importable
    subprocess.run(
        [
            sys.executable,
            "-c",
            SUBPROCESS_RELOAD,
            str(exported / "saved_model"),
            str(tmp_path / "images.npy"),
            str(tmp_path / "out.npz"),
        ],
        check=True,
        env=env,
        cwd=tmp_path,
        capture_output=True,
    )
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(out["codes"], codes[:8])
    np.testing.assert_allclose(out["decoded"], decoded[:8], atol=1e-5)
    # reconstruct is decode(encode(x)) in one graph: equal up to float rounding.
    np.testing.assert_allclose(out["reconstruction"], out["decoded"], atol=1e-6)
    np.testing.assert_array_equal(out["default"], out["reconstruction"])


@pytest.mark.slow
def test_saved_model_cli_lists_signatures(exported):
    result = subprocess.run(
        ["saved_model_cli", "show", "--dir", str(exported / "saved_model"), "--all"],
        check=True,
        env=ENV,
        capture_output=True,
        text=True,
    )
    for name in ("encode", "decode", "reconstruct", "serving_default"):
        assert f"signature_def['{name}']" in result.stdout
    assert "inputs['images']" in result.stdout and "outputs['codes']" in result.stdout
    assert "shape: (-1, -1, -1, 3)" in result.stdout  # dynamic batch and spatial sizes


# -------------------------------------------------------------------- TFLite
@pytest.mark.slow
def test_tflite_float32_matches_keras(exported, reference):
    images, codes, decoded = reference
    for name in ("encoder", "vqvae"):
        got = LiteEncoder(exported / f"tflite/{name}_float32.tflite").encode(images)
        assert got.dtype == np.int32
        assert np.mean(got == codes) >= 0.999
    for name in ("decoder", "vqvae"):
        out = LiteDecoder(exported / f"tflite/{name}_float32.tflite").decode(codes)
        assert np.max(np.abs(out - decoded)) <= 1e-4


# float16 and dynamic-range weights: >= 98% of codes unchanged (measured on
# this model: float16 99.8%, dynamic 98.7%; 96.8% without keeping the search
# and the image convolution float32).
@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["float16", "dynamic"])
def test_tflite_reduced_precision_codes(exported, reference, quantization, record_property):
    images, codes, _ = reference
    got = LiteEncoder(exported / f"tflite/encoder_{quantization}.tflite").encode(images)
    record_property("code_agreement", float(np.mean(got == codes)))  # in --junitxml reports
    assert np.mean(got == codes) >= 0.98, np.mean(got == codes)


@pytest.mark.slow
def test_tflite_dynamic_keeps_search_float32(exported):
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    from vqvae_tf.export.tflite_graph import CONVOLUTIONS, OP, float_kept_ops, is_quantized, op_code, search_ops

    for name in ("encoder", "vqvae"):
        content = (exported / f"tflite/{name}_dynamic.tflite").read_bytes()
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
        float_kept = int8_weights = 0
        for graph in model.subgraphs:
            kept = {id(op) for op in float_kept_ops(model, graph)}
            assert {id(op) for op in search_ops(model, graph)} <= kept
            for op in graph.operators:
                code = op_code(model, op)
                if code != OP.FULLY_CONNECTED and code not in CONVOLUTIONS:
                    continue
                weights = graph.tensors[op.inputs[1]]
                if id(op) in kept:
                    assert weights.type == schema.TensorType.FLOAT32 and not is_quantized(weights)
                    float_kept += code == OP.FULLY_CONNECTED
                else:
                    int8_weights += weights.type == schema.TensorType.INT8
        assert float_kept >= 1 and int8_weights >= 4  # the search is float, the rest still int8
        float32_size = (exported / f"tflite/{name}_float32.tflite").stat().st_size
        assert len(content) < 0.5 * float32_size


@pytest.mark.slow
def test_tflite_int8(exported, reference, record_property):
    images, codes, _ = reference
    encoder = LiteEncoder(exported / "tflite/encoder_int8.tflite")
    got = encoder.encode(images)
    float_psnr = psnr(LiteDecoder(exported / "tflite/decoder_float32.tflite").decode(codes), images)
    int8_psnr = psnr(LiteDecoder(exported / "tflite/decoder_int8.tflite").decode(got), images)
    for name, value in (("code_agreement", np.mean(got == codes)), ("psnr", int8_psnr), ("float_psnr", float_psnr)):
        record_property(name, float(value))  # in --junitxml reports
    # Measured on this (deterministically trained) model: 96.7% of codes, 20.98 vs 21.02 dB.
    assert np.mean(got == codes) >= 0.95, np.mean(got == codes)
    assert int8_psnr >= float_psnr - 0.5, (int8_psnr, float_psnr)
    # uint8 photos go through the same path as floats / 255.
    np.testing.assert_array_equal(
        encoder.encode(np.round(images * 255).astype(np.uint8)[:4]), encoder.encode(np.round(images * 255)[:4] / 255)
    )
    # The multi-signature model shares the edited search (one float16 codebook).
    np.testing.assert_array_equal(LiteEncoder(exported / "tflite/vqvae_int8.tflite").encode(images), got)


def _tflite_model(path):
    return _tflite_model_bytes(Path(path).read_bytes())


def _tflite_model_bytes(content):
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(content))


@pytest.mark.slow
def test_tflite_int8_search_weights_are_float16(exported):
    from tensorflow.lite.python import schema_py_generated as schema

    from vqvae_tf.export.tflite_graph import OP, op_code, search_ops

    for name in ("encoder", "vqvae"):
        model = _tflite_model(exported / f"tflite/{name}_int8.tflite")
        searches = 0
        for graph in model.subgraphs:
            producer = {out: op for op in graph.operators for out in op.outputs}
            for op in search_ops(model, graph):
                if op_code(model, op) != OP.FULLY_CONNECTED:
                    continue
                # The search multiplies in float32 by weights stored as float16.
                weights = graph.tensors[op.inputs[1]]
                assert weights.type == schema.TensorType.FLOAT32 and model.buffers[weights.buffer].data is None
                source = producer[op.inputs[1]]
                assert op_code(model, source) == OP.DEQUANTIZE
                constant = graph.tensors[source.inputs[0]]
                assert constant.type == schema.TensorType.FLOAT16 and list(constant.shape) == [64, 32]
                searches += 1
        assert searches == (1 if name == "encoder" else 2)  # vqvae: encode and reconstruct


@pytest.mark.slow
def test_tflite_int8_has_no_standalone_relu(exported):
    from tensorflow.lite.python import schema_py_generated as schema

    from vqvae_tf.export.tflite_graph import OP, op_code

    # Each residual block's pre-activation RELU runs fused into a copy of its
    # producer (`fuse_standalone_relus`): XNNPACK does not take a standalone int8 RELU.
    for name in ("encoder", "decoder", "vqvae"):
        model = _tflite_model(exported / f"tflite/{name}_int8.tflite")
        relus = [
            op
            for graph in model.subgraphs
            for op in graph.operators
            if op_code(model, op) == OP.RELU and graph.tensors[op.inputs[0]].type == schema.TensorType.INT8
        ]
        assert not relus, name


def test_fuse_standalone_relus_and_share_relu_copies_keep_outputs():
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from vqvae_tf.export.tflite import fuse_standalone_relus, share_relu_copies
    from vqvae_tf.export.tflite_graph import OP, op_code

    # A residual block: the skip reads the convolution's output un-activated,
    # so the converter leaves relu(x) as a standalone RELU (and relu(x + y) too).
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    y = keras.layers.Conv2D(8, 1)(keras.layers.ReLU()(x))
    added = keras.layers.Add()([x, y])
    model = keras.Model(inputs, keras.layers.Concatenate()([keras.layers.ReLU()(added), added]))
    rng = np.random.default_rng(0)
    images = rng.random((16, 16, 16, 3), dtype=np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([images[i : i + 1]] for i in range(len(images)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_output_type = tf.int8  # compare in quantization steps
    original = converter.convert()
    fused = fuse_standalone_relus(original)

    def relus(content):
        tree = _tflite_model_bytes(content)
        return sum(op_code(tree, op) == OP.RELU for graph in tree.subgraphs for op in graph.operators)

    assert relus(original) == 2 and relus(fused) == 0
    assert fuse_standalone_relus(fused) == fused  # nothing left to fuse

    def run(content, batch):
        interpreter = Interpreter(model_content=content)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch)
        interpreter.invoke()
        output = interpreter.get_output_details()[0]
        return interpreter.get_tensor(output["index"]).astype(np.int32), output["quantization"]

    errors = {"original": [], "fused": []}
    for i in range(8):
        (want, (scale, zero)), (got, _) = run(original, images[i : i + 1]), run(fused, images[i : i + 1])
        # One rounding instead of two: at most one quantization step from the original.
        assert np.max(np.abs(got - want)) <= 1, np.max(np.abs(got - want))
        exact = model(images[i : i + 1]).numpy()
        errors["original"].append(np.mean(np.abs((want - zero) * scale - exact)))
        errors["fused"].append(np.mean(np.abs((got - zero) * scale - exact)))
    # ... and no further from the float model than the original was.
    assert np.mean(errors["fused"]) <= np.mean(errors["original"]), errors

    # The RELU copy of the 3x3 convolution (its raw output feeds the skip)
    # becomes a 1x1 identity depthwise convolution: the convolution runs once.
    shared = share_relu_copies(fused)

    def ops(content, builtin):
        tree = _tflite_model_bytes(content)
        return sum(op_code(tree, op) == builtin for graph in tree.subgraphs for op in graph.operators)

    assert (ops(fused, OP.CONV_2D), ops(fused, OP.DEPTHWISE_CONV_2D)) == (3, 0)
    assert (ops(shared, OP.CONV_2D), ops(shared, OP.DEPTHWISE_CONV_2D)) == (2, 1)
    assert share_relu_copies(shared) == shared  # nothing left to share
    for i in range(8):
        (want, _), (got, _) = run(fused, images[i : i + 1]), run(shared, images[i : i + 1])
        # relu(x) requantized from int8 x (two roundings, as the standalone RELU did): one step at most.
        assert np.max(np.abs(got - want)) <= 1, np.max(np.abs(got - want))


@pytest.mark.slow
def test_tflite_decoders_have_no_transposed_convolution(exported):
    from vqvae_tf.export.tflite_graph import OP, op_code

    # Decoders upsample with pad, convolution, depth-to-space and slice, all
    # delegated to XNNPACK; TRANSPOSE_CONV with a run-time output shape is not.
    for quantization in export.QUANTIZATIONS:
        for name in ("decoder", "vqvae"):
            model = _tflite_model(exported / f"tflite/{name}_{quantization}.tflite")
            codes = {op_code(model, op) for graph in model.subgraphs for op in graph.operators}
            assert OP.TRANSPOSE_CONV not in codes and OP.DEPTH_TO_SPACE in codes, (name, quantization)


@pytest.mark.slow
def test_tflite_int8_io(trained, data, tmp_path):
    from vqvae_tf.export import saved_model, tflite

    train, images = data
    saved_model.write_saved_model(trained, tmp_path / "sm")
    calibration = {"images": train[::16][:64], "codes": trained.codes(train[::16][:64]).numpy()}
    fields = metadata.model_fields(trained, "test")
    paths = {}
    for name, signatures in (("encoder", ("encode",)), ("decoder", ("decode",))):
        content = tflite.convert(tmp_path / "sm", signatures, "int8", calibration, int8_io=True)
        paths[name] = tmp_path / f"{name}.tflite"
        atomic.write_bytes(paths[name], content)
        metadata.write_json(
            paths[name].with_suffix(".json"), metadata.sidecar(fields, "tflite", name, signatures, "int8", True)
        )
    encoder, decoder = LiteEncoder(paths["encoder"]), LiteDecoder(paths["decoder"])
    assert encoder._input_detail["dtype"] == np.int8 and decoder._output_detail["dtype"] == np.int8
    codes = trained.codes(images).numpy()
    # An integer-only code search ties more often (module docstring of
    # vqvae_tf.export.tflite); wrong scales or zero points would give chance level.
    assert np.mean(encoder.encode(images) == codes) >= 0.5
    float_psnr = psnr(trained.decode_codes(codes).numpy(), images)
    assert psnr(decoder.decode(codes), images) >= float_psnr - 1.0


# ---------------------------------------------------------------------- ONNX
@pytest.mark.slow
def test_onnx_matches_keras(exported, reference):
    assert_onnx_matches_keras(exported, *reference, num_reconstructed=8)


# ------------------------------------------------- residual: partial stages
RESIDUAL_STAGES = 3


@pytest.fixture(scope="module")
def residual_export(data, tmp_path_factory):
    train, images = data
    model = tiny_vqvae(
        32,
        "residual",
        seed=2,
        hidden_units=24,
        residual_units=12,
        code_dim=16,
        quantizer_config=dict(
            num_stages=RESIDUAL_STAGES, lookup_dim=8, quantizer_dropout=0.5, kmeans_init=True, seed=1
        ),
    )
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    model.fit(train, batch_size=64, epochs=2, verbose=0)
    out = tmp_path_factory.mktemp("residual") / "model"
    export_model(
        model,
        out,
        formats=("tflite",),
        quantizations=("float32", "float16", "int8"),
        representative_data=train[::8][:256],
    )
    return model, out


@pytest.mark.slow
def test_one_residual_decoder_decodes_every_prefix_of_the_stages(residual_export, data, record_property):
    # The codec keeps the first n stages and pads the rest with `absent_code`:
    # each exported decoder must give the Keras model's n-stage reconstruction.
    model, out = residual_export
    _, images = data
    codes = model.codes(images).numpy()
    absent = model.quantizer.absent_code
    sidecar = json.loads((out / "tflite/decoder_float16.json").read_text())
    assert sidecar["absent_code"] == absent == 32 and sidecar["code_shape"] == [RESIDUAL_STAGES]
    decoders = {q: LiteDecoder(out / f"tflite/decoder_{q}.tflite") for q in ("float32", "float16", "int8")}
    previous = None
    for stages in range(1, RESIDUAL_STAGES + 1):
        padded = codes.copy()
        padded[..., stages:] = absent
        keras_out = model.decode_codes(codes[..., :stages]).numpy()
        np.testing.assert_allclose(model.decode_codes(padded).numpy(), keras_out, atol=1e-6)
        assert np.max(np.abs(decoders["float32"].decode(padded) - keras_out)) <= 1e-4
        keras_psnr = psnr(keras_out, images)
        for quantization in ("float16", "int8"):
            got = psnr(decoders[quantization].decode(padded), images)
            record_property(f"psnr_{quantization}_{stages}", got)
            # The int8 bar of test_tflite_int8, applied to every prefix (and to float16). Measured:
            # Keras 20.30 / 20.75 / 20.74 dB for 1 / 2 / 3 stages, float16 within 0.002 dB, int8 +0.01 dB.
            assert got >= keras_psnr - 0.5, (quantization, stages, got, keras_psnr)
        record_property(f"psnr_keras_{stages}", keras_psnr)
        # Each stage changes the output, so a stage wrongly read as absent (or present) would show.
        assert previous is None or np.mean(np.abs(keras_out - previous)) > 1e-3
        previous = keras_out
    with pytest.raises(ValueError, match=r"\[0, 32\) or 32 \(absent\); received values in \[33, 33\]"):
        decoders["float32"].decode(np.full_like(codes[:1], 33))


# ------------------------------------------------------------ registry sweep
SWEEP_CODES = 64


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(QUANTIZERS))
@pytest.mark.parametrize("l2_normalize", [False, True], ids=["l2=False", "l2=True"])
def test_every_quantizer_exports(kind, l2_normalize, tmp_path):
    import onnxruntime
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    if l2_normalize:
        try:
            get_quantizer(kind, num_codes=SWEEP_CODES, code_dim=8, l2_normalize=True)
        except ValueError as error:  # rejected by design: it must say so at construction
            assert "l2_normalize" in str(error)
            return
    model = tiny_vqvae(SWEEP_CODES, kind, quantizer_config={"l2_normalize": l2_normalize})
    images = np.random.default_rng(0).random((2, 16, 24, 3), dtype=np.float32)
    model(images)
    codes = model.codes(images).numpy()
    out = export_model(model, tmp_path / "out", formats=("saved_model", "tflite", "onnx"), quantizations=("float32",))
    assert np.mean(LiteEncoder(out / "tflite/encoder_float32.tflite").encode(images) == codes) >= 0.99
    decoded = LiteDecoder(out / "tflite/decoder_float32.tflite").decode(codes)
    assert np.max(np.abs(decoded - model.decode_codes(codes).numpy())) <= 1e-4
    session = onnxruntime.InferenceSession(str(out / "onnx/encoder.onnx"), providers=["CPUExecutionProvider"])
    assert np.mean(session.run(["codes"], {"images": images})[0] == codes) >= 0.99
    loaded = tf.saved_model.load(str(out / "saved_model"))
    np.testing.assert_array_equal(loaded.signatures["encode"](images=tf.constant(images))["codes"], codes)


# --------------------------------------------------------------- bad inputs
@pytest.fixture(scope="module")
def small_model():
    model = tiny_vqvae(8, hidden_units=8, residual_units=4, num_residual_blocks=0, code_dim=4)
    model(np.zeros((1, 8, 8, 3), np.float32))
    return model


def test_bad_inputs_raise_export_error(small_model, tmp_path):
    cases = [
        (dict(model_or_path=tmp_path / "missing.keras"), "does not exist"),
        (dict(formats=("saved_model", "pb")), "unknown format 'pb'"),
        (dict(quantizations=("int4",)), "unknown quantization 'int4'"),
        (dict(formats=("onnx",), opset=19), "opset must be one of 15, 16, 17, 18"),
        (dict(formats=("tflite",), quantizations=("int8",)), "needs representative_data"),
        (dict(formats=("tflite",), quantizations=("int8",), representative_data=np.zeros((0, 8, 8, 3))), "empty"),
        (
            dict(formats=("tflite",), quantizations=("int8",), representative_data=np.zeros((2, 8, 8, 1))),
            "must be shaped",
        ),
        (
            dict(formats=("tflite",), quantizations=("int8",), representative_data=np.zeros((2, 10, 8, 3))),
            "multiples of downsample=4",
        ),
        (
            dict(formats=("tflite",), quantizations=("int8",), representative_data=np.full((2, 8, 8, 3), 255.0)),
            "must lie in [0, 1]",
        ),
    ]
    for kwargs, message in cases:
        kwargs = {"model_or_path": small_model, "out_dir": tmp_path / "out", **kwargs}
        with pytest.raises(ExportError, match=None) as info:
            export_model(**kwargs)
        assert message in str(info.value), (kwargs, str(info.value))
        assert "\n" not in str(info.value)
        assert not (tmp_path / "out").exists()
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(tmp_path / "dense.keras")
    with pytest.raises(ExportError, match="expected a vqvae_tf.VQVAE model; received Sequential"):
        export_model(tmp_path / "dense.keras", tmp_path / "out")
    (tmp_path / "garbage.keras").write_bytes(b"not a zip")
    with pytest.raises(
        ExportError, match="garbage.keras \\(9 bytes\\) is not a .keras archive: it is truncated or not a zip file"
    ):
        export_model(tmp_path / "garbage.keras", tmp_path / "out")
    (tmp_path / "exists").mkdir()
    with pytest.raises(ExportError, match="already exists"):
        export_model(small_model, tmp_path / "exists", formats=("saved_model",))
    conditioned = tiny_vqvae(8, num_speakers=2)
    conditioned((np.zeros((1, 8, 8, 3), "float32"), np.zeros(1, "int32")))
    with pytest.raises(
        ExportError, match="unconditioned VQVAEs only; .* speaker-conditioned decoder \\(num_speakers=2\\)"
    ):
        export_model(conditioned, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_interrupted_export_leaves_nothing(small_model, tmp_path, monkeypatch):
    from vqvae_tf.export import tflite

    def fail(*args, **kwargs):
        raise RuntimeError("converter died midway")

    monkeypatch.setattr(tflite, "convert", fail)
    with pytest.raises(RuntimeError, match="midway"):
        export_model(small_model, tmp_path / "out", formats=("saved_model", "tflite"), quantizations=("float32",))
    assert sorted(os.listdir(tmp_path)) == []
    # With overwrite, a failure keeps the old export untouched.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="midway"):
        export_model(small_model, tmp_path / "out", formats=("tflite",), quantizations=("float32",), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["out"] and (tmp_path / "out" / "old.txt").exists()
    monkeypatch.undo()
    export_model(small_model, tmp_path / "out", formats=("saved_model",), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert sorted(os.listdir(tmp_path / "out")) == ["export.json", "saved_model"]


@pytest.mark.slow
def test_cli(small_model, tmp_path):
    small_model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "rep.npz", images=np.random.default_rng(0).integers(0, 255, (8, 8, 8, 3), dtype=np.uint8))
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "export",
            "--model",
            str(tmp_path / "model.keras"),
            "--out",
            str(tmp_path / "out"),
            "--formats",
            "tflite",
            "--quantize",
            "int8",
            "--representative",
            f"npz:{tmp_path / 'rep.npz'}",
        ],
        env=ENV,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "out/tflite/encoder_int8.tflite").is_file()
    # Bad input is caught before TensorFlow is imported, so these are quick.
    for argv, message in [
        (["--model", str(tmp_path / "nope.keras"), "--out", str(tmp_path / "o2")], "does not exist"),
        (["--model", str(tmp_path / "model.keras"), "--out", str(tmp_path / "o2"), "--formats", "pb"], "--formats"),
        (
            ["--model", str(tmp_path / "model.keras"), "--out", str(tmp_path / "o2"), "--quantize", "int8"],
            "needs --representative",
        ),
        (["--model", str(tmp_path / "model.keras"), "--out", str(tmp_path / "out")], "already exists"),
    ]:
        bad = subprocess.run([sys.executable, "-m", "export", *argv], env=ENV, cwd=REPO, capture_output=True, text=True)
        assert bad.returncode == 2, bad.stderr[-2000:]
        assert message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr[-2000:]


def test_audio_calibration_crops_leave_the_excluded_clips_out(tmp_path):
    from vqvae_tf.export.cli import load_representative
    from vqvae_tf.utils.wav import write_wav

    for index, level in enumerate((0.1, 0.2, 0.3)):  # each clip at its own constant level
        write_wav(tmp_path / f"clip{index}.wav", np.full(4000, level, np.float32), 16000)
    (tmp_path / "held_out.txt").write_text("clip1\n")
    data = load_representative(f"audio:{tmp_path}", 800, 64, exclude=tmp_path / "held_out.txt")
    crops = np.concatenate([np.asarray(x[0] if isinstance(x, tuple) else x) for x in data])
    assert crops.shape[1:] == (800, 1) and len(crops) >= 8
    levels = {round(float(m), 2) for m in crops.reshape(len(crops), -1).mean(axis=1)}
    assert levels == {0.1, 0.3}  # never the held-out clip's 0.2
    with pytest.raises(ExportError, match="--representative_exclude is for an audio:DIR spec"):
        load_representative("photos", 32, 8, exclude=tmp_path / "held_out.txt")


# ------------------------------------------------------------ lite runtime
@pytest.mark.slow
def test_lite_runtime_errors(exported, tmp_path):
    encoder = LiteEncoder(exported / "tflite/encoder_float32.tflite")
    decoder = LiteDecoder(exported / "tflite/decoder_float32.tflite")
    assert encoder.encode(np.zeros((8, 12, 3), np.uint8)).shape == (2, 3)  # one image, any multiple of 4
    assert decoder.decode(np.zeros((2, 3), np.int64)).shape == (8, 12, 3)
    bad_encode = [
        (np.zeros((1, 10, 8, 3), np.float32), ValueError, "multiples of 4"),
        (np.zeros((1, 8, 8, 1), np.float32), ValueError, "C=3"),
        (np.zeros((8, 3), np.float32), ValueError, "shaped"),
        (np.zeros((1, 8, 8, 3), np.int32), TypeError, "uint8 or float"),
        (np.full((1, 8, 8, 3), 255.0, np.float32), ValueError, r"\[0, 1\]"),
        (np.full((1, 8, 8, 3), np.nan, np.float32), ValueError, "NaN"),
    ]
    for value, error, message in bad_encode:
        with pytest.raises(error, match=message):
            encoder.encode(value)
    for value, error, message in [
        (np.full((1, 2, 2), 64), ValueError, r"\[0, 64\)"),
        (np.full((1, 2, 2), -1), ValueError, r"\[0, 64\)"),
        (np.zeros((1, 2, 2), np.float32), TypeError, "integer codes"),
        (np.zeros((1, 2, 2, 1), np.int32), ValueError, "shaped"),
    ]:
        with pytest.raises(error, match=message):
            decoder.decode(value)
    with pytest.raises(FileNotFoundError, match="not found"):
        LiteEncoder(tmp_path / "missing.tflite")
    (tmp_path / "lonely.tflite").write_bytes((exported / "tflite/encoder_float32.tflite").read_bytes())
    with pytest.raises(FileNotFoundError, match="sidecar"):
        LiteEncoder(tmp_path / "lonely.tflite")
    with pytest.raises(ValueError, match="needs 'decode'"):
        LiteDecoder(exported / "tflite/encoder_float32.tflite")


NO_TENSORFLOW = """
import importlib.util, sys
import numpy as np
sys.modules["tensorflow"] = sys.modules["keras"] = None  # any import of them now fails
spec = importlib.util.spec_from_file_location("lite_runtime", sys.argv[1])
lite_runtime = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lite_runtime)
codes = lite_runtime.LiteEncoder(sys.argv[2]).encode(np.zeros((1, 8, 8, 3), np.uint8))
assert codes.shape == (1, 2, 2) and codes.dtype == np.int32
"""


@pytest.mark.slow
def test_lite_runtime_runs_without_tensorflow(exported):
    # The package __init__ registers Keras classes when TensorFlow is
    # installed; the module itself must need neither TensorFlow nor Keras.
    subprocess.run(
        [
            sys.executable,
            "-c",
            NO_TENSORFLOW,
            str(REPO / "vqvae_tf/codec/lite_runtime.py"),
            str(exported / "tflite/encoder_int8.tflite"),
        ],
        check=True,
        env=ENV,
        capture_output=True,
    )

"""Latency of exported encoders and decoders on CPU: TFLite variants, SavedModel, ONNX.

Exports a model of realistic width (untrained weights are enough for
latency; int8 is calibrated on crops of the bundled training photos), then
times encode and decode of one 512x512 RGB image with 2 threads in each
runtime, and prints a table with file sizes and speed ratios against the
float32 SavedModel. The runtimes are timed round-robin (one run of each per
repeat, medians reported), so load from other jobs on this shared machine
hits all of them alike, with a pause (`--cooldown_ms`) before each timed
run: TensorFlow's and XNNPACK's thread pools spin for a while after a call,
and without the pause each runtime's spinning threads slowed the next one
(SavedModel encode 122 ms timed back to back, 82 ms with the pause). A
server runs one runtime, so the pause is the fairer measure. Writes
bench/results/export_latency.json (with the load average before and after).

    TF_CPP_MIN_LOG_LEVEL=2 python bench/export_latency.py [--hidden_units 128 --downsample 4]
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLAGS = flags.FLAGS
flags.DEFINE_integer("hidden_units", 128, "Encoder/decoder channels.", lower_bound=1)
flags.DEFINE_integer("residual_units", 64, "Channels inside residual blocks.", lower_bound=1)
flags.DEFINE_integer("num_residual_blocks", 2, "Residual blocks.", lower_bound=0)
flags.DEFINE_enum("downsample", "4", ["2", "4", "8", "16"], "Downsampling factor.")
flags.DEFINE_integer("num_codes", 512, "Codebook size K.", lower_bound=2)
flags.DEFINE_integer("code_dim", 64, "Code vector size D.", lower_bound=1)
flags.DEFINE_integer("image_size", 512, "Side of the timed RGB image.", lower_bound=16)
flags.DEFINE_integer("repeats", 20, "Timed runs per measurement (median reported).", lower_bound=1)
flags.DEFINE_integer("cooldown_ms", 50, "Pause before each timed run, so no thread pool still spins.", lower_bound=0)
flags.DEFINE_integer("threads", 2, "CPU threads of every runtime.", lower_bound=1)
flags.DEFINE_string("out", str(Path(__file__).resolve().parent / "results" / "export_latency.json"), "JSON output.")


def interleaved_medians(fns, repeats, cooldown=0.0):
    """Median seconds of each callable, timed round-robin."""
    for fn in fns.values():
        fn()  # warm-up: allocation, delegate and graph set-up
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(cooldown)
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    import onnxruntime

    from vqvae_tf.codec.lite_runtime import LiteDecoder, LiteEncoder
    from vqvae_tf.data.embedded_photos import load_photo, photo_names
    from vqvae_tf.data.image_arrays import tiles
    from vqvae_tf.export.api import export_model
    from vqvae_tf.models.vqvae import VQVAE

    keras.utils.set_random_seed(0)
    factor = int(FLAGS.downsample)
    model = VQVAE(
        input_channels=3,
        downsample=factor,
        hidden_units=FLAGS.hidden_units,
        residual_units=FLAGS.residual_units,
        num_residual_blocks=FLAGS.num_residual_blocks,
        num_codes=FLAGS.num_codes,
        code_dim=FLAGS.code_dim,
        quantizer="ema",
    )
    model(np.zeros((1, 64, 64, 3), np.float32))
    crops = np.concatenate([tiles(load_photo(n), 64) for n in photo_names("train")[:6]])
    crops = crops[np.random.default_rng(0).permutation(len(crops))[:128]]
    size = FLAGS.image_size
    image = np.asarray(tf.image.resize(load_photo("chelsea")[None], (size, size)), np.float32) / 255.0
    codes = model.codes(image).numpy()

    load_before = os.getloadavg()
    results, timed = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        out = export_model(model, Path(tmp) / "export", representative_data=crops)

        def size_of(*parts):
            return sum((out / p).stat().st_size for p in parts)

        def saved_model_bytes():
            return sum(p.stat().st_size for p in (out / "saved_model").rglob("*") if p.is_file())

        loaded = tf.saved_model.load(str(out / "saved_model"))
        encode, decode = loaded.signatures["encode"], loaded.signatures["decode"]
        image_tensor, codes_tensor = tf.constant(image), tf.constant(codes)
        results.append(
            dict(
                runtime="SavedModel (TF) float32",
                encoder_bytes=saved_model_bytes(),
                decoder_bytes=saved_model_bytes(),
                code_agreement=1.0,
            )
        )
        timed["SavedModel (TF) float32"] = (
            lambda: encode(images=image_tensor)["codes"].numpy(),
            lambda: decode(codes=codes_tensor)["images"].numpy(),
        )
        for quantization in ("float32", "float16", "dynamic", "int8"):
            encoder = LiteEncoder(out / f"tflite/encoder_{quantization}.tflite", num_threads=FLAGS.threads)
            decoder = LiteDecoder(out / f"tflite/decoder_{quantization}.tflite", num_threads=FLAGS.threads)
            name = f"TFLite {quantization}"
            results.append(
                dict(
                    runtime=name,
                    encoder_bytes=size_of(f"tflite/encoder_{quantization}.tflite"),
                    decoder_bytes=size_of(f"tflite/decoder_{quantization}.tflite"),
                    code_agreement=float(np.mean(encoder.encode(image) == codes)),
                )
            )
            timed[name] = (lambda e=encoder: e.encode(image), lambda d=decoder: d.decode(codes))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = FLAGS.threads
        options.inter_op_num_threads = 1
        sessions = {
            n: onnxruntime.InferenceSession(str(out / f"onnx/{n}.onnx"), options, providers=["CPUExecutionProvider"])
            for n in ("encoder", "decoder")
        }
        results.append(
            dict(
                runtime="onnxruntime float32",
                encoder_bytes=size_of("onnx/encoder.onnx"),
                decoder_bytes=size_of("onnx/decoder.onnx"),
                code_agreement=float(np.mean(sessions["encoder"].run(["codes"], {"images": image})[0] == codes)),
            )
        )
        timed["onnxruntime float32"] = (
            lambda: sessions["encoder"].run(["codes"], {"images": image}),
            lambda: sessions["decoder"].run(["images"], {"codes": codes}),
        )
        fns = {(name, i): pair[i] for name, pair in timed.items() for i in (0, 1)}
        medians = interleaved_medians(fns, FLAGS.repeats, FLAGS.cooldown_ms / 1000)
        for row in results:
            row["encode_s"], row["decode_s"] = medians[(row["runtime"], 0)], medians[(row["runtime"], 1)]

    base = results[0]
    for row in results:
        row["encode_speedup_vs_saved_model"] = base["encode_s"] / row["encode_s"]
        row["decode_speedup_vs_saved_model"] = base["decode_s"] / row["decode_s"]
    header = (
        f"{'runtime':26s} {'encode ms':>10s} {'x SM':>6s} {'decode ms':>10s} {'x SM':>6s} "
        f"{'enc KB':>8s} {'dec KB':>8s} {'codes=':>7s}"
    )
    print(
        f"{size}x{size} RGB, {FLAGS.threads} threads; model hidden={FLAGS.hidden_units} "
        f"residual={FLAGS.residual_units}x{FLAGS.num_residual_blocks} f={factor} K={FLAGS.num_codes} "
        f"D={FLAGS.code_dim} (untrained, int8 calibrated on 128 photo crops)"
    )
    print(header)
    for row in results:
        print(
            f"{row['runtime']:26s} {row['encode_s'] * 1e3:10.1f} {row['encode_speedup_vs_saved_model']:6.2f} "
            f"{row['decode_s'] * 1e3:10.1f} {row['decode_speedup_vs_saved_model']:6.2f} "
            f"{row['encoder_bytes'] / 1024:8.0f} {row['decoder_bytes'] / 1024:8.0f} {row['code_agreement']:7.3f}"
        )
    by_name = {r["runtime"]: r for r in results}
    int8_ratio = by_name["TFLite int8"]["encoder_bytes"] / by_name["TFLite float32"]["encoder_bytes"]
    lite32, lite8 = by_name["TFLite float32"], by_name["TFLite int8"]
    print(
        f"vs SavedModel: int8 encoder {lite8['encode_speedup_vs_saved_model']:.2f}x (target >= 2); "
        f"float32 encoder {lite32['encode_speedup_vs_saved_model']:.2f}x, float32 decoder "
        f"{lite32['decode_speedup_vs_saved_model']:.2f}x, int8 decoder {lite8['decode_speedup_vs_saved_model']:.2f}x "
        f"(target >= 1); int8/float32 size: encoder {int8_ratio:.3f}, decoder "
        f"{lite8['decoder_bytes'] / lite32['decoder_bytes']:.3f} (target <= 0.3)"
    )
    from vqvae_tf.export.metadata import write_json

    Path(FLAGS.out).parent.mkdir(parents=True, exist_ok=True)
    config = {
        k: FLAGS[k].value
        for k in (
            "hidden_units",
            "residual_units",
            "num_residual_blocks",
            "downsample",
            "num_codes",
            "code_dim",
            "image_size",
            "repeats",
            "cooldown_ms",
            "threads",
        )
    }
    write_json(
        FLAGS.out,
        {
            "config": config,
            "cpu_count": os.cpu_count(),
            "results": results,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "timing": "round-robin over runtimes, a cooldown_ms pause before each run, median of repeats",
            "command": " ".join(sys.argv),
        },
    )
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)

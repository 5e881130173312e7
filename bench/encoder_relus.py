"""The int8 encoders with and without `share_relu_copies`, beside Pillow's JPEG and WebP encoders.

`fuse_standalone_relus` gives each residual block's pre-activation RELU a
copy of its producer; where that producer is a convolution whose raw output
the skip still reads, the copy computes the convolution twice.
`share_relu_copies` replaces such a copy by a 1x1 identity depthwise
convolution (`vqvae_tf.export.tflite_relus`). For each int8 encoder given
(default: every shipped image model's), this times the file as it was
before the rewrite (`--before DIR` holds those files; default: the files
themselves, rewritten here for the "after" side) against the rewritten one
in LiteRT on one photo, round-robin with a pause before each timed call
(XNNPACK's threads spin after a call), medians of `--repeats`, and prints
the ratio. On `--photos` held-out photos it also reports the share of equal
codes and the PSNR of both encoders' codes through the model's decoder, all
stages. Pillow's JPEG (quality 10) and WebP (quality 10, method 6) encode
the timed photo after them, with the same pauses and medians, for scale.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/encoder_relus.py [--photo PATH] [--repeats 15] [--photos 15]

Writes bench/results/encoder_relus.json (atomically).
"""

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from PIL import Image  # noqa: E402

from vqvae_tf.export.tflite_relus import share_relu_copies  # noqa: E402
from vqvae_tf.utils.atomic import write_bytes  # noqa: E402

PRETRAINED = REPO / "vqvae_tf" / "pretrained"
VALID = REPO.parent / "shared" / "data" / "photos" / "valid"
PAUSE_S = 0.2


def load_photo(path, multiple=8):
    image = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0
    return image[: image.shape[0] // multiple * multiple, : image.shape[1] // multiple * multiple]


def runner(content, shape, threads, dtype=np.float32):
    interpreter = Interpreter(model_content=content, num_threads=threads)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, shape)
    interpreter.allocate_tensors()
    output = interpreter.get_output_details()[0]["index"]

    def run(x):
        interpreter.set_tensor(index, x.astype(dtype))
        interpreter.invoke()
        return interpreter.get_tensor(output).copy()

    return run


def psnr(x, y):
    return float(10 * np.log10(1.0 / np.mean((np.clip(y, 0, 1) - x) ** 2)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help="Shipped model name (repeatable; default: every image model).")
    parser.add_argument("--before", type=Path, help="Folder of <model>/encoder_int8.tflite files before the rewrite.")
    parser.add_argument("--photo", type=Path, default=VALID / "wikipedia_001.png")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--photos", type=int, default=15, help="Held-out photos for codes and PSNR (0: none).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "encoder_relus.json")
    args = parser.parse_args()
    names = args.model or sorted(p.parent.name for p in PRETRAINED.glob("*/encoder_int8.tflite"))
    photo = load_photo(args.photo)[None]
    valid = sorted(VALID.iterdir())
    valid = valid[:: max(1, len(valid) // args.photos)][: args.photos] if args.photos else []
    results = {"photo": str(args.photo), "shape": list(photo.shape), "threads": args.threads, "models": {}}
    for name in names:
        directory = PRETRAINED / name
        before = ((args.before / name) if args.before else directory) / "encoder_int8.tflite"
        old = before.read_bytes()
        new = share_relu_copies(old)
        runs = {"before": runner(old, photo.shape, args.threads), "after": runner(new, photo.shape, args.threads)}
        times = {key: [] for key in runs}
        for _ in range(args.repeats):
            for key, run in runs.items():
                time.sleep(PAUSE_S)
                start = time.perf_counter()
                run(photo)
                times[key].append(1000 * (time.perf_counter() - start))
        medians = {key: statistics.median(values) for key, values in times.items()}
        row = {
            "before_ms": medians["before"],
            "after_ms": medians["after"],
            "ratio": medians["after"] / medians["before"],
        }
        if valid:
            decoder = json.loads((directory / "codec.json").read_text())["decoder"]
            agree, scores = [], {"before": [], "after": []}
            for path in valid:
                x = load_photo(path)[None]
                codes = {key: runner(c, x.shape, args.threads)(x) for key, c in (("before", old), ("after", new))}
                agree.append(float(np.mean(codes["before"] == codes["after"])))
                for key, c in codes.items():
                    interpreter = Interpreter(
                        model_content=(directory / decoder).read_bytes(), num_threads=args.threads
                    )
                    index = interpreter.get_input_details()[0]["index"]
                    interpreter.resize_tensor_input(index, c.shape)
                    interpreter.allocate_tensors()
                    interpreter.set_tensor(index, c.astype(np.int32))
                    interpreter.invoke()
                    scores[key].append(psnr(x, interpreter.get_tensor(interpreter.get_output_details()[0]["index"])))
            row.update(
                equal_codes=float(np.mean(agree)),
                psnr_before=float(np.mean(scores["before"])),
                psnr_after=float(np.mean(scores["after"])),
                photos=len(valid),
            )
        results["models"][name] = row
        line = f"{name}: int8 encoder {row['before_ms']:.1f} -> {row['after_ms']:.1f} ms (x{row['ratio']:.3f})"
        if valid:
            line += (
                f"; codes equal {row['equal_codes']:.1%}, PSNR {row['psnr_before']:.3f} -> {row['psnr_after']:.3f} dB"
                f" on {row['photos']} held-out photos"
            )
        print(line, flush=True)
    peers = {}
    image = Image.fromarray((photo[0] * 255).round().astype(np.uint8))
    for label, kwargs in (
        ("JPEG q10", dict(format="JPEG", quality=10)),
        ("WebP q10 m6", dict(format="WEBP", quality=10, method=6)),
    ):
        values = []
        for _ in range(args.repeats):
            time.sleep(PAUSE_S)
            start = time.perf_counter()
            image.save(io.BytesIO(), **kwargs)
            values.append(1000 * (time.perf_counter() - start))
        peers[label] = statistics.median(values)
        print(f"Pillow {label}: {peers[label]:.1f} ms", flush=True)
    results["pillow_ms"] = peers
    write_bytes(args.out, (json.dumps(results, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()

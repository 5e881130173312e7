"""Quantizer forward + backward throughput beside Sonnet and vector-quantize-pytorch.

One training step of each quantizer on N vectors of width D with K codes, in
ONE process, interleaved (every round runs each variant once, so machine noise
hits all alike), after warm-up, median of the rounds:

* ours: `VectorQuantizer`, `VectorQuantizerEMA` (`training=True`), inside
  `tf.function` as Keras's `fit` runs them;
* DeepMind Sonnet 2 `snt.nets.VectorQuantizer` / `VectorQuantizerEMA`
  (`is_training=True`) inside `tf.function`, as Sonnet's docs recommend;
* vector-quantize-pytorch `VectorQuantize` (EMA codebook, and learnable
  codebook) in eager PyTorch, its documented use, when installed;
* reference points: the float32 `(N, D) x (D, K)` matmul alone, and our
  nearest-code search alone.

A step is: forward with state updates, then gradients of `loss` and of
`sum(quantized * upstream)` (a fixed upstream gradient, as a decoder would
send) with respect to the inputs and every trainable weight.

Each step's wall time and process CPU time (user + system, all threads) are
recorded: CPU time is the steadier figure when other jobs share the machine.

    pip install -r requirements-bench.txt
    TF_CPP_MIN_LOG_LEVEL=2 python bench/quantizer.py [--rounds 15] [--json bench/results/quantizer.json]
"""

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

# libgomp's worker threads spin after each PyTorch op; interleaved with
# TensorFlow they would steal the cores from the next variant.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from vqvae_tf.quantizers.code_search import nearest_codes  # noqa: E402
from vqvae_tf.quantizers.ema import VectorQuantizerEMA  # noqa: E402
from vqvae_tf.quantizers.vector_quantizer import VectorQuantizer  # noqa: E402
from vqvae_tf.utils import atomic  # noqa: E402

TARGET_VS_SONNET = 1.5  # our throughput / each Sonnet quantizer's
TARGET_VS_MATMUL = 1.3  # our step time / one distance matmul's


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _tf_step(layer_call, variables, inputs, upstream, loss_key, quantized_key):
    """A tf.function training step of a TF quantizer; returns the gradients."""

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            out = layer_call(inputs)
            targets = [out[loss_key], out[quantized_key]]
        grads = tape.gradient(
            targets, [inputs] + list(variables()), output_gradients=[tf.ones_like(targets[0]), upstream]
        )
        return [g for g in grads if g is not None]

    return step


def _ours(cls, inputs, upstream, num_codes, **kwargs):
    layer = cls(num_codes=num_codes, code_dim=inputs.shape[-1], seed=0, **kwargs)
    layer.build(inputs.shape)
    return _tf_step(
        lambda x: layer(x, training=True), lambda: layer.trainable_variables, inputs, upstream, "loss", "quantized"
    )


def _sonnet(kind, inputs, upstream, num_codes):
    import sonnet as snt

    dim = inputs.shape[-1]
    if kind == "vq":
        layer = snt.nets.VectorQuantizer(embedding_dim=dim, num_embeddings=num_codes, commitment_cost=0.25)
    else:
        layer = snt.nets.VectorQuantizerEMA(
            embedding_dim=dim, num_embeddings=num_codes, commitment_cost=0.25, decay=0.99
        )
    layer(inputs[:2], is_training=False)  # creates the variables
    return _tf_step(
        lambda x: layer(x, is_training=True),
        lambda: [v for v in layer.variables if v.trainable],
        inputs,
        upstream,
        "loss",
        "quantize",
    )


def _torch_steps(inputs, upstream, num_codes, threads):
    """vector-quantize-pytorch variants, or {} when it is not installed."""
    try:
        import torch
        from vector_quantize_pytorch import VectorQuantize
    except ImportError:
        return {}, None
    torch.set_num_threads(threads)
    # (batch, positions, dim), as an encoder's flattened feature map.
    x = torch.from_numpy(inputs.numpy().reshape(16, -1, inputs.shape[-1])).requires_grad_(True)
    grad = torch.from_numpy(upstream.numpy().reshape(x.shape))
    dim = inputs.shape[-1]

    def make(**kwargs):
        layer = VectorQuantize(dim=dim, codebook_size=num_codes, commitment_weight=0.25, **kwargs).train()

        def step():
            quantized, _, loss = layer(x)
            torch.autograd.backward([loss.sum(), quantized], [None, grad])
            return x.grad

        return step

    steps = {
        "vqtorch EMA": make(decay=0.99),
        "vqtorch learnable": make(learnable_codebook=True, ema_update=False),
    }
    import vector_quantize_pytorch

    versions = {
        "torch": torch.__version__,
        "vector_quantize_pytorch": getattr(vector_quantize_pytorch, "__version__", None),
    }
    return steps, versions


def _matmul_step(inputs, codebook):
    @tf.function
    def step():
        # One column out, so the (N, K) result stays inside the function like
        # the quantizers' score matrix (no hand-off of 128 MiB to Python).
        return tf.matmul(inputs, codebook, transpose_b=True)[:, :1]

    return step


def _search_step(inputs, codebook):
    @tf.function
    def step():
        return nearest_codes(inputs, codebook)

    return step


def _sync(result):
    """Forces the result (TF runs eagerly-synchronous on CPU; this is a guard)."""
    if isinstance(result, (list, tuple)):
        for item in result:
            _sync(item)
    elif hasattr(result, "numpy"):
        result.numpy()
    elif hasattr(result, "detach"):
        result.detach()


def measure(steps, rounds, warmup):
    for step in steps.values():
        for _ in range(warmup):
            _sync(step())
    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            cpu_start, start = _cpu_seconds(), time.perf_counter()
            _sync(step())
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(_cpu_seconds() - cpu_start)
    return {
        name: {
            "wall_median_s": float(np.median(wall[name])),
            "wall_min_s": float(np.min(wall[name])),
            "cpu_median_s": float(np.median(cpu[name])),
            "wall_s": [float(t) for t in wall[name]],
        }
        for name in steps
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-vectors", type=int, default=65536)
    parser.add_argument("--code-dim", type=int, default=64)
    parser.add_argument("--num-codes", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-torch", action="store_true", help="skip vector-quantize-pytorch")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "quantizer.json")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n, d, k = args.num_vectors, args.code_dim, args.num_codes
    inputs = tf.constant(rng.standard_normal((n, d)).astype(np.float32))
    upstream = tf.constant(rng.standard_normal((n, d)).astype(np.float32) / n)
    codebook = tf.constant((rng.uniform(-1, 1, (k, d)) * np.sqrt(3.0 / d)).astype(np.float32))

    steps = {
        "matmul (N,D)x(D,K)": _matmul_step(inputs, codebook),
        "ours search only": _search_step(inputs, codebook),
        "ours VQ": _ours(VectorQuantizer, inputs, upstream, num_codes=k),
        "ours EMA": _ours(VectorQuantizerEMA, inputs, upstream, num_codes=k, decay=0.99),
        "sonnet VQ": _sonnet("vq", inputs, upstream, k),
        "sonnet EMA": _sonnet("ema", inputs, upstream, k),
    }
    torch_steps, torch_versions = ({}, None) if args.no_torch else _torch_steps(inputs, upstream, k, args.threads)
    steps.update(torch_steps)
    times = measure(steps, args.rounds, args.warmup)

    matmul = times["matmul (N,D)x(D,K)"]["wall_median_s"]
    for entry in times.values():
        entry["vs_matmul"] = entry["wall_median_s"] / matmul
        entry["vectors_per_s"] = n / entry["wall_median_s"]
    ratios = {
        "ours VQ vs sonnet VQ (throughput)": times["sonnet VQ"]["wall_median_s"] / times["ours VQ"]["wall_median_s"],
        "ours EMA vs sonnet EMA (throughput)": times["sonnet EMA"]["wall_median_s"]
        / times["ours EMA"]["wall_median_s"],
        "ours VQ step / matmul": times["ours VQ"]["vs_matmul"],
        "ours EMA step / matmul": times["ours EMA"]["vs_matmul"],
    }
    cpu_ratios = {
        "ours VQ vs sonnet VQ (throughput)": times["sonnet VQ"]["cpu_median_s"] / times["ours VQ"]["cpu_median_s"],
        "ours EMA vs sonnet EMA (throughput)": times["sonnet EMA"]["cpu_median_s"] / times["ours EMA"]["cpu_median_s"],
        "ours VQ step / matmul": times["ours VQ"]["cpu_median_s"] / times["matmul (N,D)x(D,K)"]["cpu_median_s"],
        "ours EMA step / matmul": times["ours EMA"]["cpu_median_s"] / times["matmul (N,D)x(D,K)"]["cpu_median_s"],
    }
    targets = {
        "ours VQ >= 1.5x sonnet VQ": ratios["ours VQ vs sonnet VQ (throughput)"] >= TARGET_VS_SONNET,
        "ours EMA >= 1.5x sonnet EMA": ratios["ours EMA vs sonnet EMA (throughput)"] >= TARGET_VS_SONNET,
        "ours VQ step <= 1.3x matmul": ratios["ours VQ step / matmul"] <= TARGET_VS_MATMUL,
        "ours EMA step <= 1.3x matmul": ratios["ours EMA step / matmul"] <= TARGET_VS_MATMUL,
    }

    print(f"N={n} D={d} K={k}, {args.rounds} interleaved rounds, threads={args.threads}, load avg {os.getloadavg()}")
    print(f"{'variant':<22} {'median s':>9} {'min s':>8} {'cpu s':>8} {'x matmul':>9} {'Mvec/s':>8}")
    for name, entry in times.items():
        print(
            f"{name:<22} {entry['wall_median_s']:>9.4f} {entry['wall_min_s']:>8.4f} {entry['cpu_median_s']:>8.4f} "
            f"{entry['vs_matmul']:>9.2f} {entry['vectors_per_s'] / 1e6:>8.2f}"
        )
    print(f"{'ratio':<38} {'wall':>6} {'cpu':>6}")
    for name, value in ratios.items():
        print(f"{name:<38} {value:>6.2f} {cpu_ratios[name]:>6.2f}")
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'MISSED'}")

    import sonnet

    result = {
        "config": {
            "num_vectors": n,
            "code_dim": d,
            "num_codes": k,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "threads": args.threads,
            "load_average_at_end": os.getloadavg(),
            "cpu": platform.processor(),
            "tensorflow": tf.__version__,
            "sonnet": sonnet.__version__,
            "torch": torch_versions,
        },
        "times": times,
        "ratios_wall": ratios,
        "ratios_cpu": cpu_ratios,
        "targets_met_wall": targets,
    }
    atomic.write_json(args.json, result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

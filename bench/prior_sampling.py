"""Transformer prior sampling speed with and without the key/value cache.

Runs both decoders of one (untrained) `TransformerPrior` in the same process,
after a warm-up call that traces each graph, checks that they draw the same
codes, and prints codes/second for each and the speed-up of the cache.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/prior_sampling.py [--json out.json]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from vqvae_tf.priors.transformer import TransformerPrior  # noqa: E402
from vqvae_tf.utils import atomic  # noqa: E402


def _time_sampling(prior, args, use_cache):
    prior.sample(args.batch, seed=0, use_cache=use_cache)  # traces the graph
    best, codes = float("inf"), None
    for repeat in range(args.repeats):
        start = time.perf_counter()
        codes = prior.sample(args.batch, seed=repeat + 1, use_cache=use_cache)
        best = min(best, time.perf_counter() - start)
    return best, codes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-codes", type=int, default=512)
    parser.add_argument("--map-size", type=int, default=16, help="H = W of the code map")
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

    prior = TransformerPrior(
        args.num_codes,
        (args.map_size, args.map_size),
        embed_dim=args.embed_dim,
        num_heads=args.num_heads,
        num_layers=args.num_layers,
    )
    codes_per_run = args.batch * args.map_size**2
    cached_s, cached = _time_sampling(prior, args, use_cache=True)
    uncached_s, uncached = _time_sampling(prior, args, use_cache=False)
    result = {
        "config": vars(args) | {"json": None if args.json is None else str(args.json)},
        "codes_per_s_cache": codes_per_run / cached_s,
        "codes_per_s_no_cache": codes_per_run / uncached_s,
        "speedup": uncached_s / cached_s,
        "identical_samples": bool(np.array_equal(cached.numpy(), uncached.numpy())),
    }
    print(f"{'decoder':<10} {'seconds':>9} {'codes/s':>10}")
    print(f"{'kv cache':<10} {cached_s:>9.3f} {result['codes_per_s_cache']:>10.0f}")
    print(f"{'no cache':<10} {uncached_s:>9.3f} {result['codes_per_s_no_cache']:>10.0f}")
    print(f"speedup {result['speedup']:.1f}x, identical samples: {result['identical_samples']}")
    if args.json is not None:
        atomic.write_json(args.json, result)


if __name__ == "__main__":
    main()

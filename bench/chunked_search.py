"""Peak memory and time of the memory-bounded nearest-code search.

`nearest_codes(vectors, codebook, memory_budget_bytes=B)` for N = 65,536
vectors, K = 16,384 codes, D = 64 (the one-shot search's float32 score matrix
is 4 GiB), for several budgets and for no budget (one shot):

* peak memory: each variant runs in a fresh subprocess; it builds the data,
  warms TensorFlow up on a tiny search, resets the resident-set high-water
  mark (/proc/self/clear_refs) and reads its current resident size
  (/proc/self/statm), runs the search twice, and reports how far the
  high-water mark (VmHWM in /proc/self/status) then rose above it: the
  pages the search touched beyond what the process already held, whatever
  allocator TF uses (memory freed earlier but kept by the allocator is
  already resident and is rightly not counted);
* time: all variants in this process, interleaved rounds, median;
* exactness: every variant's codes are compared with the one-shot search's.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/chunked_search.py [--rounds 5] [--json bench/results/chunked_search.json]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from vqvae_tf.quantizers.code_search import nearest_codes, plan_search  # noqa: E402
from vqvae_tf.utils import atomic  # noqa: E402

MIB = 2**20
TARGET_TIME_RATIO = 1.3  # chunked time / one-shot time


def _data(num_vectors, num_codes, code_dim):
    # Drawn directly in float32: no large float64 temporaries whose freed
    # pages would raise the high-water mark before the measured search.
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((num_vectors, code_dim), dtype=np.float32)
    codebook = rng.standard_normal((num_codes, code_dim), dtype=np.float32)
    return tf.constant(vectors), tf.constant(codebook)


def _search_fn(budget):
    @tf.function
    def search(vectors, codebook):
        return nearest_codes(vectors, codebook, memory_budget_bytes=budget)

    return search


def _reset_peak_rss():
    """Resets the resident high-water mark (Linux >= 4.0); False if it cannot.

    Without the reset the mark can predate the search: making the data
    (NumPy arrays copied into tensors, then freed) peaked about 12 MiB above
    what a search with a 4 MiB budget then reached, and that was reported as
    the search's memory.
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _current_rss_bytes():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(args):
    """Runs one variant; prints its memory figures as JSON and saves its codes."""
    vectors, codebook = _data(args.num_vectors, args.num_codes, args.code_dim)
    search = _search_fn(args.budget)
    search(vectors[:8], codebook[:300])  # imports, thread pools, kernels
    reset = _reset_peak_rss()
    before = _current_rss_bytes()
    codes = search(vectors, codebook).numpy()
    codes = search(vectors, codebook).numpy()
    after = _peak_rss_bytes()
    np.save(args.codes_out, codes)
    print(json.dumps({"rss_before_bytes": before, "peak_rss_after_bytes": after, "peak_reset": reset}))


def _measure_memory(args, budget, codes_path):
    command = [
        sys.executable,
        __file__,
        "--child",
        "--num-vectors",
        str(args.num_vectors),
        "--num-codes",
        str(args.num_codes),
        "--code-dim",
        str(args.code_dim),
        "--codes-out",
        str(codes_path),
    ]
    if budget is not None:
        command += ["--budget", str(budget)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure_time(args, budgets):
    vectors, codebook = _data(args.num_vectors, args.num_codes, args.code_dim)
    searches = {budget: _search_fn(budget) for budget in budgets}
    for search in searches.values():
        search(vectors, codebook).numpy()
    times = {budget: [] for budget in budgets}
    for _ in range(args.rounds):
        for budget, search in searches.items():
            start = time.perf_counter()
            search(vectors, codebook).numpy()
            times[budget].append(time.perf_counter() - start)
    return {budget: float(np.median(t)) for budget, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-vectors", type=int, default=65536)
    parser.add_argument("--num-codes", type=int, default=16384)
    parser.add_argument("--code-dim", type=int, default=64)
    parser.add_argument("--budgets-mib", type=float, nargs="+", default=[256, 64, 16, 4])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).resolve().parent / "results" / "chunked_search.json"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--codes-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    budgets = [None] + [int(b * MIB) for b in args.budgets_mib]
    full_bytes = args.num_vectors * args.num_codes * 4
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        memory, codes = {}, {}
        for i, budget in enumerate(budgets):
            path = Path(tmp) / f"codes{i}.npy"
            memory[budget] = _measure_memory(args, budget, path)
            codes[budget] = np.load(path)
    times = _measure_time(args, budgets)
    one_shot = times[None]
    for budget in budgets:
        plan = plan_search(args.num_vectors, args.num_codes, budget)
        rise = memory[budget]["peak_rss_after_bytes"] - memory[budget]["rss_before_bytes"]
        rows.append(
            {
                "budget_bytes": budget,
                "rows_per_chunk": plan.rows_per_chunk,
                "codes_per_chunk": plan.codes_per_chunk,
                "num_row_chunks": plan.num_row_chunks,
                "num_code_chunks": plan.num_code_chunks,
                "score_block_bytes": plan.score_block_bytes,
                "peak_rss_rise_bytes": rise,
                "peak_rss_bytes": memory[budget]["peak_rss_after_bytes"],
                "peak_reset_before_search": memory[budget]["peak_reset"],
                "under_budget": None if budget is None else rise <= budget,
                "median_s": times[budget],
                "time_vs_one_shot": times[budget] / one_shot,
                "codes_equal_one_shot": bool(np.array_equal(codes[budget], codes[None])),
            }
        )

    print(
        f"N={args.num_vectors} K={args.num_codes} D={args.code_dim}; one-shot score matrix "
        f"{full_bytes / MIB:.0f} MiB; {args.rounds} interleaved rounds; load avg {os.getloadavg()}"
    )
    print(
        f"{'budget MiB':>10} {'blocks':>9} {'peak rise MiB':>13} {'under':>6} "
        f"{'median s':>9} {'x one-shot':>10} {'exact':>6}"
    )
    for row in rows:
        budget = "none" if row["budget_bytes"] is None else f"{row['budget_bytes'] / MIB:g}"
        blocks = f"{row['num_row_chunks']}x{row['num_code_chunks']}"
        under = "-" if row["under_budget"] is None else str(row["under_budget"])
        print(
            f"{budget:>10} {blocks:>9} {row['peak_rss_rise_bytes'] / MIB:>13.1f} {under:>6} "
            f"{row['median_s']:>9.3f} {row['time_vs_one_shot']:>10.2f} {str(row['codes_equal_one_shot']):>6}"
        )
    result = {
        "config": {
            "num_vectors": args.num_vectors,
            "num_codes": args.num_codes,
            "code_dim": args.code_dim,
            "rounds": args.rounds,
            "load_average_at_end": os.getloadavg(),
            "tensorflow": tf.__version__,
            "memory_measure": (
                "rise of VmHWM (resident high-water mark, reset through /proc/self/clear_refs just before "
                "the search) above the resident size just before the search, fresh warmed-up subprocess "
                "per variant"
            ),
            "target_time_ratio": TARGET_TIME_RATIO,
        },
        "variants": rows,
    }
    atomic.write_json(args.json, result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

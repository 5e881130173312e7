"""Our codec against CompressAI's bmshj2018-factorized, each trained 30 minutes on the same photos (issue 16, item 7).

Both sides are trained from scratch here, at the same time (one process
each, one thread each, both `nice -n 19`, so they share the machine's
conditions), on `../shared/data/photos/train`, for the same wall-clock
budget (`--minutes`, 30), then evaluated on every photo of
`../shared/data/photos/valid` (105), whole, every byte of every stream
counted, each through its own entropy coder:

* ours: the design of the shipped `d8k512x4` (its `train.py` command, read
  from `vqvae_tf/pretrained/d8k512x4/codec.json`, with this run's workdir,
  `--max_minutes` and a cosine schedule of `--our_steps` steps), TensorFlow
  on 1 intra-op / 1 inter-op thread, exported and packaged as a codec
  model as the shipped one was (`python -m export`, `python -m
  vqvae_tf.codec package`), and measured at each of its qualities with
  bench/codec_rd.py's functions (packed and static methods);
* the peer: `compressai.models.FactorizedPrior(N=128, M=192)` trained with
  `lambda * 255^2 * MSE + bpp` by `bench/codec_peer_torch.py` in its own
  venv (`--venv`; the docstring there says how to make it), a separate
  process that this script starts; its reconstructions are scored here
  with the same PSNR and MS-SSIM code as ours (`vqvae_tf.codec.evaluation`).

The table gives our PSNR and MS-SSIM at the peer's rate (PCHIP over our
curve in log-rate, as bench/bd.py interpolates), the rate we need for the
peer's PSNR, and BD figures only where both curves have two points or more
(one `--lambda` gives the peer one point: BD is then not defined; each
`--lambda` trains one more peer at the same time, one thread each).
Writes bench/results/codec_peer.json (commands, training wall and CPU
times, steps, per-photo values, means, comparisons).

    TF_CPP_MIN_LOG_LEVEL=2 nice -n 19 python bench/codec_peer.py --minutes 30 --lambda 0.0018 --lambda 0.0035 \
        --lr 1e-4 --lr_schedule constant --our_steps 2000 --steps_per_epoch 250
    # the peer with a short-budget recipe (warmup, peak 1e-3, cosine over the time, smaller crops and batch):
    TF_CPP_MIN_LOG_LEVEL=2 nice -n 19 python bench/codec_peer.py --minutes 30 --lambda 0.0018 --lambda 0.0035 \
        --lr 1e-3 --warmup 100 --lr_schedule cosine --crop 64 --batch 8 --workdir /tmp/codec_peer_b \
        --out bench/results/codec_peer_short_recipe.json
    TF_CPP_MIN_LOG_LEVEL=2 nice -n 19 python bench/codec_peer.py --smoke   # 1 minute a side, 4 photos

`--smoke` writes to WORKDIR/codec_peer_smoke.json unless `--out` is given.
"""

import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import codec_rd  # noqa: E402
from codec_peer_table import METHODS, bd_figures, compare, markdown, verdict  # noqa: E402

from vqvae_tf.utils import atomic  # noqa: E402
from vqvae_tf.utils.checks import check_int, check_number  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "photos"
RESULTS = ROOT / "bench" / "results"
SHIPPED_DESIGN = ROOT / "vqvae_tf" / "pretrained" / "d8k512x4" / "codec.json"
TORCH_SIDE = ROOT / "bench" / "codec_peer_torch.py"
SMOKE = dict(minutes=1.0, limit=4, our_steps=300)
# Flags of the shipped command that this run sets itself (export happens after training, as the shipped one's did).
REPLACED = ("workdir", "dataset", "validation_dataset", "epochs", "steps_per_epoch", "export_formats")
REPLACED += ("export_quantizations", "max_minutes", "export", "overwrite")
THREADS_ENV = dict(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1")
TORCH_ENV = dict(OMP_NUM_THREADS="1")  # and torch.set_num_threads(1) in bench/codec_peer_torch.py


def _flags():
    flags.DEFINE_float("minutes", 30.0, "Training wall-clock budget of each side, in minutes.")
    flags.DEFINE_multi_float(
        "lambda",
        [0.0018, 0.0035],
        "The peer's rate-distortion weight, loss = lambda * 255^2 * MSE + bpp (repeat: one peer each).",
    )
    flags.DEFINE_integer("crop", 96, "The peer's training crop side (ours: the d8k512x4 command's 96).")
    flags.DEFINE_integer("batch", 16, "The peer's batch (ours: the d8k512x4 command's 16).")
    flags.DEFINE_float(
        "lr", 1e-4, "The peer's Adam learning rate (CompressAI's example; 1e-3 without warmup diverged here)."
    )
    flags.DEFINE_enum(
        "lr_schedule", "constant", ["constant", "cosine"], "The peer's schedule after warmup (cosine: over the time)."
    )
    flags.DEFINE_integer("warmup", 0, "The peer's linear warmup steps (0: none, as CompressAI's trainer; ours: 100).")
    flags.DEFINE_integer("our_steps", 2000, "Steps of our cosine schedule (about what fits in --minutes here).")
    flags.DEFINE_integer("steps_per_epoch", 250, "Our steps per epoch (each epoch ends with validation).")
    flags.DEFINE_string("venv", "/work/venv_peer", "The peer's venv (see bench/codec_peer_torch.py).")
    flags.DEFINE_string("train", str(DATA / "train"), "Training photos of both sides.")
    flags.DEFINE_string("valid", str(DATA / "valid"), "Held-out photos, each coded whole.")
    flags.DEFINE_integer("limit", None, "Evaluate only this many photos of --valid (evenly spaced).")
    flags.DEFINE_string("workdir", "/tmp/codec_peer", "Scratch directory of both runs (checkpoints, codec model).")
    flags.DEFINE_bool("reuse", False, "Skip a side's training when its trained files exist in --workdir.")
    flags.DEFINE_bool("smoke", False, "Check the wiring: 1 minute a side, 300 scheduled steps, 4 photos.")
    flags.DEFINE_string("out", None, "JSON output (default bench/results/codec_peer.json).")
    return flags.FLAGS


def check_args(minutes, lam, crop, batch, lr, our_steps, steps_per_epoch, venv, limit=None) -> Path:
    """Refuses bad flags with one line each; returns the venv's python."""
    check_number("--minutes", minutes, 0, inclusive_min=False)
    check_number("--lambda", lam, 0, inclusive_min=False)
    check_number("--lr", lr, 0, inclusive_min=False)
    check_int("--crop", crop, 16)
    if crop % 16:
        raise ValueError(f"--crop must be a multiple of 16 (the peer's stride); received {crop}")
    check_int("--batch", batch, 1)
    check_int("--our_steps", our_steps, 1)
    check_int("--steps_per_epoch", steps_per_epoch, 1)
    if limit is not None:
        check_int("--limit", limit, 1)
    python = Path(venv) / "bin" / "python"
    if not python.is_file():
        raise ValueError(f"--venv: {python} not found; make the peer's venv as bench/codec_peer_torch.py says")
    return python


def our_command(shipped, workdir, train, valid, minutes, steps, steps_per_epoch) -> list:
    """The shipped design's train.py command with this run's data, workdir and budget (no export: done after)."""
    words = shlex.split(shipped)
    if words[:2] != ["python", "train.py"]:
        raise ValueError(f"the shipped command should start with 'python train.py'; received {shipped[:40]!r}")
    kept = [w for w in words[2:] if w.partition("=")[0].lstrip("-") not in REPLACED]
    epochs = max(1, math.ceil(steps / steps_per_epoch))
    return ["train.py", f"--workdir={workdir}", f"--dataset=folder:{train}", f"--validation_dataset=folder:{valid}"] + (
        kept
        + [f"--epochs={epochs}", f"--steps_per_epoch={steps_per_epoch}", f"--max_minutes={minutes:g}"]
        + ["--export=false", "--overwrite"]
    )


# ------------------------------------------------------------------ running


class Run:
    """A child process under `nice -n 19` whose wall time, CPU time and exit code are recorded."""

    def __init__(self, name, argv, log, env=None):
        self.name, self.argv, self.log = name, argv, Path(log)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.log.open("w")
        self.start = time.monotonic()
        full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        self.process = subprocess.Popen(
            ["nice", "-n", "19", *argv], cwd=ROOT, stdout=self._file, stderr=subprocess.STDOUT, env=full_env
        )
        self.wall = self.cpu = self.code = None

    def poll(self) -> bool:
        """True once the child has ended (reaped here with its own CPU time: `nice` execs the program)."""
        if self.code is None:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid == 0:
                return False
            self.process.returncode = self.code = os.waitstatus_to_exitcode(status)
            self.wall, self.cpu = time.monotonic() - self.start, usage.ru_utime + usage.ru_stime
            self._file.close()
        return True

    def wait(self):
        while not self.poll():
            time.sleep(1)
        if self.code:
            tail = self.log.read_text().strip().splitlines()[-3:]
            raise SystemExit(f"{self.name} failed with exit code {self.code} ({self.log}): {' | '.join(tail)}")
        return self

    def record(self):
        return dict(command=" ".join(shlex.quote(a) for a in self.argv), wall_seconds=self.wall, cpu_seconds=self.cpu)


def wait_all(runs, loads):
    """Waits for every run, sampling the load average every 30 s meanwhile."""
    while not all([r.poll() for r in runs]):
        loads.append(os.getloadavg()[0])
        time.sleep(10)
    return [r.wait() for r in runs]


def our_steps_done(log_text, scheduled):
    found = re.findall(r"Stopped by max_minutes=\S+ after (\d+) training steps", log_text)
    return int(found[-1]) if found else scheduled


def evaluate_ours(codec_dir, images):
    from vqvae_tf import codec

    model = codec.load_model(codec_dir, num_threads=1)
    per_photo, skipped = {}, {}
    for name, image in images.items():
        per_photo[name] = codec_rd.measure_photo(name, image, [model], (), skipped)
    points, _ = codec_rd.summarise(per_photo, [model], ())
    return {m: [p for p in points if p["method"] == m] for m in METHODS}, skipped


def evaluate_peer(peer_json, images):
    from vqvae_tf import codec
    from vqvae_tf.codec import evaluation as codec_eval

    rows = json.loads(Path(peer_json).read_text())["photos"]
    per_image = {}
    for name, image in images.items():
        row = rows[name]
        decoded = codec.read_image(row["recon"])
        if decoded.shape != image.shape:
            raise SystemExit(f"the peer's reconstruction of {name} is {decoded.shape}; expected {image.shape}")
        bpp = 8 * row["bytes"] / (image.shape[0] * image.shape[1])
        per_image[name] = dict(
            bits_per_pixel=bpp,
            psnr=codec_eval.psnr(image, decoded),
            ms_ssim=codec_eval.ms_ssim(image, decoded),
            bytes=row["bytes"],
            encode_s=row["encode_s"],
            decode_s=row["decode_s"],
        )
    means = {k: float(np.nanmean([r[k] for r in per_image.values()])) for k in codec_rd.KEYS}
    return dict(**means, photos=len(per_image), per_image=per_image)


def peer_train_argv(python, lam, checkpoint, minutes, FLAGS):
    argv = [str(python), str(TORCH_SIDE), "train", "--photos", FLAGS.train, "--checkpoint", str(checkpoint)]
    argv += ["--minutes", f"{minutes:g}", "--lmbda", f"{lam:g}", "--crop", str(FLAGS.crop), "--batch", str(FLAGS.batch)]
    return argv + ["--lr", f"{FLAGS.lr:g}", "--lr_schedule", FLAGS.lr_schedule, "--warmup", str(FLAGS.warmup)]


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    lambdas = FLAGS["lambda"].value
    minutes, limit, our_steps = FLAGS.minutes, FLAGS.limit, FLAGS.our_steps
    if FLAGS.smoke:
        minutes, limit, our_steps = SMOKE["minutes"], limit or SMOKE["limit"], SMOKE["our_steps"]
    try:
        if len(set(lambdas)) != len(lambdas):
            raise ValueError(f"--lambda: each value once; received {lambdas}")
        for lam in lambdas:
            python = check_args(
                minutes, lam, FLAGS.crop, FLAGS.batch, FLAGS.lr, our_steps, FLAGS.steps_per_epoch, FLAGS.venv, limit
            )
    except ValueError as error:
        raise SystemExit(str(error)) from None
    work = Path(FLAGS.workdir)
    out = Path(FLAGS.out or (work / "codec_peer_smoke.json" if FLAGS.smoke else RESULTS / "codec_peer.json"))
    images = codec_rd.load_images(FLAGS.valid, limit)
    work.mkdir(parents=True, exist_ok=True)
    names = work / "valid_names.txt"
    atomic.write_bytes(names, ("\n".join(images) + "\n").encode())
    shipped = json.loads(SHIPPED_DESIGN.read_text())["train_command"]
    ours_dir = work / "ours"
    ours_argv = [sys.executable] + our_command(
        shipped, ours_dir, FLAGS.train, FLAGS.valid, minutes, our_steps, FLAGS.steps_per_epoch
    )
    peers = {lam: work / f"peer_{lam:g}" for lam in lambdas}
    runs, loads = [], []
    if not (FLAGS.reuse and (ours_dir / "model.keras").exists()):
        runs.append(Run("our training", ours_argv, work / "ours_train.log", THREADS_ENV))
    for lam, peer_dir in peers.items():
        if not (FLAGS.reuse and (peer_dir / "factorized.pt").exists()):
            argv = peer_train_argv(python, lam, peer_dir / "factorized.pt", minutes, FLAGS)
            runs.append(Run(f"the peer's training, lambda {lam:g}", argv, peer_dir / "train.log", TORCH_ENV))
    print(f"training {[r.name for r in runs]} at the same time, {minutes:g} min each; logs in {work}", flush=True)
    trained = {r.name: r.record() for r in wait_all(runs, loads)}
    # The peers decode while ours is exported and packaged as the shipped d8k512x4 was (pretrained README).
    evaluations = {}
    for lam, peer_dir in peers.items():
        argv = [str(python), str(TORCH_SIDE), "evaluate", "--checkpoint", str(peer_dir / "factorized.pt")]
        argv += ["--photos", FLAGS.valid, "--names", str(names), "--recon", str(peer_dir / "recon")]
        argv += ["--out", str(peer_dir / "evaluation.json")]
        evaluations[lam] = Run(f"the peer's evaluation, lambda {lam:g}", argv, peer_dir / "evaluate.log", TORCH_ENV)
    codec_dir = work / "codec" / f"d8k512x4_{minutes:g}min"
    export = [sys.executable, "-m", "export", "--model", str(ours_dir / "model.keras"), "--out", str(work / "export")]
    export += ["--formats", "tflite", "--quantize", "int8,float16", "--overwrite"]
    export += ["--representative", f"folder:{FLAGS.train}", "--representative_size", "96"]
    package = [sys.executable, "-m", "vqvae_tf.codec", "package", str(work / "export" / "tflite"), str(codec_dir)]
    package += ["--encoder", "int8", "--decoder", "float16", "--photos", FLAGS.train, "--max_photos", "200"]
    package += ["--command", " ".join(["python"] + ours_argv[1:]), "--overwrite"]
    Run("our export", export, work / "ours_export.log", THREADS_ENV).wait()
    Run("our packaging", package, work / "ours_package.log", THREADS_ENV).wait()
    ours_points, skipped = evaluate_ours(codec_dir, images)
    peer_points = []
    for lam, peer_dir in peers.items():
        evaluations[lam].wait()
        point = evaluate_peer(peer_dir / "evaluation.json", images)
        summary = json.loads((peer_dir / "factorized.json").read_text())
        point.update(
            {"lambda": lam},
            steps=summary["steps"],
            train_seconds=summary["train_seconds"],
            training=trained.get(f"the peer's training, lambda {lam:g}"),
            train_summary=summary,
            evaluate=evaluations[lam].record(),
        )
        peer_points.append(point)
    peer_points.sort(key=lambda p: p["bits_per_pixel"])
    scheduled = max(1, math.ceil(our_steps / FLAGS.steps_per_epoch)) * FLAGS.steps_per_epoch
    result = dict(
        title=f"{len(images)} photos of {Path(FLAGS.valid).name}/, {minutes:g} min of training each",
        minutes=minutes,
        smoke=FLAGS.smoke,
        valid=str(FLAGS.valid),
        train=str(FLAGS.train),
        images={k: list(v.shape) for k, v in images.items()},
        ours=dict(
            design="d8k512x4 (vqvae_tf/pretrained/README.md)",
            training=trained.get("our training"),
            steps=our_steps_done((work / "ours_train.log").read_text(), scheduled),
            scheduled_steps=scheduled,
            threads=" ".join(f"{k}={v}" for k, v in THREADS_ENV.items()),
            export=" ".join(["python"] + export[1:]),
            package=" ".join(["python"] + package[1:]),
            points=ours_points,
            skipped=skipped,
        ),
        peer=dict(
            design="compressai.models.FactorizedPrior(N=128, M=192) (bmshj2018-factorized)",
            threads="torch.set_num_threads(1), OMP_NUM_THREADS=1",
            points=peer_points,
        ),
        load_average_during_training=dict(samples=len(loads), mean=float(np.mean(loads)) if loads else None),
        command="TF_CPP_MIN_LOG_LEVEL=2 nice -n 19 python " + " ".join(sys.argv),
    )
    result["comparison"] = {m: compare(ours_points[m], peer_points) for m in METHODS}
    result["bd"] = {m: bd_figures(ours_points[m], peer_points) for m in METHODS}
    result["verdict"] = {m: [verdict(c) for c in result["comparison"][m]] for m in METHODS}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out, result, indent=1, default=float)
    print(markdown(result))
    for method in METHODS:
        print(f"{method}: " + "; ".join(result["verdict"][method]))
    print(f"wrote {out}")


if __name__ == "__main__":
    _flags()
    app.run(main)

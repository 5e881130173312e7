"""Speech codecs on the held-out LJ Speech clips: bit rate against PESQ, STOI and SI-SNR, all in one run.

Contenders, each clip through each, scored against the original 16 kHz clip:

* Opus (opus-tools `opusenc --bitrate 6/9/12`, its defaults otherwise: VBR,
  complexity 10; `opusdec --rate 16000`), from the original WAV file;
* Codec2 (`c2enc 3200/1300`, headerless: the file is the bit stream): the clip
  resampled to 8 kHz and written as raw 16-bit PCM, `c2dec`, the result
  resampled back to 16 kHz (both with `vqvae_tf.utils.wav.resample`, i.e.
  `scipy.signal.resample_poly`);
* ours, when given: `--ours MODULE:FACTORY` (FACTORY() returns
  {label: fn(samples, sample_rate) -> (decoded samples, bytes of the file)}),
  `--model NAME_OR_DIR` (the speech codec's Python API, `vqvae_tf.codec.compress_audio`,
  at each quality of the model, or at each `--kbps`), or
  `run(..., ours=...)` from Python.

Bit rate: bytes of the whole compressed file (container and headers
included) * 8 / the clip's duration, averaged over clips ("kbps"; "pooled"
is total bytes over total duration). Delay, removed before scoring: one per contender, the median
over clips of the lag maximising each clip's cross-correlation with the
original within +-100 ms (`vqvae_tf.codec.audio_quality.align`), since a
codec's delay is a constant and the per-clip lags of Codec2, whose phase is
synthetic, scatter (the spread is in the JSON, `clip_lags`); both signals are
then trimmed to their overlap (`remove_delay`). opusdec already drops the
pre-skip that the Ogg Opus header documents, so Opus's delay left is about
a sample. Metrics (`vqvae_tf.codec.audio_quality`):
wide-band PESQ (pip `pesq`), STOI (pip `pystoi`), SI-SNR in dB, the mean over
clips. The ratios compare each row with the issue's two anchors measured in
the same run: Codec2 at 3200 bps and Opus at 6 kbps.

Writes bench/results/speech_codec.json.

    nice -n 5 python bench/speech_codec.py [--clips N] [--ours MODULE:FACTORY | --model M --kbps 1.5,3]
"""

import importlib
import importlib.metadata
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vqvae_tf.codec import audio_quality as aq  # noqa: E402
from vqvae_tf.utils import atomic  # noqa: E402
from vqvae_tf.utils.wav import read_wav, resample  # noqa: E402

RATE = 16000
CODEC2_RATE = 8000
MAX_DELAY = RATE // 10  # 100 ms
OPUS_KBPS = (6, 9, 12)
CODEC2_BPS = (3200, 1300)
ANCHORS = ("Codec2 3200", "Opus 6")
METRICS = ("pesq", "stoi", "si_snr")
RESULTS = ROOT / "bench" / "results"
DATA = ROOT.parent / "shared" / "data" / "speech" / "ljspeech16k"


def _flags():
    flags.DEFINE_string("data", str(DATA), "Folder of the LJ Speech 16 kHz clips.")
    flags.DEFINE_integer("clips", None, "Only the first N held-out clips (default: all of them).", lower_bound=1)
    flags.DEFINE_string("ours", None, "MODULE:FACTORY; FACTORY() returns {label: fn(samples, rate) -> (out, bytes)}.")
    flags.DEFINE_string("model", None, "Our speech codec model (name or directory), through the codec's Python API.")
    flags.DEFINE_list("kbps", None, "Rates of --model, in kbps (default: each quality of the model).")
    flags.DEFINE_integer("threads", 1, "LiteRT interpreter threads of --model (the issue's speed figure: 1).")
    flags.DEFINE_string("out", str(RESULTS / "speech_codec.json"), "JSON output.")
    return flags.FLAGS


def _run(args, what):
    """Runs a codec tool; a failure says which command and what it printed."""
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(map(str, args))}): {done.stderr.strip()[-500:]}")


def _tool_versions():
    versions = {}
    for tool in ("opusenc", "opusdec", "c2enc", "c2dec"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on PATH; install the Debian packages opus-tools and codec2")
    opus = subprocess.run(["opusenc", "--version"], capture_output=True, text=True).stdout.splitlines()
    versions["opusenc"] = opus[0] if opus else None
    dpkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "codec2"], capture_output=True, text=True)
    versions["codec2"] = dpkg.stdout.strip() or None
    for package in ("pesq", "pystoi", "scipy", "numpy"):
        versions[package] = importlib.metadata.version(package)
    return versions


def opus(kbps):
    """Opus at `kbps` (opusenc's target) through the original WAV file."""

    def codec(path, samples, tmp):
        del samples
        _run(["opusenc", "--quiet", "--bitrate", str(kbps), str(path), str(tmp / "c.opus")], "opusenc")
        _run(["opusdec", "--quiet", "--rate", str(RATE), str(tmp / "c.opus"), str(tmp / "d.wav")], "opusdec")
        decoded, rate = read_wav(tmp / "d.wav")
        assert rate == RATE, rate
        return decoded, (tmp / "c.opus").stat().st_size

    return codec


def codec2(bps):
    """Codec2 at `bps` (its mode) on the clip resampled to 8 kHz raw 16-bit PCM."""

    def codec(path, samples, tmp):
        del path
        narrow = resample(samples, RATE, CODEC2_RATE)
        pcm = np.clip(np.round(narrow * 32768.0), -32768, 32767).astype("<i2")
        (tmp / "in.raw").write_bytes(pcm.tobytes())
        _run(["c2enc", str(bps), str(tmp / "in.raw"), str(tmp / "c.bin")], "c2enc")
        _run(["c2dec", str(bps), str(tmp / "c.bin"), str(tmp / "out.raw")], "c2dec")
        decoded = np.frombuffer((tmp / "out.raw").read_bytes(), "<i2").astype(np.float32) / 32768.0
        return resample(decoded, CODEC2_RATE, RATE), (tmp / "c.bin").stat().st_size

    return codec


def peers():
    """{label: codec(path, samples, tmp) -> (decoded at 16 kHz, bytes)} of the reference codecs."""
    found = {f"Opus {k}": opus(k) for k in OPUS_KBPS}
    found.update({f"Codec2 {b}": codec2(b) for b in CODEC2_BPS})
    return found


def ours_from_factory(spec):
    """{label: fn(samples, rate) -> (decoded, bytes)} from `--ours MODULE:FACTORY`."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise SystemExit(f"--ours takes MODULE:FACTORY (e.g. mybench:contenders); received {spec!r}")
    hooks = getattr(importlib.import_module(module), name)()
    if not isinstance(hooks, dict) or not all(callable(f) for f in hooks.values()):
        raise SystemExit(f"--ours {spec}: the factory must return {{label: callable}}; received {type(hooks)}")
    return hooks


def ours_from_model(model, kbps, threads=1):
    """{label: fn(samples, rate) -> (decoded, bytes)} of our speech codec `model` at each of `kbps`.

    Through the codec's Python API (`vqvae_tf.codec.compress_audio` /
    `decompress_audio`, LiteRT, the `static` method): without `kbps`, one
    contender per quality of the model (`ours qN`, N stages kept); with it,
    one per rate (`ours K kbps`: the highest quality whose file fits K kbps
    on each clip). A model with a prior (`prior.tflite`) adds `ours qS
    prior`: every stage, entropy coded under the prior (the same codes and
    audio as `ours qS`, fewer bytes; its xRT includes the prior's coding).
    """
    from vqvae_tf import codec

    name = model
    try:
        model = codec.load_model(name, num_threads=threads)
        if model.kind != "audio":
            raise codec.CodecError(f"it is an {model.kind} model; the bench needs an audio model")
    except (ValueError, OSError) as error:
        raise SystemExit(f"--model {name}: {error}") from None
    method = "static" if model.counts is not None else "packed"

    def contender(method=method, **rate):
        def fn(samples, sample_rate):
            data = codec.compress_audio(samples, sample_rate, model, method, **rate)
            return codec.decompress_audio(data, model)[0], len(data)

        return fn

    if kbps:
        return {f"ours {k:g} kbps": contender(kbps=k) for k in kbps}
    ours = {f"ours q{q}": contender(quality=q) for q in range(1, model.total_stages + 1)}
    if model.prior_path is not None:
        ours[f"ours q{model.total_stages} prior"] = contender("prior", quality=model.total_stages)
    return ours


def _wrap_ours(fn):
    """A hook of ours as a contender: it receives the original samples and the rate."""

    def codec(path, samples, tmp):
        del path, tmp
        decoded, n_bytes = fn(np.array(samples, np.float32), RATE)
        return np.asarray(decoded, np.float32).reshape(-1), int(n_bytes)

    return codec


def score(reference, decoded, delay):
    """PESQ, STOI and SI-SNR of one decoded clip once `delay` samples are removed."""
    ref, deg = aq.remove_delay(reference, decoded, delay)
    return dict(
        scored_samples=len(ref),
        pesq=aq.pesq_wb(ref, deg, RATE),
        stoi=aq.stoi(ref, deg, RATE),
        si_snr=aq.si_snr(ref, deg),
    )


def load_clips(data, limit=None):
    """[(name, path, samples)] of the held-out clips (`vqvae_tf/data/splits/ljspeech16k_validation.txt`)."""
    from vqvae_tf.data.audio import LJSPEECH16K_VALIDATION, read_name_list

    names = read_name_list(LJSPEECH16K_VALIDATION)[:limit]
    clips = []
    for name in names:
        path = Path(data) / (name if name.endswith(".wav") else name + ".wav")
        samples, rate = read_wav(path, min_frames=1)
        if rate != RATE:
            raise SystemExit(f"{path}: {rate} Hz; the bench scores 16 kHz clips")
        clips.append((name, path, samples))
    return clips


def summarise(label, rows, durations, delay):
    summary = dict(label=label, clips=len(rows), delay_samples=delay)
    summary["kbps"] = statistics.fmean(r["bytes"] * 8 / d / 1000 for r, d in zip(rows, durations))
    summary["kbps_pooled"] = sum(r["bytes"] for r in rows) * 8 / sum(durations) / 1000
    for metric in METRICS:
        summary[metric] = statistics.fmean(r[metric] for r in rows)
    lags = [r["lag"] for r in rows]
    summary["clip_lags"] = dict(median=statistics.median(lags), min=min(lags), max=max(lags))
    summary["seconds_per_clip"] = statistics.fmean(r["seconds"] for r in rows)
    # Audio seconds coded and decoded per wall second (peers: their command-line tools, process start included).
    summary["x_realtime"] = sum(durations) / sum(r["seconds"] for r in rows)
    return summary


def run(clips, ours=None, log=print):
    """Every contender on every clip; returns {label: {summary, rows}}.

    Args:
        clips: [(name, path of the 16 kHz WAV, float32 samples)].
        ours: optional {label: fn(samples, sample_rate) -> (decoded, n_bytes)}.
        log: where progress lines go.
    """
    contenders = peers()
    for label, fn in (ours or {}).items():
        if label in contenders:
            raise ValueError(f"our contender {label!r} has the name of a peer; rename it")
        contenders[label] = _wrap_ours(fn)
    durations = [len(samples) / RATE for _, _, samples in clips]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, codec in contenders.items():
            rows, outputs = [], []
            for name, path, samples in clips:
                start = time.perf_counter()
                decoded, n_bytes = codec(path, samples, tmp)
                lag = aq.align(samples, decoded, MAX_DELAY)[2]
                rows.append(dict(clip=name, bytes=n_bytes, seconds=time.perf_counter() - start, lag=lag))
                outputs.append(decoded)
            # A codec's delay is one constant; per-clip lags of a parametric codec (synthetic phase) scatter.
            delay = round(statistics.median(r["lag"] for r in rows))
            for row, (_, _, samples), decoded in zip(rows, clips, outputs):
                row.update(score(samples, decoded, delay))
            results[label] = dict(summary=summarise(label, rows, durations, delay), rows=rows)
            s = results[label]["summary"]
            log(f"{label}: {s['kbps']:.2f} kbps, PESQ {s['pesq']:.3f}, STOI {s['stoi']:.3f}, SI-SNR {s['si_snr']:.2f}")
    return results


def table(results):
    """The text table: one row per contender, with ratios to the anchors measured in the same run."""
    header = (
        f"{'contender':<14} {'kbps':>6} {'pooled':>6} {'PESQ':>6} {'STOI':>6} {'SI-SNR':>7} {'delay':>5} {'xRT':>6}  "
        + "  ".join(f"{'PESQ/' + a:>17} {'STOI/' + a:>17} {'kbps/' + a:>17}" for a in ANCHORS)
    )
    lines = [header, "-" * len(header)]
    for label, result in results.items():
        s = result["summary"]
        cells = [
            f"{label:<14} {s['kbps']:>6.2f} {s['kbps_pooled']:>6.2f} {s['pesq']:>6.3f} {s['stoi']:>6.3f} "
            f"{s['si_snr']:>7.2f} {s['delay_samples']:>5d} {s['x_realtime']:>6.1f}"
        ]
        for anchor in ANCHORS:
            a = results[anchor]["summary"]
            cells.append(
                f"{s['pesq'] / a['pesq']:>17.3f} {s['stoi'] / a['stoi']:>17.3f} {s['kbps'] / a['kbps']:>17.3f}"
            )
        lines.append(" ".join(cells[:1]) + "  " + "  ".join(cells[1:]))
    return "\n".join(lines)


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    if FLAGS.ours and FLAGS.model:
        raise SystemExit("give --ours or --model, not both")
    versions = _tool_versions()
    ours = None
    if FLAGS.ours:
        ours = ours_from_factory(FLAGS.ours)
    elif FLAGS.model:
        ours = ours_from_model(FLAGS.model, [float(k) for k in FLAGS.kbps or []], FLAGS.threads)
    clips = load_clips(FLAGS.data, FLAGS.clips)
    seconds = sum(len(s) for _, _, s in clips) / RATE
    print(f"{len(clips)} held-out clips, {seconds:.1f} s in all", flush=True)
    started = time.time()
    results = run(clips, ours, log=lambda line: print(line, flush=True))
    print()
    print(table(results))
    out = Path(FLAGS.out)
    result = dict(
        command="nice -n 5 python " + " ".join(sys.argv),
        clips=[name for name, _, _ in clips],
        audio_seconds=seconds,
        sample_rate=RATE,
        delay_removal=(
            f"per contender, the median over clips of the cross-correlation lag within +-{MAX_DELAY} samples "
            "(opusdec drops the pre-skip itself)"
        ),
        bit_rate="whole compressed file bytes * 8 / clip duration, mean over clips (kbps_pooled: totals)",
        anchors=list(ANCHORS),
        versions=versions,
        wall_seconds=time.time() - started,
        load_average=os.getloadavg(),
        summary={label: r["summary"] for label, r in results.items()},
        per_clip={label: r["rows"] for label, r in results.items()},
    )
    atomic.write_json(out, result, indent=1, default=float)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    _flags()
    app.run(main)

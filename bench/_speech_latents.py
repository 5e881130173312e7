"""Pieces of `bench/latent_speech.py`: the wider decoder, clip quality, code usage, RD interpolation.

Bench-only helpers (not library code); only `print_table` prints.
"""

import math

import numpy as np
import tensorflow as tf

from vqvae_tf.codec import audio_quality as aq
from vqvae_tf.models.audio_losses import stft_magnitude
from vqvae_tf.models.speech_networks import SpeechDecoder

LN2 = math.log(2.0)
# Mel distance: 64 ms Hann windows, 16 ms hop (`stft_magnitude` hops a quarter window), 80 bands up to 8 kHz.
MEL_FRAME, MEL_BANDS, MEL_FLOOR = 1024, 80, 1e-5
# Any batch and length: one trace reconstructs every held-out clip.
WAVES = tf.TensorSpec((None, None, 1), tf.float32)


def widen_decoder(model, factor):
    """Replaces an unbuilt speech model's decoder by one `factor` times wider at every stage (same strides)."""
    if model.built:
        raise ValueError("widen_decoder needs an unbuilt model; received a built one.")
    model.decoder = SpeechDecoder(
        strides=model.strides,
        hidden_units=model.hidden_units * factor,
        num_residual_blocks=model.num_residual_blocks,
        output_channels=model.input_channels,
        causal=model.causal,
        signal_rms=math.sqrt(model.data_variance),
        dtype=model.dtype_policy,
        name="decoder",
    )
    return model


def reconstructor(model):
    """`fn(waves (B, T, 1)) -> reconstructions`, traced once for every length (VQ-VAE: from its codes; VAE: mean)."""
    return tf.function(lambda waves: model(waves, training=False), input_signature=[WAVES])


def mel_distance(reference, estimate, sample_rate):
    """Mean |ln mel(reference) - ln mel(estimate)| over frames and bands (magnitudes floored at `MEL_FLOOR`)."""
    matrix = tf.signal.linear_to_mel_weight_matrix(MEL_BANDS, MEL_FRAME // 2 + 1, sample_rate, 0.0, sample_rate / 2)
    logs = [
        tf.math.log(
            tf.maximum(tf.matmul(stft_magnitude(np.asarray(x, np.float32)[None], MEL_FRAME), matrix), MEL_FLOOR)
        )
        for x in (reference, estimate)
    ]
    return float(tf.reduce_mean(tf.abs(logs[0] - logs[1])))


def clip_quality(clips, reconstruct, hop, sample_rate):
    """Mean SI-SNR (dB), wide-band PESQ, STOI and mel distance of `reconstruct` over whole clips (cut to hops).

    PESQ raises on a reconstruction it finds no speech in (a silent, collapsed decoder); such clips are
    counted in `pesq_failures` and left out of the PESQ mean.
    """
    rows = {"si_snr": [], "pesq": [], "stoi": [], "mel_distance": []}
    failures = 0
    for clip in clips:
        clip = clip[: len(clip) // hop * hop]
        out = np.asarray(reconstruct(tf.constant(clip[None, :, None])), np.float64)[0, :, 0]
        rows["si_snr"].append(aq.si_snr(clip, out))
        rows["stoi"].append(aq.stoi(clip, out, sample_rate))
        rows["mel_distance"].append(mel_distance(clip, out, sample_rate))
        try:
            rows["pesq"].append(aq.pesq_wb(clip, out, sample_rate))
        except ValueError:
            failures += 1
    result = {k: float(np.mean(v)) if v else float("nan") for k, v in rows.items()}
    return result | {"pesq_failures": failures, "clips": len(clips)}


def code_usage(codes, num_codes):
    """Perplexity of the codes' use and the fraction of the codebook used, over all of `codes`."""
    counts = np.bincount(np.asarray(codes).ravel(), minlength=num_codes)
    p = counts[counts > 0] / counts.sum()
    return {"perplexity": float(np.exp(-(p * np.log(p)).sum())), "fraction_used": float((counts > 0).mean())}


def at_rate(rates, values, rate, floor=1e-3):
    """`values` linearly interpolated in log rate at `rate` (rates floored at `floor`); None outside the rates."""
    order = np.argsort(rates)
    rates = np.maximum(np.asarray(rates, np.float64)[order], floor)
    values = np.asarray(values, np.float64)[order]
    if not rates[0] <= rate <= rates[-1]:
        return None
    return float(np.interp(math.log(max(rate, floor)), np.log(rates), values))


def mean_spread(values):
    """`{"mean", "std" (sample, ddof 1), "min", "max", "values"}` of per-seed figures."""
    values = [float(v) for v in values]
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": spread, "min": min(values), "max": max(values), "values": values}


def print_table(results):
    """Prints the headline, the sweep, the matched-rate reading and the collapse pair of a run's results."""
    h = results["headline"]
    fmt = lambda f: f"{f['mean']:.3f} ± {f['std']:.3f}"
    print(f"{'model':8s} {'bits/dim':>16s} {'rate b/s':>18s} {'SI-SNR dB':>18s} {'PESQ':>16s} {'mel':>16s}")
    for name in ("vqvae", "vae"):
        r = h[name]
        keys = ("bits_per_dim", "rate_bits_per_second", "si_snr", "pesq", "mel_distance")
        print(f"{name:8s} " + " ".join(f"{fmt(r[k]):>16s}" for k in keys))
    print(f"bits/dim VQ - VAE: {h['vqvae']['bits_per_dim']['mean'] - h['vae']['bits_per_dim']['mean']:+.3f}")
    for p in results["vae_rd_curve"]:
        q = p["quality"]
        print(
            f"VAE beta {p['beta']:<6g} KL {p['rate_bits_per_second']:9.1f} b/s  bits/dim {p['bits_per_dim']:.3f}  "
            f"SI-SNR {q['si_snr']:6.2f}  PESQ {q['pesq']:.3f}  mel {q['mel_distance']:.3f}"
        )
    for p in results.get("vae_sweep_other_seeds", []):
        print(
            f"VAE beta {p['beta']:<6g} seed {p['seed']}: KL {p['rate_bits_per_second']:.1f} b/s, "
            f"bits/dim {p['bits_per_dim']:.3f}"
        )
    if "matched_rate" in results:
        print(
            "matched rate:", {k: round(v, 3) if isinstance(v, float) else v for k, v in results["matched_rate"].items()}
        )
    if "collapse" in results:
        print("collapse:", results["collapse"])

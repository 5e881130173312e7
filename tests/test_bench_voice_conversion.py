"""bench/voice_conversion.py end to end on the synthetic labelled WAVs of tests/test_bench_speech_probes.py."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import voice_conversion  # noqa: E402
from tests.test_bench_speech_probes import TINY_ARGS, write_clips  # noqa: E402
from vqvae_tf.utils.wav import read_wav  # noqa: E402


@pytest.mark.slow
def test_voice_conversion_runs_end_to_end_and_writes_examples(tmp_path):
    write_clips(tmp_path / "clips")
    out = tmp_path / "vc.json"
    voice_conversion.main(
        [
            f"--data={tmp_path / 'clips'}",
            *TINY_ARGS,
            "--sequence-epochs=2",
            "--deterministic",
            f"--examples={tmp_path / 'examples'}",
            f"--out={out}",
        ]
    )
    results = json.loads(out.read_text())
    assert results["speakers"] == ["ann", "bob"] and results["chance"] == {"digit": 0.1, "speaker": 0.5}
    c = results["classifiers"]
    # The classifiers on real audio: the pitch and the harmonic are plain in the spectra.
    assert c["real"]["digit"] >= 0.9 and c["real"]["speaker"] >= 0.9
    assert set(c) == {"real", "conditioned", "unconditioned", "conversion"}
    # Each of the 24 test clips decoded as the one other speaker.
    assert c["conversion"]["clips"] == 24
    for name in ("target_speaker", "source_speaker", "digit"):
        assert 0.0 <= c["conversion"][name] <= 1.0
    # With two speakers a converted clip is classified as the target or as the source.
    assert c["conversion"]["target_speaker"] + c["conversion"]["source_speaker"] == pytest.approx(1.0)
    assert {"vq_codes", "vq_codes_conditioned"} <= set(results["probes"])
    assert "speaker_sequence" in results["probes"]["vq_codes_conditioned"]
    # One clip per speaker (distinct digits): source, reconstruction and conversion of each.
    assert len(results["examples"]) == 6
    for name in results["examples"]:
        samples, rate = read_wav(tmp_path / "examples" / name)
        assert rate == 8000 and len(samples) > 0

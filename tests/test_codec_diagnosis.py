"""eval/codec_diagnosis.py's two measurements on signals whose answer is known."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from speechlm.eval.fidelity import fidelity
from tests.conftest import eval_script, voiced


def test_swaps_tell_magnitude_from_phase():
    d = eval_script("codec_diagnosis")
    ref = voiced(2.0, 24000, f0=150.0)
    pesq = lambda a, b: fidelity(a, 24000, b, 24000).pesq_wb
    same = d.swap_scores(ref, ref.copy(), pesq)
    assert min(same.values()) > 3.5  # nothing to lose, Griffin-Lim aside close to the top of the scale
    # right magnitudes, scrambled phase: only the swap that restores the original phase recovers
    S = librosa.stft(ref, n_fft=d.N_FFT, hop_length=d.HOP)
    rng = np.random.default_rng(0)
    scrambled = librosa.istft(np.abs(S) * np.exp(2j * np.pi * rng.random(S.shape)), hop_length=d.HOP, length=len(ref))
    s = d.swap_scores(ref, scrambled, pesq)
    assert s["decoded_magnitude+original_phase"] > s["decoded"] + 0.5
    assert s["original_magnitude+decoded_phase"] < s["decoded_magnitude+original_phase"]


def test_periodicity_of_a_tone_and_of_noise():
    d = eval_script("codec_diagnosis")
    tone = librosa.resample(voiced(2.0, 24000, f0=150.0), orig_sr=24000, target_sr=16000)
    same = d.periodicity(tone, tone)
    assert same["voiced_original"] > 0.5 and same["vuv_agreement"] == 1.0
    assert same["f0_error_cents_median"] == pytest.approx(0.0, abs=1.0)
    noise = (0.05 * np.random.default_rng(0).standard_normal(len(tone))).astype(np.float32)
    other = d.periodicity(tone, noise)
    assert other["voiced_decoded"] < 0.2 < other["voiced_original"]


@pytest.mark.parametrize("spec", ["codec2:1200", "opus:6"])
def test_classic_codecs_are_scored_at_24_khz_like_ours(spec, tmp_path):
    import shutil

    if shutil.which("c2enc" if spec.startswith("codec2") else "opusenc") is None:
        pytest.skip("Debian codec2 / opus-tools not installed (make setup installs them)")
    bench = eval_script("bench_codec")
    clip = {"wav": librosa.resample(voiced(1.0, 24000, f0=150.0), orig_sr=24000, target_sr=16000), "sr": 16000}
    dec, sr = bench.roundtrip_of(spec, tmp_path)(clip)
    assert sr == 24000 and abs(len(dec) - 24000) < 2400  # the codec's framing may pad a little
    rms = lambda x: float(np.sqrt(np.mean(np.square(x))))  # noqa: E731
    assert 0.3 < rms(dec) / rms(clip["wav"]) < 3  # a real round trip: the tone comes back, not silence

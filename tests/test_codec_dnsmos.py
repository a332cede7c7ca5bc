"""eval/codec_dnsmos.py's measures on signals whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import eval_script

SR = 16000


@pytest.fixture(scope="module")
def mod():
    return eval_script("codec_dnsmos")


def _speech_with_pauses(noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """1 s of a 120 Hz harmonic buzz, then 0.5 s of pause (silence + ``noise``), twice."""
    rng = np.random.default_rng(seed)
    t = np.arange(SR) / SR
    tone = sum(np.sin(2 * np.pi * 120 * h * t) / h for h in range(1, 30)) * 0.1
    pause = np.zeros(SR // 2)
    x = np.concatenate([tone, pause, tone, pause])
    return (x + noise * rng.standard_normal(len(x))).astype(np.float32)


def test_pause_floor_hears_hiss_in_the_pauses(mod):
    clean, hiss = _speech_with_pauses(1e-4), _speech_with_pauses(1e-2)
    assert mod.pause_floor(clean) < mod.pause_floor(hiss) - 20  # 40 dB more noise, most of it audible in pauses
    spliced = mod.splice_pauses(clean, hiss)
    assert mod.pause_floor(spliced) == pytest.approx(mod.pause_floor(clean), abs=3)
    loud = mod.frame_db(clean) > -40
    np.testing.assert_array_equal(spliced.reshape(-1, mod.FRAME)[loud], hiss.reshape(-1, mod.FRAME)[loud])


def test_high_band_and_periodicity(mod):
    rng = np.random.default_rng(1)
    buzz, noise = _speech_with_pauses(), rng.standard_normal(3 * SR).astype(np.float32) * 0.05
    assert mod.high_band_db(noise) == pytest.approx(10 * np.log10(0.5), abs=0.5)  # white: half the band
    assert mod.high_band_db(buzz) < -20  # harmonics falling as 1/h barely reach 4 kHz
    voiced = mod.frame_db(buzz) > -40
    assert mod.cpp_db(buzz, voiced) > mod.cpp_db(noise[: len(buzz)], voiced) + 10


def test_lowpass_keeps_the_low_band_and_drops_the_high_one(mod):
    noise = np.random.default_rng(2).standard_normal(2 * SR).astype(np.float32) * 0.05
    low = mod.lowpass(noise)
    assert low.dtype == np.float32 and len(low) == len(noise)
    assert mod.high_band_db(low) < -40  # only the 4 kHz bin itself and float32 rounding left
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    np.testing.assert_allclose(mod.lowpass(tone), tone, atol=1e-4)  # a 1 kHz tone passes untouched

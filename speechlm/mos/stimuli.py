"""Stimulus audio: loudness matching, MUSHRA anchors, gold/trap/training degradations, listening-check clips."""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pyloudnorm
import soundfile as sf
from scipy import signal

from speechlm.data.audio import load_audio
from speechlm.io import atomic_path

PEAK_LIMIT = 0.99  # -0.09 dBFS: keeps 16-bit encoding from clipping after the gain


def integrated_loudness(wav: np.ndarray, sr: int) -> float:
    """ITU-R BS.1770 integrated loudness in LUFS (-inf for silence); mono ``[T]`` or multichannel ``[T, C]``."""
    # BS.1770 gates 400 ms blocks; a shorter clip is measured as one block rather than rejected.
    block = min(0.4, len(wav) / sr)
    return float(pyloudnorm.Meter(sr, block_size=block).integrated_loudness(np.asarray(wav, dtype=np.float64)))


def match_loudness(wav: np.ndarray, sr: int, target_lufs: float) -> tuple[np.ndarray, bool]:
    """Scale ``wav`` to ``target_lufs``; returns ``(audio, limited)``.

    ``limited`` is True when the gain would have clipped and the clip was scaled down to a peak of
    ``PEAK_LIMIT`` instead, so it plays quieter than the target; sessions record such clips.
    """
    loud = integrated_loudness(wav, sr)
    if not math.isfinite(loud):
        raise ValueError("clip is silent: its loudness cannot be measured")
    out = wav * 10 ** ((target_lufs - loud) / 20)
    peak = float(np.abs(out).max())
    if peak > PEAK_LIMIT:
        return (out * (PEAK_LIMIT / peak)).astype(np.float32), True
    return out.astype(np.float32), False


def lowpass(wav: np.ndarray, sr: int, cutoff: float, order: int = 10) -> np.ndarray:
    """Zero-phase Butterworth low-pass: the BS.1534-3 anchors are the reference band-limited to 3.5 / 7 kHz."""
    if cutoff >= 0.95 * sr / 2:
        raise ValueError(f"cannot low-pass at {cutoff:g} Hz: the sample rate {sr} Hz has no content above "
                         f"{sr / 2:g} Hz")
    sos = signal.butter(order, cutoff, btype="low", fs=sr, output="sos")
    return signal.sosfiltfilt(sos, wav).astype(np.float32)


def degrade(wav: np.ndarray, sr: int, seed: int = 0) -> np.ndarray:
    """An unmistakably bad version of a clip (band-limited, clipped, 5-bit, noisy) whose score is known: 1-2."""
    rng = np.random.default_rng(seed)
    x = lowpass(wav, sr, min(3000.0, 0.4 * sr)) if sr > 6000 else wav.copy()
    peak = float(np.abs(x).max()) or 1.0
    x = np.clip(x, -0.25 * peak, 0.25 * peak) / (0.25 * peak)
    x = np.round(x * 15) / 15
    noise = rng.standard_normal(x.size)
    snr_db = 5.0
    noise *= math.sqrt(np.mean(x ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


def tone(freq: float, seconds: float, sr: int, amplitude: float = 0.1) -> np.ndarray:
    """A sine with 10 ms raised-cosine ramps, so its on- and offsets do not click."""
    t = np.arange(int(seconds * sr)) / sr
    x = amplitude * np.sin(2 * np.pi * freq * t)
    ramp = min(int(0.01 * sr), x.size // 2)
    if ramp:
        env = 0.5 * (1 - np.cos(np.pi * np.arange(ramp) / ramp))
        x[:ramp] *= env
        x[-ramp:] *= env[::-1]
    return x.astype(np.float32)


def silence(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    shape = (int(seconds * sr),) if channels == 1 else (int(seconds * sr), channels)
    return np.zeros(shape, dtype=np.float32)


def speak(text: str, sr: int, speed: int = 190) -> np.ndarray | None:
    """``text`` spoken by espeak-ng at ``sr``, or None when espeak-ng is not installed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        subprocess.run([exe, "-s", str(speed), "-w", str(out), text], check=True, capture_output=True, timeout=60)
        wav, _ = load_audio(out, sample_rate=sr)
    # espeak-ng pads its output with silence; trimming it keeps trap clips (and raters' waits) short.
    loud = np.flatnonzero(np.abs(wav) > 0.01 * np.abs(wav).max())
    return wav[loud[0]: loud[-1] + 1] if loud.size else wav


def trap_clip(lead: np.ndarray, message: np.ndarray, sr: int) -> np.ndarray:
    """P.808 trapping clip: the start of an ordinary sample, then a spoken request for a given answer."""
    lead = lead[: int(1.0 * sr)]
    lead = lead * 10 ** ((integrated_loudness(message, sr) - integrated_loudness(lead, sr)) / 20) \
        if len(lead) > sr // 10 else lead
    return np.concatenate([lead, silence(0.3, sr), message]).astype(np.float32)


def tone_trap(wav: np.ndarray, sr: int, seed: int = 0) -> np.ndarray:
    """A trap needing no speech engine: a 1 kHz tone burst over a heavily degraded clip (expected score <= 2)."""
    bad = degrade(wav, sr, seed)
    burst = tone(1000.0, 0.5, sr, amplitude=float(np.abs(bad).max()))
    return np.concatenate([burst, silence(0.1, sr), bad]).astype(np.float32)


def beeps_clip(count: int, sr: int, seed: int = 0) -> np.ndarray:
    """``count`` 1 kHz beeps at uneven intervals over faint noise: the rater counts them (environment check)."""
    rng = np.random.default_rng(seed)
    parts = [silence(0.3, sr)]
    for _ in range(count):
        parts += [tone(1000.0, 0.1, sr, 0.08), silence(float(rng.uniform(0.15, 0.3)), sr)]
    x = np.concatenate(parts)
    return (x + 0.002 * rng.standard_normal(x.size)).astype(np.float32)


def headphone_clip(quiet: int, antiphase: int, sr: int) -> np.ndarray:
    """Woods et al. (2017) headphone screening: three 200 Hz tones, stereo ``[T, 2]``; which is quietest?

    Tone ``quiet`` is 6 dB down; tone ``antiphase`` is full level with the right channel inverted.
    Over headphones the 6 dB one is clearly quietest; over loudspeakers the antiphase tone partly
    cancels in the air and sounds quieter, so loudspeaker listeners tend to pick it.
    """
    parts = []
    for i in range(3):
        x = tone(200.0, 0.5, sr, 0.1 * (0.5 if i == quiet else 1.0))
        parts += [np.stack([x, -x if i == antiphase else x], axis=1), silence(0.35, sr, 2)]
    return np.concatenate(parts).astype(np.float32)


def write_stimulus(path: str | Path, wav: np.ndarray, sr: int, seed: int) -> float:
    """Write 16-bit PCM WAV (no metadata chunks) with TPDF dither; returns the duration in seconds.

    Everything is re-encoded, so no tag of a source file survives, and the dither makes two files of
    the same audio (MUSHRA's reference and hidden reference) differ byte for byte.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(wav, dtype=np.float64) * 32767.0
    x = x + rng.uniform(-0.5, 0.5, x.shape) + rng.uniform(-0.5, 0.5, x.shape)
    pcm = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), pcm, sr, subtype="PCM_16", format="WAV")
    return len(pcm) / sr

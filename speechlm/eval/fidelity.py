"""Resynthesis fidelity of a codec or vocoder: PESQ-WB, STOI, log-mel distance and SI-SDR against the input."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

FIDELITY_SAMPLE_RATE = 16000  # PESQ wide-band is defined at 16 kHz; the codec papers we compare with use it
SILENCE_PEAK = 1e-4  # about -80 dBFS
EPS = 1e-8


@dataclass
class FidelityScores:
    """One reference/degraded pair. A metric that cannot be computed is NaN, with its reason in ``reasons``."""

    pesq_wb: float = math.nan  # 1.04-4.64 (ITU-T P.862.2 MOS-LQO scale)
    stoi: float = math.nan  # 0-1
    mel_distance: float = math.nan  # mean |ln mel_ref - ln mel_deg| over 80 bands; 0 for identical signals
    si_sdr: float = math.nan  # dB; +inf-like (~80+) for identical signals, ~0 when noise matches the signal
    reasons: dict[str, str] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        return {"pesq_wb": self.pesq_wb, "stoi": self.stoi, "mel_distance": self.mel_distance, "si_sdr": self.si_sdr}


def _check_pair(ref: np.ndarray, deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref, deg = np.asarray(ref, dtype=np.float64), np.asarray(deg, dtype=np.float64)
    if ref.ndim != 1 or deg.ndim != 1:
        raise ValueError(f"expected mono audio [T], got shapes {ref.shape} and {deg.shape}")
    n = min(len(ref), len(deg))
    if n == 0:
        raise ValueError("empty audio")
    return ref[:n], deg[:n]


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al., 2019): insensitive to gain, sensitive to everything else."""
    ref, est = _check_pair(reference, estimate)
    ref, est = ref - ref.mean(), est - est.mean()
    alpha = (est @ ref) / (ref @ ref + EPS)
    target = alpha * ref
    noise = est - target
    return float(10 * np.log10((target @ target + EPS) / (noise @ noise + EPS)))


def log_mel_distance(reference: np.ndarray, estimate: np.ndarray, sample_rate: int = FIDELITY_SAMPLE_RATE,
                     n_mels: int = 80) -> float:
    """Mean absolute difference of natural-log mel magnitudes (the "mel distance" codec papers report).

    64 ms windows with a 16 ms hop at 16 kHz; magnitudes are floored at 1e-5 so silence does not
    dominate the mean with log(0).
    """
    import librosa

    ref, est = _check_pair(reference, estimate)
    n_fft = int(0.064 * sample_rate)
    hop = n_fft // 4
    if len(ref) < n_fft:
        raise ValueError(f"shorter than one {n_fft}-sample analysis window")
    opts = dict(sr=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels, power=1.0)
    m_ref = librosa.feature.melspectrogram(y=ref.astype(np.float32), **opts)
    m_est = librosa.feature.melspectrogram(y=est.astype(np.float32), **opts)
    return float(np.mean(np.abs(np.log(np.maximum(m_ref, 1e-5)) - np.log(np.maximum(m_est, 1e-5)))))


def pesq_wb(reference: np.ndarray, estimate: np.ndarray, sample_rate: int = FIDELITY_SAMPLE_RATE) -> float:
    """PESQ wide-band (P.862.2). Raises on input PESQ cannot score (silent, shorter than 0.25 s)."""
    from pesq import pesq

    ref, est = _check_pair(reference, estimate)
    return float(pesq(sample_rate, ref.astype(np.float32), est.astype(np.float32), "wb"))


def stoi(reference: np.ndarray, estimate: np.ndarray, sample_rate: int = FIDELITY_SAMPLE_RATE) -> float:
    """Short-time objective intelligibility (Taal et al., 2011), 0-1.

    pystoi quietly returns 1e-5 when too little speech is left after its silence removal; that is
    turned into an error here, since 1e-5 would read as "unintelligible" rather than "not measurable".
    """
    from pystoi import stoi as _stoi

    ref, est = _check_pair(reference, estimate)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_stoi(ref, est, sample_rate, extended=False))
    for w in caught:
        if "Not enough STFT frames" in str(w.message):
            raise ValueError("too little non-silent audio for STOI (needs about 0.4 s of speech)")
    return value


def _to_rate(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if sample_rate != FIDELITY_SAMPLE_RATE:
        import librosa

        wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=FIDELITY_SAMPLE_RATE, res_type="soxr_hq")
    return wav


def fidelity(reference: np.ndarray, reference_rate: int, degraded: np.ndarray, degraded_rate: int) -> FidelityScores:
    """All four metrics at 16 kHz on the common prefix of both signals; never raises on content.

    Signals must be time-aligned (a codec's output is sample-aligned with its input by contract); only
    the length is reconciled, by cutting both to the shorter one.
    """
    ref, deg = _to_rate(reference, reference_rate), _to_rate(degraded, degraded_rate)
    out = FidelityScores()
    n = min(len(ref), len(deg))
    problem = None
    if n == 0:
        problem = "empty audio"
    elif not (np.isfinite(ref[:n]).all() and np.isfinite(deg[:n]).all()):
        problem = "audio contains NaN or infinite samples"
    elif float(np.abs(ref[:n]).max()) < SILENCE_PEAK:
        problem = "reference is silent"
    if problem:
        out.reasons = {k: problem for k in out.metrics()}
        return out
    ref, deg = ref[:n], deg[:n]
    todo = {"pesq_wb": pesq_wb, "stoi": stoi, "mel_distance": log_mel_distance, "si_sdr": si_sdr}
    if float(np.abs(deg).max()) < SILENCE_PEAK:
        # A silent output is a failure the other two metrics score as such (STOI 0, a large mel distance);
        # PESQ crashes on it and SI-SDR's optimal scale is 0, which makes it 0/0.
        for name in ("pesq_wb", "si_sdr"):
            out.reasons[name] = "degraded audio is silent"
            del todo[name]
    for name, fn in todo.items():
        try:
            setattr(out, name, fn(ref, deg))
        except (RuntimeError, ValueError) as e:  # PesqError is a RuntimeError; pesq raises ValueError on silence
            msg = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
            out.reasons[name] = f"{type(e).__name__}: {msg}"
    return out

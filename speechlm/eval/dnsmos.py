"""Predicted MOS without listeners: Microsoft's DNSMOS (P.835 SIG/BAK/OVRL and P.808) via speechmos's bundled ONNX models."""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

DNSMOS_SAMPLE_RATE = 16000
MIN_SECONDS = 0.1  # DNSMOS tiles a clip to 9 s; tiling a shorter scrap rates the tiling, not the speech


@dataclass(frozen=True)
class DNSMOSScores:
    """Scores on a 1-5 scale: overall quality, speech signal, background noise (P.835), and P.808 overall."""

    ovrl: float
    sig: float
    bak: float
    p808: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def nan(cls) -> "DNSMOSScores":
        return cls(math.nan, math.nan, math.nan, math.nan)


class DNSMOS:
    """DNSMOS scorer. speechmos keeps one ONNX session per process, so instances are cheap after the first.

    DNSMOS was trained on noisy/enhanced speech, not TTS: it ranks noise and distortion well but is blind
    to wrong words and mispronunciations, which is why WER is measured alongside it.
    """

    def __init__(self, personalized: bool = False):
        # The personalized variant penalizes interfering talkers as well as noise.
        self.model_type = "dnsmos_personalized" if personalized else "dnsmos"

    def __call__(self, wav: np.ndarray, sample_rate: int) -> DNSMOSScores:
        """Score mono float audio ``[T]``; raises ``ValueError`` on empty, non-finite or too-short audio."""
        from speechmos import dnsmos

        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise ValueError(f"expected mono audio [T], got shape {wav.shape}")
        if not np.isfinite(wav).all():
            raise ValueError("audio contains NaN or infinite samples")
        if wav.size < MIN_SECONDS * sample_rate:
            raise ValueError(f"audio shorter than {MIN_SECONDS:g} s ({wav.size / sample_rate:.3f} s)")
        if sample_rate != DNSMOS_SAMPLE_RATE:
            import librosa

            wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=DNSMOS_SAMPLE_RATE, res_type="soxr_hq")
        # speechmos rejects samples outside [-1, 1]; a clipped synthesis is scored as the listener hears it.
        out = dnsmos.run(np.clip(wav, -1.0, 1.0), DNSMOS_SAMPLE_RATE, model_type=self.model_type)
        return DNSMOSScores(ovrl=float(out["ovrl_mos"]), sig=float(out["sig_mos"]), bak=float(out["bak_mos"]),
                            p808=float(out["p808_mos"]))


@functools.lru_cache(maxsize=2)
def get_dnsmos(personalized: bool = False) -> DNSMOS:
    return DNSMOS(personalized)

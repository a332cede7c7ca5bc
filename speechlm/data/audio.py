"""Audio I/O and validation: read any format soundfile reads, and say exactly what is wrong with a bad file."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from speechlm.errors import SpeechLMError


class AudioError(SpeechLMError):
    """An audio file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class AudioCheck:
    """Limits applied when a corpus is prepared (see ``configs/data/prepare/*.yaml``)."""

    min_duration: float = 0.05  # seconds; shorter clips carry no speech worth training on
    max_duration: float = 30.0  # seconds; longer clips blow up batch memory in the LM and vocoder
    silence_dbfs: float = -60.0  # a clip whose peak is below this is treated as silent


@dataclass(frozen=True)
class AudioInfo:
    """What a full decode of a file found out."""

    sample_rate: int
    num_samples: int
    num_channels: int
    peak_dbfs: float

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate


def _wav_declared_frames(path: Path, block_align: int | None = None) -> int | None:
    """Frames the RIFF ``data`` chunk header promises, or None when it is not a plain RIFF/WAVE file.

    libsndfile silently clamps a truncated WAV to the bytes present, so a file cut off mid-download
    reads as a shorter, valid clip. Comparing with the header's promise catches it.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size + (size & 1))
                    block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
                elif cid == b"data":
                    # Streaming writers leave 0 or 0xFFFFFFFF here: the length is unknown, not wrong.
                    if size in (0, 0xFFFFFFFF) or not block_align:
                        return None
                    return size // block_align
                else:
                    f.seek(size + (size & 1), 1)
    except OSError:
        return None


def read_audio(path: str | Path, *, always_2d: bool = False) -> tuple[np.ndarray, int]:
    """Decode a whole file to float32. Returns ``(wav [T] or [T, C], sample_rate)``.

    Raises :class:`AudioError` naming the file for a missing, unreadable, corrupt or truncated file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file does not exist")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    try:
        with sf.SoundFile(str(path)) as f:
            sr, declared = f.samplerate, f.frames
            wav = f.read(dtype="float32", always_2d=always_2d)
    except sf.LibsndfileError as e:
        msg = str(e.error_string if hasattr(e, "error_string") else e).strip()
        if "lost sync" in msg or "truncat" in msg.lower():
            raise AudioError(path, f"corrupt or truncated audio ({msg})") from None
        raise AudioError(path, f"cannot decode audio: {msg}") from None
    except (RuntimeError, ValueError, TypeError) as e:  # soundfile wraps some decoder failures
        raise AudioError(path, f"cannot decode audio: {e}") from None
    if len(wav) < declared:
        raise AudioError(path, f"truncated: header says {declared} frames, only {len(wav)} decoded")
    promised = _wav_declared_frames(path)
    if promised is not None and promised > len(wav):
        raise AudioError(path, f"truncated: WAV header promises {promised} frames, file holds {len(wav)}")
    return wav, sr


def inspect_audio(path: str | Path, check: AudioCheck = AudioCheck()) -> AudioInfo:
    """Fully decode ``path`` and apply ``check``; raise :class:`AudioError` on the first problem found."""
    wav, sr = read_audio(path, always_2d=True)
    n = wav.shape[0]
    if n == 0:
        raise AudioError(path, "zero-length audio (0 samples)")
    if not np.isfinite(wav).all():
        raise AudioError(path, "contains NaN or infinite samples")
    peak = float(np.abs(wav).max())
    peak_db = 20 * math.log10(peak) if peak > 0 else -math.inf
    duration = n / sr
    if peak_db < check.silence_dbfs:
        shown = "-inf" if math.isinf(peak_db) else f"{peak_db:.1f}"
        raise AudioError(path, f"silent clip (peak {shown} dBFS < {check.silence_dbfs:g} dBFS)")
    if duration < check.min_duration:
        raise AudioError(path, f"too short: {duration:.3f} s < min_duration {check.min_duration:g} s")
    if duration > check.max_duration:
        raise AudioError(path, f"too long: {duration:.2f} s > max_duration {check.max_duration:g} s")
    return AudioInfo(sample_rate=sr, num_samples=n, num_channels=wav.shape[1], peak_dbfs=peak_db)


def load_audio(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` as mono float32 ``[T]``, resampled to ``sample_rate`` when given."""
    wav, sr = read_audio(path, always_2d=True)
    wav = wav.mean(axis=1)
    if sample_rate is not None and sr != sample_rate:
        import librosa  # deferred: librosa is slow to import and most callers never resample

        wav = librosa.resample(wav, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
        sr = sample_rate
    return wav.astype(np.float32, copy=False), sr

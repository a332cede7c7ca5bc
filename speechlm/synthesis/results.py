"""What synthesis returns, and how pieces of audio are joined (fades + pauses) the same way in batch and stream."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch


@dataclass
class Segment:
    """One piece of the input text: a sentence, or part of a sentence too long for one generation."""

    sentence: int  # index of the sentence it belongs to (pieces of one sentence share it)
    text: str  # as written in the input
    char_span: tuple[int, int]  # [start, end) in the input text
    normalized: str = ""
    phonemes: str = ""
    frames: int = 0  # audio frames generated
    sample_span: tuple[int, int] = (0, 0)  # [start, end) in the result's audio
    status: str = "ok"  # ok | skipped (nothing speakable)
    hit_max_frames: bool = False  # the length guard ended it: the LM did not stop by itself

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Timings:
    first_audio_s: float  # from the call until the first audio was ready (stream: the first chunk)
    total_s: float
    audio_s: float

    @property
    def rtf(self) -> float:
        """Real-time factor: seconds of compute per second of audio (< 1 is faster than real time)."""
        return self.total_s / self.audio_s if self.audio_s > 0 else float("inf")

    def to_dict(self) -> dict:
        return {**asdict(self), "rtf": self.rtf}


@dataclass
class VoiceInfo:
    name: str  # preset name, reference file, or "" for no voice prompt
    transcript: str  # what the prompt says, as phonemes
    transcript_source: str  # given | asr | preset | none


@dataclass
class SynthesisResult:
    audio: np.ndarray  # float32 [N] at sample_rate
    sample_rate: int
    tokens: torch.Tensor  # [K, T]: every segment's codes, in order
    text: str
    phonemes: str
    segments: list[Segment]
    timings: Timings
    voice: VoiceInfo
    seed: int | None

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


@dataclass
class Request:
    """One text to synthesize in a batch (``Pipeline.synthesize_batch``)."""

    text: str
    voice: object = None  # preset name, reference audio path, a Voice, or None
    voice_text: str | None = None
    seed: int | None = 0
    id: str = ""
    options: dict = field(default_factory=dict)


def _ramp(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)  # raised cosine


class Fader:
    """Fade-in over the first ``n`` samples and fade-out over the last ``n`` of one piece fed in chunks.

    ``push`` holds the last ``n`` samples back until ``finish``, because they might be the end.
    """

    def __init__(self, n: int):
        self.n, self.seen, self.held = n, 0, np.zeros(0, np.float32)

    def push(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.array(chunk, dtype=np.float32)
        if self.seen < self.n:
            k = min(self.n - self.seen, len(chunk))
            chunk[:k] *= _ramp(self.n)[self.seen: self.seen + k]
        self.seen += len(chunk)
        x = np.concatenate([self.held, chunk])
        cut = max(0, len(x) - self.n)
        self.held = x[cut:]
        return x[:cut]

    def finish(self, chunk: np.ndarray | None = None) -> np.ndarray:
        if chunk is not None and len(chunk):
            head = self.push(chunk)
        else:
            head = np.zeros(0, np.float32)
        tail, self.held = self.held, np.zeros(0, np.float32)
        k = min(self.n, len(tail))
        if k:
            tail = tail.copy()
            tail[-k:] *= _ramp(self.n)[::-1][-k:]
        return np.concatenate([head, tail])


def fade(piece: np.ndarray, n: int) -> np.ndarray:
    """The whole-piece version of :class:`Fader` (identical output)."""
    return Fader(n).finish(piece)


def silence(seconds: float, sample_rate: int) -> np.ndarray:
    return np.zeros(round(seconds * sample_rate), np.float32)

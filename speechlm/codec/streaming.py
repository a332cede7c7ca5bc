"""Chunked encoding and streaming decoding whose output matches the full pass.

Both work the same way: process a window of frames with ``context`` extra frames on each side and
keep only the middle. The codec's convolutions are non-causal but of finite reach, so when
``context`` covers their receptive field every kept sample equals the full-pass sample (up to float
rounding); ``tests/test_codec.py`` checks it. A smaller ``lookahead`` lowers streaming latency at a
measured, small cost in exactness.

Chunked encoding also bounds memory: a 1-hour file is encoded window by window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from speechlm.codec.base import Codec, CodecInputError, check_codes, check_speaker, prepare_waveform


def default_context(codec: Codec) -> int:
    """Frames of context that make chunked processing match the full pass for ``codec``."""
    vocoder = getattr(codec, "vocoder", None)
    return max(8, vocoder.receptive_frames if vocoder is not None else 8)


@torch.inference_mode()
def _encode_windows(codec: Codec, read, n_frames: int, chunk_frames: int, context: int | None) -> torch.Tensor:
    """Encode frames ``[0, n_frames)`` window by window; ``read(lo, hi)`` returns audio ``[B, (hi-lo)*spf]``
    for frames ``lo..hi`` at the codec's rate."""
    ctx = context if context is not None else default_context(codec)
    out = []
    for start in range(0, n_frames, chunk_frames):
        end = min(start + chunk_frames, n_frames)
        lo, hi = max(0, start - ctx), min(n_frames, end + ctx)
        out.append(codec._encode(read(lo, hi))[..., start - lo: end - lo])
    return torch.cat(out, dim=-1)


def encode_chunked(codec: Codec, wav: torch.Tensor, sample_rate: int | None = None, chunk_frames: int = 750,
                   context: int | None = None) -> torch.Tensor:
    """``codec.encode`` in windows of ``chunk_frames`` frames (30 s at 25 Hz); same codes as one pass."""
    wav = prepare_waveform(wav, sample_rate, codec.sample_rate)
    spf, n_frames = codec.samples_per_frame, codec.num_frames(wav.shape[-1])
    wav = torch.nn.functional.pad(wav, (0, n_frames * spf - wav.shape[-1]))
    return _encode_windows(codec, lambda lo, hi: wav[:, lo * spf: hi * spf], n_frames, chunk_frames, context)


def encode_file(codec: Codec, path, chunk_frames: int = 750, context: int | None = None) -> tuple[torch.Tensor, int]:
    """Encode an audio file of any length and rate with memory bounded by one window.

    Returns ``(codes [1, K, T], num_samples)`` with ``num_samples`` counted at the codec's rate.
    Each window is read from disk (with context), mixed to mono and resampled on its own; the
    context frames absorb the resampler's edge effects. Window starts fall on whole samples at the
    usual rates (8, 11.025, 16, 22.05, 44.1, 48 kHz: a 40 ms frame is an integer number of samples).
    """
    import soundfile as sf

    from speechlm.data.audio import AudioError

    if not Path(path).is_file():
        raise AudioError(path, "file does not exist")
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, f"cannot decode audio: {e}") from None
    with f:
        sr, total = f.samplerate, f.frames
        if total == 0:
            raise CodecInputError(f"{path}: audio is empty (0 samples)")
        num_samples = round(total * codec.sample_rate / sr)
        spf = codec.samples_per_frame
        n_frames = codec.num_frames(num_samples)

        def read(lo: int, hi: int) -> torch.Tensor:
            a, b = round(lo * spf * sr / codec.sample_rate), round(hi * spf * sr / codec.sample_rate)
            f.seek(min(a, total))
            wav = prepare_waveform(f.read(b - a, dtype="float32", always_2d=True).T[None], sr, codec.sample_rate) \
                if b > a and a < total else torch.zeros(1, 0)
            want = (hi - lo) * spf
            return torch.nn.functional.pad(wav, (0, max(0, want - wav.shape[-1])))[..., :want]

        return _encode_windows(codec, read, n_frames, chunk_frames, context), num_samples


class StreamingDecoder:
    """Feed codes as they arrive (``push``), get audio as soon as it is final; ``flush`` at the end.

    Audio for frame ``t`` is emitted once frames up to ``t + lookahead`` are known (or the stream
    ended). With ``lookahead >= default_context(codec)`` the concatenated output equals
    ``codec.decode`` of all codes at once.
    """

    def __init__(self, codec: Codec, lookahead: int | None = None, context: int | None = None,
                 speaker: torch.Tensor | None = None):
        self.codec, self.speaker = codec, speaker  # speaker: a voice embedding, for voice-conditioned codecs
        full = default_context(codec)
        self.lookahead = full if lookahead is None else lookahead
        self.context = full if context is None else context
        self._codes: torch.Tensor | None = None  # every frame received, [B, K, T]
        self._emitted = 0  # frames whose audio has been returned
        self._phase: torch.Tensor | None = None  # a harmonic vocoder's source phase at frame _emitted

    @torch.inference_mode()
    def _render(self, start: int, end: int) -> torch.Tensor:
        total = self._codes.shape[-1]
        lo, hi = max(0, start - self.context), min(total, end + self.context)
        spf = self.codec.samples_per_frame
        if getattr(self.codec, "harmonic", False):
            # the source's phase is the one state spanning the whole signal: pin it at `start` to where
            # the audio already returned left it, then keep where it stands at `end` for the next window
            per_frame = spf // self.codec.vocoder_config.hop_length
            if self._phase is None:
                self._phase = torch.zeros(self._codes.shape[0], dtype=torch.float64)
            wav, phase = self.codec._decode_anchored(self._codes[..., lo:hi], self.speaker,
                                                     ((start - lo) * per_frame, self._phase))
            self._phase = phase[:, (end - lo) * per_frame].cpu()
        else:
            wav = self.codec._decode(self._codes[..., lo:hi], self.speaker)
        return wav[..., (start - lo) * spf: (end - lo) * spf]

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Add ``codes [B, K, n]``; returns the audio ``[B, samples]`` that became final (may be empty)."""
        check_codes(codes, self.codec.info)
        check_speaker(self.speaker, codes.shape[0], self.codec)
        self._codes = codes if self._codes is None else torch.cat([self._codes, codes], dim=-1)
        ready = self._codes.shape[-1] - self.lookahead
        if ready <= self._emitted:
            return torch.zeros(codes.shape[0], 0)
        wav = self._render(self._emitted, ready)
        self._emitted = ready
        return wav

    def flush(self) -> torch.Tensor:
        """The audio of every frame not yet returned (the stream has ended)."""
        if self._codes is None or self._emitted >= self._codes.shape[-1]:
            return torch.zeros(0 if self._codes is None else self._codes.shape[0], 0)
        wav = self._render(self._emitted, self._codes.shape[-1])
        self._emitted = self._codes.shape[-1]
        return wav


def decode_stream(codec: Codec, codes: torch.Tensor, chunk_frames: int = 5, lookahead: int | None = None,
                  speaker: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Decode ``codes`` as if they arrived ``chunk_frames`` at a time; yields audio chunks."""
    dec = StreamingDecoder(codec, lookahead, speaker=speaker)
    for start in range(0, codes.shape[-1], chunk_frames):
        wav = dec.push(codes[..., start: start + chunk_frames])
        if wav.shape[-1]:
            yield wav
    tail = dec.flush()
    if tail.shape[-1]:
        yield tail

"""The codec interface every tokenizer implements, and the audio-token contract, written down once.

Audio tokens are integer tensors ``codes[B, K, T]``:

* ``B`` utterances, ``K`` codebooks (residual quantizer levels, coarse to fine), ``T`` frames at the
  codec's ``frame_rate`` (Hz);
* every value is in ``[0, codebook_size)``;
* ``T = ceil(num_samples / samples_per_frame)``: the last frame covers the zero-padded tail, and
  ``decode(codes, num_samples)`` crops it off again.

``encode`` accepts mono or multi-channel audio at any sample rate (it is mixed to mono and resampled
to ``sample_rate``); ``decode`` returns mono float audio ``[B, num_samples]`` at ``sample_rate``.

A codec whose decoder is voice-conditioned (``voice_conditioned``) also takes a voice embedding
``speaker [B or 1, D]`` from :meth:`Codec.speaker_embedding` of a short reference clip: the tokens stay
the same, the reference only restores timbre. Without one it decodes unconditioned; codecs that are
not voice-conditioned return ``None`` from ``speaker_embedding`` and take none.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

import numpy as np
import torch

from speechlm.errors import SpeechLMError


class CodecInputError(SpeechLMError):
    """Audio a codec cannot encode (NaN, empty, wrong shape); the message says what is wrong."""


@dataclass(frozen=True)
class CodecInfo:
    """Identity of a codec's token space; token files carry it, and loading checks it."""

    name: str
    version: str
    sample_rate: int
    frame_rate: float
    n_codebooks: int
    codebook_size: int

    @property
    def bitrate(self) -> float:
        """Bits per second of the token stream."""
        return self.frame_rate * self.n_codebooks * math.log2(self.codebook_size)

    def to_dict(self) -> dict:
        return asdict(self)


class Codec(ABC):
    """``encode(wav) -> codes [B, K, T]`` and ``decode(codes) -> wav [B, samples]``."""

    info: CodecInfo

    @property
    def sample_rate(self) -> int:
        return self.info.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.info.frame_rate

    @property
    def n_codebooks(self) -> int:
        return self.info.n_codebooks

    @property
    def codebook_size(self) -> int:
        return self.info.codebook_size

    @property
    def bitrate(self) -> float:
        return self.info.bitrate

    @property
    def samples_per_frame(self) -> int:
        return round(self.sample_rate / self.frame_rate)

    def num_frames(self, num_samples: int) -> int:
        return max(1, math.ceil(num_samples / self.samples_per_frame))

    @abstractmethod
    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, L]`` float at ``sample_rate``, L a multiple of ``samples_per_frame`` -> ``codes [B, K, T]``."""

    @abstractmethod
    def _decode(self, codes: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """``codes [B, K, T]`` (+ voice embedding) -> ``wav [B, T * samples_per_frame]``."""

    @property
    def speaker_dim(self) -> int:
        """Size of the voice embedding ``decode`` takes; 0 when the codec is not voice-conditioned."""
        return 0

    @property
    def voice_conditioned(self) -> bool:
        """Whether ``decode`` uses a voice embedding from a reference clip."""
        return self.speaker_dim > 0

    def _speaker_embedding(self, wav: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def voice_encoder_hash(self) -> str | None:
        """sha256 of the weights ``speaker_embedding`` runs on (None when not voice-conditioned): stored
        embeddings are only valid for the encoder that made them."""
        return None

    @torch.inference_mode()
    def speaker_embedding(self, wav: torch.Tensor | np.ndarray, sample_rate: int | None = None) -> torch.Tensor | None:
        """Voice embedding ``[1, D]`` of a reference clip (any rate, mono or not) for ``decode``; None when the
        codec is not voice-conditioned. A batch of clips gives ``[B, D]``."""
        if not self.voice_conditioned:
            return None
        return self._speaker_embedding(prepare_waveform(wav, sample_rate, self.sample_rate))

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor | np.ndarray, sample_rate: int | None = None) -> torch.Tensor:
        """Tokens for ``wav`` (``[L]``, ``[B, L]`` or ``[B, C, L]``), resampled from ``sample_rate`` if given."""
        wav = prepare_waveform(wav, sample_rate, self.sample_rate)
        pad = self.num_frames(wav.shape[-1]) * self.samples_per_frame - wav.shape[-1]
        return self._encode(torch.nn.functional.pad(wav, (0, pad)))

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, num_samples: int | None = None,
               speaker: torch.Tensor | None = None) -> torch.Tensor:
        """Audio ``[B, samples]`` for ``codes [B, K, T]``, cropped to ``num_samples`` when given.

        ``speaker``: a voice embedding from :meth:`speaker_embedding` (``[B or 1, D]``), for a
        voice-conditioned codec; ignored (it is ``None``) for the others.
        """
        check_codes(codes, self.info)
        check_speaker(speaker, codes.shape[0], self)
        wav = self._decode(codes, speaker)
        return wav[..., :num_samples] if num_samples is not None else wav


def prepare_waveform(wav: torch.Tensor | np.ndarray, sample_rate: int | None, target_rate: int) -> torch.Tensor:
    """Float32 ``[B, L]`` mono at ``target_rate``; rejects empty, NaN or infinite audio with a clear error."""
    wav = torch.as_tensor(np.asarray(wav) if not isinstance(wav, torch.Tensor) else wav, dtype=torch.float32)
    if wav.dim() == 1:
        wav = wav[None]
    elif wav.dim() == 3:
        wav = wav.mean(dim=1)  # [B, C, L] -> mono
    elif wav.dim() != 2:
        raise CodecInputError(f"audio must be [L], [B, L] or [B, C, L]; got shape {tuple(wav.shape)}")
    if wav.shape[-1] == 0:
        raise CodecInputError("audio is empty (0 samples)")
    if not torch.isfinite(wav).all():
        raise CodecInputError("audio contains NaN or infinite samples")
    if sample_rate is not None and sample_rate != target_rate:
        import torchaudio.functional as AF  # deferred: only needed when rates differ

        wav = AF.resample(wav, sample_rate, target_rate)
    return wav


def check_codes(codes: torch.Tensor, info: CodecInfo) -> None:
    if codes.dim() != 3:
        raise SpeechLMError(f"codes must be [B, K, T]; got shape {tuple(codes.shape)}")
    if codes.shape[1] > info.n_codebooks:
        raise SpeechLMError(f"codes have {codes.shape[1]} codebooks; {info.name} has {info.n_codebooks}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= info.codebook_size):
        raise SpeechLMError(f"code values must be in [0, {info.codebook_size}); got "
                            f"[{int(codes.min())}, {int(codes.max())}]")


def check_speaker(speaker: torch.Tensor | None, batch: int, codec: Codec) -> None:
    if speaker is None:
        return
    if not codec.voice_conditioned:
        raise SpeechLMError(f"{codec.info.name} is not voice-conditioned: decode takes no speaker embedding")
    if speaker.dim() != 2 or speaker.shape[0] not in (1, batch) or speaker.shape[1] != codec.speaker_dim:
        raise SpeechLMError(f"speaker embedding must be [{batch} or 1, {codec.speaker_dim}] (from speaker_embedding); "
                            f"got shape {tuple(speaker.shape)}")

"""The project's speech tokenizer: log-mel -> conv encoder (100 Hz -> 25 Hz) -> residual FSQ -> codes.

Why mel in, not raw waveform (as EnCodec/Mimi do): the tokens only need to carry what a listener and
the LM need (content, prosody, coarse timbre); a mel front end drops phase and makes the encoder
small and fast enough to train on CPU. The vocoder (``speechlm.vocoder``) restores the waveform.

Default: 25 Hz frames x 4 residual levels x 1000 codes (FSQ levels 8x5x5x5) = 997 bit/s. Training
with quantizer dropout (a random number of levels on some steps) makes the first 1, 2 or 3 levels
usable on their own, so the same model also runs at 249, 498 or 748 bit/s.

Why finite scalar quantization (Mentzer et al. 2023, as in CosyVoice 2) rather than a learned VQ
codebook: there is no codebook to collapse. Measured here, encodec's EMA RVQ let its first level
collapse to a perplexity of ~4 of 1024 within 200 CPU steps; FSQ rounds each latent dimension to a
fixed grid, so every code stays reachable and no dead-code bookkeeping is needed.

Why each residual level has its own projection (:class:`ResidualFSQ` below, built from the library's
``FSQ``) rather than vector-quantize-pytorch's ``ResidualFSQ``: the library's version projects the
latent once to ``len(levels)`` = 4 dimensions and refines those same 4 numbers at every level, so the
whole codec is a rank-4 bottleneck. Measured on a checkpoint trained that way (1,500 steps), levels 3
and 4 changed STOI by less than 0.002. Here every level quantizes the residual of the full latent in
its own learned 4-d subspace, the way residual VQ does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from vector_quantize_pytorch import FSQ

from speechlm.errors import SpeechLMError


@dataclass
class CodecConfig:
    sample_rate: int = 24000
    n_fft: int = 1024
    hop_length: int = 240  # 100 Hz analysis frames
    n_mels: int = 100
    strides: list[int] = field(default_factory=lambda: [2, 2])  # 100 Hz -> 25 Hz
    dim: int = 256
    blocks_per_stage: int = 2
    latent_dim: int = 128
    n_codebooks: int = 4  # residual FSQ levels
    fsq_levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])  # 1000 codes per level
    # The encoder hears only mel bands that lie wholly below this (Hz); those above are held at the log floor.
    # None: the whole band. The vocoder still makes all 12 kHz (see SpeechTokenizer.features).
    encoder_max_hz: float | None = None

    def __post_init__(self):
        if self.encoder_max_hz is not None and not 0 < self.encoder_max_hz <= self.sample_rate / 2:
            raise SpeechLMError(f"encoder_max_hz must be in (0, {self.sample_rate / 2}], got {self.encoder_max_hz}")

    @property
    def codebook_size(self) -> int:
        return math.prod(self.fsq_levels)

    @property
    def samples_per_frame(self) -> int:
        return self.hop_length * math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.samples_per_frame

    @property
    def bitrate(self) -> float:
        return self.frame_rate * self.n_codebooks * math.log2(self.codebook_size)

    @classmethod
    def tiny(cls) -> "CodecConfig":
        """For tests: a few thousand parameters, same frame rate and shapes."""
        return cls(dim=16, blocks_per_stage=1, latent_dim=8, n_codebooks=2, fsq_levels=[4, 4], n_mels=20)

    @classmethod
    def default(cls) -> "CodecConfig":
        return cls()


class MelSpectrogram(nn.Module):
    """Log-mel frames ``[B, n_mels, L / hop]`` for audio ``[B, L]`` with L a multiple of ``hop``."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int):
        super().__init__()
        import torchaudio  # deferred: importing torchaudio costs ~0.5 s

        self.hop_length = hop_length
        self.floor = math.log(1e-5)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, center=True, power=1.0)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        with torch.autocast(wav.device.type, enabled=False):  # STFT in fp32 even under bf16 training
            mel = self.mel(wav.float())
        # center=True yields L/hop + 1 frames; the last one only covers padding.
        return torch.log(mel[..., : wav.shape[-1] // self.hop_length].clamp(min=1e-5))

    def bands_below(self, max_hz: float) -> torch.Tensor:
        """``[n_mels]`` bool: the mel bands whose triangular filter has no weight above ``max_hz``."""
        fb = self.mel.mel_scale.fb  # [n_freqs, n_mels]
        freqs = torch.linspace(0, self.mel.sample_rate / 2, fb.shape[0])
        return ~(fb[freqs > max_hz] > 0).any(0)


class ResBlock(nn.Module):
    """Two dilated convs with a residual connection (the EnCodec/SEANet encoder block)."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.GELU(), nn.Conv1d(dim, dim, 3, dilation=dilation, padding=dilation),
            nn.GELU(), nn.Conv1d(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class CodecEncoder(nn.Module):
    """Log-mel ``[B, n_mels, T100]`` -> latent ``[B, latent_dim, T100 / prod(strides)]``."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(cfg.n_mels, cfg.dim, 7, padding=3)]
        for stride in cfg.strides:
            layers += [ResBlock(cfg.dim, 3 ** i) for i in range(cfg.blocks_per_stage)]
            layers += [nn.GELU(), nn.Conv1d(cfg.dim, cfg.dim, 2 * stride, stride=stride, padding=stride // 2)]
        layers += [ResBlock(cfg.dim, 1), nn.GELU(), nn.Conv1d(cfg.dim, cfg.latent_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.total_stride = math.prod(cfg.strides)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.net(mel)[..., : mel.shape[-1] // self.total_stride]


class ResidualFSQ(nn.Module):
    """Residual FSQ over the full latent: level ``k`` quantizes what levels ``< k`` left over, each in its
    own learned ``len(levels)``-d subspace (``FSQ`` projects in and out). Coarse to fine, so the first
    ``n`` levels alone decode (lower bitrate) and quantizer dropout can train that."""

    def __init__(self, dim: int, levels: list[int], n_levels: int):
        super().__init__()
        self.levels = nn.ModuleList(FSQ(levels=levels, dim=dim) for _ in range(n_levels))

    def forward(self, z: torch.Tensor, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [B, T, D]`` -> (quantized ``[B, T, D]``, codes ``[B, K, T]``, -1 for levels past ``n``)."""
        n = len(self.levels) if n is None else n
        residual, out = z, torch.zeros_like(z)
        codes = torch.full((z.shape[0], len(self.levels), z.shape[1]), -1, dtype=torch.long, device=z.device)
        for k, fsq in enumerate(self.levels[:n]):
            q, idx = fsq(residual)
            out = out + q
            residual = residual - q.detach()  # the next level sees what this one missed
            codes[:, k] = idx
        return out, codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, K, T]`` (``K <= n_levels``) -> quantized latent ``[B, T, D]``."""
        return sum(self.levels[k].indices_to_codes(codes[:, k]) for k in range(codes.shape[1]))


@dataclass
class CodecOutput:
    latent: torch.Tensor  # [B, D, T] quantized latent (straight-through gradients in training)
    codes: torch.Tensor  # [B, K, T]; -1 marks levels dropped by quantizer dropout
    n_codebooks: int


class SpeechTokenizer(nn.Module):
    """Encoder + residual FSQ. ``encode`` gives codes; ``embed`` turns codes back into the latent."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.mel = MelSpectrogram(cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels)
        self.encoder = CodecEncoder(cfg)
        self.quantizer = ResidualFSQ(cfg.latent_dim, list(cfg.fsq_levels), cfg.n_codebooks)
        keep = (self.mel.bands_below(cfg.encoder_max_hz) if cfg.encoder_max_hz
                else torch.ones(cfg.n_mels, dtype=torch.bool))
        self.register_buffer("encoder_bands", keep, persistent=False)  # derived from the config, not saved

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """What the encoder hears: log-mel ``[B, n_mels, T100]``, the bands above ``encoder_max_hz`` at the floor.

        Why a band limit: the real read speech in training is LibriSpeech (16 kHz, so nothing above 8 kHz) and
        FSDD (8 kHz); only some synthetic voices have energy up there. Real speech that does (LJSpeech at
        22 kHz) reached the encoder in a band it knew only from synthetic voices, and coding it low-passed at
        8 kHz first scored better (``eval/codec_domain.py``). With the bands held at the floor, speech of any
        bandwidth from 16 kHz up gives the encoder the same view; frame by frame, so streaming is unaffected.
        """
        mel = self.mel(wav)
        if self.cfg.encoder_max_hz:
            mel = mel.masked_fill(~self.encoder_bands[:, None], self.mel.floor)
        return mel

    def _quantize(self, z: torch.Tensor, dropout: bool) -> tuple[torch.Tensor, torch.Tensor]:
        n = int(torch.randint(1, self.cfg.n_codebooks + 1, ())) if dropout else self.cfg.n_codebooks
        with torch.autocast(z.device.type, enabled=False):  # the FSQ grid rounding in fp32
            quantized, codes = self.quantizer(z.float().transpose(1, 2), n)
        return quantized.transpose(1, 2), codes

    def forward(self, wav: torch.Tensor, quantizer_dropout: bool = False) -> CodecOutput:
        """``wav [B, L]`` (L a multiple of ``samples_per_frame``) -> quantized latent and codes.

        With ``quantizer_dropout`` (training only) a random number of trailing levels is dropped.
        """
        latent, codes = self._quantize(self.encoder(self.features(wav)), quantizer_dropout and self.training)
        used = int((codes[:, :, 0] >= 0).sum(1).min()) if codes.numel() else self.cfg.n_codebooks
        return CodecOutput(latent=latent, codes=codes, n_codebooks=used)

    def encode(self, wav: torch.Tensor, n_codebooks: int | None = None) -> torch.Tensor:
        _, codes = self._quantize(self.encoder(self.features(wav)), dropout=False)
        return codes[:, : n_codebooks or self.cfg.n_codebooks]

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, K, T]`` (any K <= n_codebooks) -> latent ``[B, D, T]`` (sum of the levels' outputs)."""
        with torch.autocast(codes.device.type, enabled=False):
            return self.quantizer.decode(codes.long()).transpose(1, 2)


def codebook_stats(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Per-codebook usage (fraction of entries used in the batch) and perplexity, for logging."""
    stats = {}
    for k in range(codes.shape[1]):
        level = codes[:, k].reshape(-1)
        level = level[level >= 0]  # skip levels dropped by quantizer dropout
        if not level.numel():
            continue
        counts = torch.bincount(level, minlength=codebook_size).float()
        p = counts / counts.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        stats[f"usage_{k}"] = float((counts > 0).float().mean())
        stats[f"perplexity_{k}"] = float(entropy.exp())
    return stats


def pad_to_frames(wav: torch.Tensor, samples_per_frame: int) -> torch.Tensor:
    return F.pad(wav, (0, (-wav.shape[-1]) % samples_per_frame))

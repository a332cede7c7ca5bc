"""Token latent -> 24 kHz waveform: upsample 25 Hz -> 100 Hz, Vocos ConvNeXt backbone, ISTFT head.

The head predicts STFT magnitude and phase per 100 Hz frame and an inverse STFT makes the waveform,
so the network never runs at the sample rate, unlike HiFi-GAN-style upsampling stacks; that is what
makes Vocos-style vocoders fast on CPU (``eval/bench_codec.py`` measures ours). The backbone and
head are the ``vocos`` package's own modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from vocos.heads import ISTFTHead
from vocos.models import VocosBackbone


@dataclass
class VocoderConfig:
    latent_dim: int = 128  # the codec's latent size (input)
    upsample: int = 4  # codec frames -> 100 Hz vocoder frames
    dim: int = 256
    intermediate_dim: int = 768
    num_layers: int = 8
    sample_rate: int = 24000
    n_fft: int = 1024
    hop_length: int = 240

    @classmethod
    def tiny(cls) -> "VocoderConfig":
        return cls(latent_dim=8, dim=16, intermediate_dim=32, num_layers=1, n_fft=480)

    @classmethod
    def default(cls) -> "VocoderConfig":
        return cls()


class Vocoder(nn.Module):
    """``latent [B, latent_dim, T]`` -> ``wav [B, T * upsample * hop_length]``."""

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        self.cfg = cfg
        s = cfg.upsample
        # kernel 2s, stride s, padding s/2: output length is exactly s * T
        self.upsample = nn.ConvTranspose1d(cfg.latent_dim, cfg.dim, 2 * s, stride=s, padding=s // 2)
        self.backbone = VocosBackbone(input_channels=cfg.dim, dim=cfg.dim, intermediate_dim=cfg.intermediate_dim,
                                      num_layers=cfg.num_layers)
        self.head = ISTFTHead(dim=cfg.dim, n_fft=cfg.n_fft, hop_length=cfg.hop_length, padding="same")

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.backbone(self.upsample(latent))
        with torch.autocast(latent.device.type, enabled=False):  # the inverse STFT wants fp32
            return self.head(x.float())

    @property
    def receptive_frames(self) -> int:
        """Codec frames of context on each side that influence an output frame (for chunked decoding)."""
        cfg = self.cfg
        per_100hz = 3 + 3 * cfg.num_layers + cfg.n_fft // cfg.hop_length  # embed k7, ConvNeXt k7, ISTFT overlap
        return 1 + -(-per_100hz // cfg.upsample)

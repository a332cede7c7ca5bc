"""Token latent -> 24 kHz waveform: upsample 25 Hz -> 100 Hz, Vocos ConvNeXt backbone, ISTFT head.

The head predicts STFT magnitude and phase per 100 Hz frame and an inverse STFT makes the waveform,
so the network never runs at the sample rate, unlike HiFi-GAN-style upsampling stacks; that is what
makes Vocos-style vocoders fast on CPU (``eval/bench_codec.py`` measures ours). The backbone and
head are the ``vocos`` package's own modules.

Voice conditioning (``speaker_dim > 0``): a small reference encoder turns a few seconds of the
target voice into one vector, added to every frame's input features. 1 kbps tokens keep what is
said and how, but little of the voice's fine timbre; the reference restores it, the way a TTS voice
prompt already gives the LM the voice. The reference is another utterance of the same speaker in
training (another crop of the same one where a speaker has only one), the voice prompt in
synthesis. The projection starts at zero, so a vocoder gaining conditioning starts as it was; with
no reference (``speaker=None``) the decoder runs unconditioned, as training's reference dropout taught it.
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
    speaker_dim: int = 0  # voice embedding size from a reference clip; 0 = not voice-conditioned

    @classmethod
    def tiny(cls) -> "VocoderConfig":
        return cls(latent_dim=8, dim=16, intermediate_dim=32, num_layers=1, n_fft=480)

    @classmethod
    def default(cls) -> "VocoderConfig":
        return cls()


class ReferenceEncoder(nn.Module):
    """Reference audio ``[B, L]`` at ``sample_rate`` -> voice embedding ``[B, speaker_dim]``.

    Log-mel frames, three convolutions, then the mean and standard deviation over time (statistics
    pooling, as x-vector speaker encoders do), so any length of reference gives one vector.
    """

    N_MELS = 80

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        import torchaudio  # deferred, as in the codec's mel front end

        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate=cfg.sample_rate, n_fft=cfg.n_fft,
                                                        hop_length=cfg.hop_length, n_mels=self.N_MELS, power=1.0)
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.Conv1d(self.N_MELS if i == 0 else cfg.dim, cfg.dim, 5, padding=2), nn.GELU()]
        self.convs = nn.Sequential(*layers)
        self.out = nn.Linear(2 * cfg.dim, cfg.speaker_dim)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        with torch.autocast(wav.device.type, enabled=False):
            mel = self.mel(wav.float()).clamp(min=1e-5).log()
        h = self.convs(mel)
        return self.out(torch.cat([h.mean(-1), h.std(-1, unbiased=False)], dim=-1))


class Vocoder(nn.Module):
    """``latent [B, latent_dim, T]`` (+ a voice embedding ``[B or 1, speaker_dim]``) -> ``wav [B, T * upsample * hop_length]``."""

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        self.cfg = cfg
        s = cfg.upsample
        # kernel 2s, stride s, padding s/2: output length is exactly s * T
        self.upsample = nn.ConvTranspose1d(cfg.latent_dim, cfg.dim, 2 * s, stride=s, padding=s // 2)
        self.backbone = VocosBackbone(input_channels=cfg.dim, dim=cfg.dim, intermediate_dim=cfg.intermediate_dim,
                                      num_layers=cfg.num_layers)
        self.head = ISTFTHead(dim=cfg.dim, n_fft=cfg.n_fft, hop_length=cfg.hop_length, padding="same")
        if cfg.speaker_dim:
            self.reference = ReferenceEncoder(cfg)
            self.speaker_proj = nn.Linear(cfg.speaker_dim, cfg.dim)
            nn.init.zeros_(self.speaker_proj.weight)  # adding conditioning to a trained vocoder changes nothing yet
            nn.init.zeros_(self.speaker_proj.bias)

    def embed_reference(self, wav: torch.Tensor) -> torch.Tensor:
        """Reference audio ``[B, L]`` at the vocoder's sample rate -> voice embedding ``[B, speaker_dim]``
        (``speaker_dim > 0`` only; ``Codec.speaker_embedding`` is the checked entry point)."""
        return self.reference(wav)

    def forward(self, latent: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """``speaker`` is checked where callers pass it in (``codec.base.check_speaker``)."""
        x = self.upsample(latent)
        if self.cfg.speaker_dim:  # no reference: the zero embedding that reference dropout trained
            speaker = x.new_zeros(1, self.cfg.speaker_dim) if speaker is None else speaker
            x = x + self.speaker_proj(speaker.to(x.dtype))[..., None]
        x = self.backbone(x)
        with torch.autocast(latent.device.type, enabled=False):  # the inverse STFT wants fp32
            return self.head(x.float())

    @property
    def receptive_frames(self) -> int:
        """Codec frames of context on each side that influence an output frame (for chunked decoding)."""
        cfg = self.cfg
        per_100hz = 3 + 3 * cfg.num_layers + cfg.n_fft // cfg.hop_length  # embed k7, ConvNeXt k7, ISTFT overlap
        return 1 + -(-per_100hz // cfg.upsample)

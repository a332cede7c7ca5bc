"""Reconstruction losses for codec and vocoder training: multi-resolution mel and STFT.

Several resolutions because one STFT size trades time for frequency detail: short windows
catch onsets, long windows pitch harmonics (Yamamoto et al. 2020, Parallel WaveGAN). The adversarial
losses and discriminators are the ``vocos`` package's (see ``lightning.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))  # (n_fft, hop, win)


def _magnitude(x: torch.Tensor, n_fft: int, hop: int, win: int, window: torch.Tensor) -> torch.Tensor:
    spec = torch.stft(x.float(), n_fft, hop, win, window=window, return_complex=True)
    return spec.abs().clamp(min=1e-7)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over resolutions."""

    def __init__(self, resolutions=RESOLUTIONS):
        super().__init__()
        self.resolutions = resolutions
        for n_fft, _, win in resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(win), persistent=False)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = y.new_zeros(())
        with torch.autocast(y.device.type, enabled=False):
            for n_fft, hop, win in self.resolutions:
                w = getattr(self, f"window_{n_fft}")
                m_hat, m = _magnitude(y_hat, n_fft, hop, win, w), _magnitude(y, n_fft, hop, win, w)
                sc = torch.linalg.norm(m - m_hat, dim=(-2, -1)) / torch.linalg.norm(m, dim=(-2, -1))
                loss = loss + sc.mean() + F.l1_loss(m_hat.log(), m.log())
        return loss / len(self.resolutions)


class MultiResolutionMelLoss(nn.Module):
    """L1 between log-mel spectrograms at several resolutions (the HiFi-GAN / DAC mel loss)."""

    def __init__(self, sample_rate: int, resolutions=RESOLUTIONS, n_mels=(40, 80, 128)):
        super().__init__()
        import torchaudio

        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop, win_length=win,
                                                 n_mels=m, power=1.0, center=True)
            for (n_fft, hop, win), m in zip(resolutions, n_mels))

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(y.device.type, enabled=False):
            return sum(F.l1_loss(m(y_hat.float()).clamp(min=1e-5).log(), m(y.float()).clamp(min=1e-5).log())
                       for m in self.mels) / len(self.mels)

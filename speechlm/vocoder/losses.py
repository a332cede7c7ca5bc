"""Reconstruction losses for codec and vocoder training: multi-resolution mel and STFT, and phase derivatives.

Several resolutions because one STFT size trades time for frequency detail: short windows
catch onsets, long windows pitch harmonics (Yamamoto et al. 2020, Parallel WaveGAN). The adversarial
losses and discriminators are the ``vocos`` package's (see ``lightning.py``).

Magnitude losses leave the phase free, and an ISTFT vocoder trained on them alone smears harmonics
across overlapping frames. ``PhaseDerivativeLoss`` compares the phase's derivatives instead, which a
decoder can match without knowing the waveform's absolute phase: along time (instantaneous frequency:
where exactly within its bin each harmonic lies) and along frequency (group delay: where within the
frame the energy sits), after APNet's anti-wrapping phase losses (Ai & Ling 2023).
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


def _unit(z: torch.Tensor, eps: float) -> torch.Tensor:
    """``z / |z|``, smoothed near zero so the gradient stays bounded where the output is silent."""
    return z * torch.rsqrt(z.real.square() + z.imag.square() + eps**2)


class PhaseDerivativeLoss(nn.Module):
    """Instantaneous-frequency + group-delay error, weighted by the target's magnitude, averaged over resolutions.

    For neighbouring STFT cells ``a, b`` (successive frames, or adjacent bins) the phase difference is the
    angle of ``b * conj(a)``; the error between output and target differences is scored as the cosine
    distance ``1 - cos(d_hat - d)`` (0 when equal, 1 for unrelated phases, no wrapping to undo), and each
    cell pair counts by the target's magnitude there, so noise-floor bins, whose phase is arbitrary, barely
    count. ``eps`` is relative to the target's mean magnitude.
    """

    def __init__(self, resolutions=RESOLUTIONS[1:], eps: float = 1e-2):
        super().__init__()
        self.resolutions, self.eps = resolutions, eps
        for n_fft, _, win in resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(win), persistent=False)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = y.new_zeros(())
        with torch.autocast(y.device.type, enabled=False):
            for n_fft, hop, win in self.resolutions:
                w = getattr(self, f"window_{n_fft}")
                s_hat = torch.stft(y_hat.float(), n_fft, hop, win, window=w, return_complex=True)
                s = torch.stft(y.float(), n_fft, hop, win, window=w, return_complex=True)  # [B, F, T]
                scale = s.abs().mean(dim=(-2, -1), keepdim=True)
                eps = self.eps * scale.square()  # the products below are magnitudes squared
                for dim in (-1, -2):  # time (instantaneous frequency), frequency (group delay)
                    n = s.shape[dim] - 1
                    a, b = s.narrow(dim, 0, n), s.narrow(dim, 1, n)
                    a_hat, b_hat = s_hat.narrow(dim, 0, n), s_hat.narrow(dim, 1, n)
                    d, d_hat = b * a.conj(), b_hat * a_hat.conj()
                    weight = d.abs()
                    cos = (_unit(d_hat, eps) * _unit(d, eps).conj()).real
                    loss = loss + ((1 - cos) * weight).sum() / weight.sum().clamp(min=1e-12)
        return loss / (2 * len(self.resolutions))

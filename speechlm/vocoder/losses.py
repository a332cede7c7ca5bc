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


class _MultiResolution(nn.Module):
    """Holds a Hann window per resolution and yields each resolution's complex STFT of a batch ``[B, L]``."""

    def __init__(self, resolutions):
        super().__init__()
        self.resolutions = resolutions
        for n_fft, _, win in resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(win), persistent=False)

    def spectra(self, *signals: torch.Tensor):
        """Per resolution, a tuple with the fp32 complex STFT ``[B, F, T]`` of each signal; autocast is off
        until the generator is exhausted, so the caller's loop body computes its loss in fp32 too."""
        with torch.autocast(signals[0].device.type, enabled=False):
            for n_fft, hop, win in self.resolutions:
                w = getattr(self, f"window_{n_fft}")
                yield tuple(torch.stft(x.float(), n_fft, hop, win, window=w, return_complex=True) for x in signals)


class MultiResolutionSTFTLoss(_MultiResolution):
    """Spectral convergence + log-magnitude L1, averaged over resolutions."""

    def __init__(self, resolutions=RESOLUTIONS):
        super().__init__(resolutions)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = y.new_zeros(())
        for s_hat, s in self.spectra(y_hat, y):
            m_hat, m = s_hat.abs().clamp(min=1e-7), s.abs().clamp(min=1e-7)
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


class PhaseDerivativeLoss(_MultiResolution):
    """Instantaneous-frequency + group-delay error, weighted by the target's magnitude, averaged over resolutions.

    For neighbouring STFT cells ``a, b`` (successive frames, or adjacent bins) the phase difference is the
    angle of ``b * conj(a)``; the error between output and target differences is scored as the cosine
    distance ``1 - cos(d_hat - d)`` (0 when equal, 1 for unrelated phases, no wrapping to undo), and each
    cell pair counts by the target's magnitude there, so noise-floor bins, whose phase is arbitrary, barely
    count. ``eps`` is relative to the target's mean magnitude.
    """

    def __init__(self, resolutions=RESOLUTIONS[1:], eps: float = 1e-2):
        super().__init__(resolutions)
        self.eps = eps

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = y.new_zeros(())
        for s_hat, s in self.spectra(y_hat, y):
            eps = self.eps * s.abs().mean(dim=(-2, -1), keepdim=True).square()  # the products below are magnitudes squared
            for dim in (-1, -2):  # time (instantaneous frequency), frequency (group delay)
                n = s.shape[dim] - 1
                d = s.narrow(dim, 1, n) * s.narrow(dim, 0, n).conj()  # b * conj(a) for neighbours a, b
                d_hat = s_hat.narrow(dim, 1, n) * s_hat.narrow(dim, 0, n).conj()
                weight = d.abs()
                cos = (_unit(d_hat, eps) * _unit(d, eps).conj()).real
                loss = loss + ((1 - cos) * weight).sum() / weight.sum().clamp(min=1e-12)
        return loss / (2 * len(self.resolutions))

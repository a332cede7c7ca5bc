"""The vocoder's reconstruction losses: what the phase-derivative loss does and does not penalise."""

from __future__ import annotations

import math

import torch

from speechlm.vocoder.losses import PhaseDerivativeLoss

SR = 24000


def harmonics(f0: float, phase: float = 0.0, seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    return sum(torch.sin(2 * math.pi * k * f0 * t + k * phase) / k for k in range(1, 6))[None] * 0.3


def test_phase_loss_asks_for_the_harmonics_frequencies_not_their_absolute_phase():
    loss = PhaseDerivativeLoss()
    target = harmonics(150.0)
    assert loss(target, target) < 1e-4
    shifted = loss(harmonics(150.0, phase=1.3), target)  # the same tone, another starting phase
    detuned = loss(harmonics(153.0), target)  # 34 cents sharp: within one STFT bin at every resolution
    noise = loss(0.3 * torch.randn_like(target), target)
    assert shifted < 0.04  # not 0: each harmonic k moved by k x 1.3 rad, so the bins between them change
    assert detuned > 4 * shifted
    assert noise > 2 * detuned


def test_phase_loss_gradient_is_finite_on_silent_output():
    y_hat = torch.zeros(2, SR // 2, requires_grad=True)
    value = PhaseDerivativeLoss()(y_hat, harmonics(120.0).expand(2, -1))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(y_hat.grad).all()

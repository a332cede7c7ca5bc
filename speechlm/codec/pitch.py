"""Pitch as a training target for the tokenizer: F0 tracks of the training crops, and a small head that
has to read voicing and F0 back from the quantized latent.

Why: trained on mel + STFT losses alone, codec v2's tokens dropped pitch. A conv probe trained to read
F0 from them missed by 194 cents (median; 49 % of voiced frames off by more than 200 cents), against
47 cents from the log-mel they were computed from (``eval/codec_pitch_probe.py``; the figures are in
configs/codec/pitch.yaml). A vocoder cannot restore harmonics the tokens do not
describe: codec v2's decoded speech was voiced in 25 % of frames against 61 % in the original
(eval/codec_diagnosis.py). The head is small on purpose, so the latent itself has to carry F0; it is a
training-time part only and is not saved with the codec.

F0 comes from WORLD's DIO + StoneMask (``pyworld``, cheap enough to run on every training batch), one
value per analysis hop, 0 where unvoiced.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

F0_REF = 100.0  # Hz; log-F0 targets are octaves above this
F0_FLOOR, F0_CEIL = 50.0, 600.0


def f0_frames(wav: torch.Tensor, sample_rate: int, hop_length: int) -> torch.Tensor:
    """``wav [B, L]`` -> F0 in Hz ``[B, L // hop_length]`` (0 = unvoiced), frame ``i`` centred on sample
    ``i * hop_length`` like the codec's mel frames."""
    import pyworld  # deferred: only training needs it

    period = 1000.0 * hop_length / sample_rate
    n = wav.shape[-1] // hop_length
    out = np.zeros((wav.shape[0], n), dtype=np.float32)
    for b, x in enumerate(wav.detach().float().cpu().double().numpy()):
        f0, t = pyworld.dio(x, sample_rate, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=period)
        f0 = pyworld.stonemask(x, f0, t, sample_rate)
        m = min(n, len(f0))
        out[b, :m] = f0[:m]
    return torch.from_numpy(out).to(wav.device)


def median_f0(wav: np.ndarray, sample_rate: int) -> float:
    """Median F0 (Hz) over the voiced frames of a mono clip (DIO + StoneMask, as ``f0_frames``); 0 if none is
    voiced. Tells high voices from low ones (``eval/codec_by_pitch.py``, ``data_recipes/pitch_subset.py``)."""
    import pyworld

    x = np.asarray(wav, dtype=np.float64)
    f0, t = pyworld.dio(x, sample_rate, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL)
    f0 = pyworld.stonemask(x, f0, t, sample_rate)
    return float(np.median(f0[f0 > 0])) if (f0 > 0).any() else 0.0


class PitchHead(nn.Module):
    """Quantized latent ``[B, D, T]`` (frame rate) -> ``[B, 2, T * upsample]``: voicing logit and
    log2(F0 / 100 Hz), at the analysis hop rate."""

    def __init__(self, latent_dim: int, upsample: int, dim: int = 128):
        super().__init__()
        self.upsample = upsample
        self.inp = nn.Conv1d(latent_dim, dim, 3, padding=1)
        self.out = nn.Sequential(nn.GELU(), nn.Conv1d(dim, dim, 5, padding=2), nn.GELU(), nn.Conv1d(dim, 2, 1))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(self.inp(latent), scale_factor=self.upsample, mode="linear", align_corners=False)
        return self.out(h)


def cents_error(log2_pred: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
    """|predicted - true| F0 in cents, for predictions in log2(F0 / F0_REF) and true F0 in Hz (voiced frames)."""
    return 1200 * (log2_pred - torch.log2(f0 / F0_REF)).abs()


def pitch_loss(pred: torch.Tensor, f0: torch.Tensor) -> dict[str, torch.Tensor]:
    """Voicing BCE + L1 on log2-F0 (octaves) over voiced frames, and two readable scores: voicing
    accuracy and the median F0 error in cents where both say voiced."""
    n = min(pred.shape[-1], f0.shape[-1])
    pred, f0 = pred[..., :n].float(), f0[..., :n]
    voiced = f0 > 0
    bce = F.binary_cross_entropy_with_logits(pred[:, 0], voiced.float())
    if voiced.any():
        l1 = cents_error(pred[:, 1][voiced], f0[voiced]).mean() / 1200  # in octaves
    else:
        l1 = pred.sum() * 0.0
    with torch.no_grad():
        said = pred[:, 0] > 0
        both = said & voiced
        cents = cents_error(pred[:, 1][both], f0[both]).median() if both.any() else torch.tensor(math.nan)
        acc = (said == voiced).float().mean()
    return {"loss": bce + l1, "voicing_acc": acc, "cents": cents}

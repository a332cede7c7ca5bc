"""STFT framing of the vocoder's ISTFT head, frames along time: spectra are ``[B, T, n_fft // 2 + 1]``.

The head predicts one spectrum per 100 Hz frame, and ``istft_same`` turns them into samples with
``padding="same"`` framing (frame ``t`` centred on sample ``t * hop + hop / 2``, ``T * hop`` samples out), the
framing of ``vocos``' ``ISTFT`` module, which it equals to the last bit (``tests/test_vocoder_spectral.py``).
It is faster on CPU because it keeps frames along time: the inverse FFT runs over contiguous memory, and
the overlap-add is ``ceil(n_fft / hop)`` shifted additions of hop-long blocks instead of ``fold`` and a second
``fold`` for the window's envelope. ``stft_same`` is its analysis side (the harmonic source is analysed into
the head's frames with it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def stft_same(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """``x [B, T * hop]`` -> complex ``[B, T, n_fft // 2 + 1]`` framed as ``istft_same`` inverts."""
    pad = (n_fft - hop) // 2
    frames = F.pad(x, (pad, pad + hop)).unfold(-1, n_fft, hop)[:, : x.shape[-1] // hop]  # [B, T, n_fft]
    return torch.fft.rfft(frames * window, dim=-1)


def istft_same(spec: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """Complex ``spec [B, T, n_fft // 2 + 1]`` -> ``wav [B, T * hop]``: windowed inverse FFTs, overlap-added and
    divided by the window's own overlap-add (the squared window, as the least-squares inverse of ``stft_same``)."""
    t = spec.shape[1]
    frames = torch.fft.irfft(spec, n_fft, dim=-1) * window  # [B, T, n_fft]
    envelope = overlap_add(window.square().expand(1, t, -1), hop)  # the window is not copied T times
    keep = slice((n_fft - hop) // 2, (n_fft - hop) // 2 + t * hop)  # "same": the envelope is > 0 there, not at the ends
    return overlap_add(frames, hop)[:, keep] / envelope[:, keep]


def overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """``frames [B, T, N]``, frame ``t`` starting at sample ``t * hop`` -> their sum ``[B, (T - 1) * hop + N]``.

    Each frame is cut into ``K = ceil(N / hop)`` blocks of ``hop`` samples (the last one zero-padded); block ``k``
    of frame ``t`` lands on output block ``t + k``, so the sum is ``K`` shifted additions of ``[B, T, hop]``.
    """
    b, t, n = frames.shape
    k = -(-n // hop)
    out = frames.new_zeros(b, t + k - 1, hop)
    for i in range(k):
        block = frames[..., i * hop:(i + 1) * hop]
        out[:, i:i + t, : block.shape[-1]] += block
    return out.flatten(1)[:, : (t - 1) * hop + n]

"""Decode-time postfilters on the vocoder's output: local (a frame, or two pitch periods), so chunked
decoding still equals the full pass, and never used in training (the losses see the vocoder's own spectrum).

A vocoder trained on L1 spectral losses predicts the average of what the tokens leave open, and that
average fills the valleys of the spectrum: between formants, and between the harmonics of voiced speech
(the decoded speech's cepstral peak is 5 dB below the original's, ``eval/codec_dnsmos.py``). Speech codecs
have long answered both with postfilters:

- ``sharpen``: spectral contrast enhancement against the frame's envelope, like the formant (short-term)
  postfilters of CELP and Codec2.
- ``pitch_comb``: a long-term (pitch) postfilter, like those of G.729, AMR-WB and Opus/CELT: a comb at the
  frame's own pitch period raises the harmonics and lowers what lies between them. The period is read
  from the frame's own autocorrelation (the inverse FFT of its power spectrum), so it needs no pitch
  from the tokens; the comb itself runs on the waveform.

``sharpen`` works on natural-log STFT magnitudes ``[B, F, T]`` and puts each frame's energy back where it was.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from speechlm.codec.pitch import F0_CEIL, F0_FLOOR

PITCH_BAND_HZ = 3000.0  # the pitch search looks at the spectrum below this (where harmonics are clear)
VOICING_FLOOR = 0.5  # normalized autocorrelation at the period below which a frame gets no comb
OCTAVE_TOLERANCE = 0.85  # the shortest period whose peak reaches this x the best one wins (no octave-down errors)


def _keep_energy(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """``after`` moved by a per-frame constant so that its power over frequency equals ``before``'s."""
    energy = lambda x: torch.logsumexp(2 * x, dim=1, keepdim=True)  # noqa: E731  log of the frame's power
    return after + (energy(before) - energy(after)) / 2


def sharpen(log_mag: torch.Tensor, strength: float, bins: int) -> torch.Tensor:
    """Spectral contrast enhancement of ``log_mag [B, F, T]``, frame by frame.

    Each frame's log spectrum moves away from its own envelope (a ``bins``-wide moving average over
    frequency) by ``strength`` x the difference: peaks (harmonics, formants) rise, the valleys between
    them sink.
    """
    b, f, t = log_mag.shape
    frames = log_mag.transpose(1, 2).reshape(b * t, 1, f)
    pad = bins // 2
    envelope = nn.functional.avg_pool1d(nn.functional.pad(frames, (pad, pad), mode="replicate"), bins, stride=1)
    out = (frames + strength * (frames - envelope)).reshape(b, t, f).transpose(1, 2)
    return _keep_energy(log_mag, out)


def frame_pitch(log_mag: torch.Tensor, sample_rate: int, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame's pitch period and how periodic it is, from its own spectrum.

    ``log_mag [B, F, T]`` -> ``(period [B, T]`` in samples, fractional; ``periodicity [B, T]`` in [0, 1]: the
    normalized autocorrelation at that period). The autocorrelation is the inverse FFT of the power below
    ``PITCH_BAND_HZ``, divided by the analysis window's own autocorrelation (which otherwise favours short
    lags); periods span ``F0_CEIL`` to ``F0_FLOOR``, and the shortest local peak within ``OCTAVE_TOLERANCE``
    of the highest one is taken, with a parabola through its neighbours for the fraction.
    """
    n_fft = 2 * (log_mag.shape[1] - 1)
    return _pitch_from_power(torch.exp(2 * log_mag[:, : _band_bins(n_fft, sample_rate)]), n_fft, sample_rate, window)


def _band_bins(n_fft: int, sample_rate: int) -> int:
    """How many STFT bins lie at or below ``PITCH_BAND_HZ``."""
    return int(PITCH_BAND_HZ * n_fft / sample_rate) + 1


def _pitch_from_power(power: torch.Tensor, n_fft: int, sample_rate: int,
                      window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``frame_pitch`` from the power ``[B, K, T]`` of the ``K = _band_bins`` bins below ``PITCH_BAND_HZ``."""
    lo, hi = math.ceil(sample_rate / F0_CEIL), min(math.floor(sample_rate / F0_FLOOR), n_fft // 2 - 2)
    lags = torch.arange(lo - 1, hi + 2, device=power.device)  # one lag beyond each end, for the peak test and the parabola
    r = _autocorrelation_basis(n_fft, sample_rate, lags, power.dtype) @ power  # [B, L + 3, T]: lag 0, then the lags
    win = torch.fft.irfft(torch.fft.rfft(window.to(power), n=n_fft).abs() ** 2, n=n_fft)
    nr = r[:, 1:] / (r[:, :1].clamp(min=1e-12) * (win[lags] / win[0])[:, None])  # [B, L + 2, T]
    a, b, c = nr[:, :-2], nr[:, 1:-1], nr[:, 2:]
    peak = (b >= a) & (b >= c)
    best = torch.where(peak, b, torch.zeros_like(b)).amax(dim=1, keepdim=True)
    first = (peak & (b >= OCTAVE_TOLERANCE * best)).float().argmax(dim=1, keepdim=True)  # [B, 1, T]
    a, b, c = (x.gather(1, first).squeeze(1) for x in (a, b, c))
    curve = a - 2 * b + c
    frac = torch.where(curve < 0, 0.5 * (a - c) / curve.clamp(max=-1e-9), torch.zeros_like(b)).clamp(-0.5, 0.5)
    return lo + first.squeeze(1) + frac, b.clamp(0.0, 1.0)


def _autocorrelation_basis(n_fft: int, sample_rate: int, lags: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The inverse real FFT of a power spectrum that is zero above ``PITCH_BAND_HZ``, at lag 0 and ``lags`` only,
    as a matrix ``[1 + L, K]`` over the ``K`` bins below it: ``r[l] = sum_k w_k P_k cos(2 pi k l / n_fft) / n_fft``
    with ``w_k = 2`` but for DC (and Nyquist, never below the band). As a matrix product the power stays
    ``[B, K, T]``, lags along the same dimension, where an FFT over that dimension would run on strided memory."""
    k = torch.arange(_band_bins(n_fft, sample_rate), device=lags.device, dtype=torch.float64)
    at = torch.cat([lags.new_zeros(1), lags]).double()
    weight = torch.where((k == 0) | (k == n_fft // 2), 1.0, 2.0) / n_fft
    return (torch.cos(2 * math.pi * at[:, None] * k[None] / n_fft) * weight).to(dtype)


def pitch_comb(wav: torch.Tensor, strength: float, sample_rate: int, hop_length: int,
               window: torch.Tensor) -> torch.Tensor:
    """Long-term postfilter: each sample of ``wav [B, L]`` averaged with the samples one and two pitch
    periods before and after it,

        y[n] = (x[n] + g/2 (x[n-P] + x[n+P]) + g^2/2 (x[n-2P] + x[n+2P])) / (1 + g + g^2),

    a comb with peaks on the harmonics that leaves a periodic signal as it was and lowers what is not
    periodic between them. ``P`` is each frame's period (``frame_pitch`` on the STFT of ``wav`` with
    ``window``, frame ``t`` centred on sample ``t * hop_length``), ``g`` is ``strength`` scaled by the frame's
    periodicity from 0 at ``VOICING_FLOOR`` to 1, so unvoiced frames and pauses pass unchanged; both are
    interpolated between frames, fractional delays linearly. In the time domain on purpose: the same
    comb applied to each frame's magnitudes did not make the decoded speech more periodic (the
    overlap-add of frames with the head's phases smears the harmonics again), and did not move DNSMOS.
    The period is read from the waveform, not from the spectrum the vocoder's head predicts: that
    spectrum is not the STFT of a windowed signal (measured: its autocorrelation put most frames at the
    lowest F0 allowed). Reads up to ``2 * sample_rate / F0_FLOOR`` samples and a window either side
    (``Vocoder.receptive_frames`` counts them).
    """
    if wav.shape[-1] <= window.numel() // 2:  # too short to analyse (the STFT's reflect padding): as it is
        return wav
    n_fft = window.numel()
    spec = torch.stft(wav.float(), n_fft, hop_length, window=window.float(), return_complex=True)
    power = torch.view_as_real(spec[:, : _band_bins(n_fft, sample_rate)]).square().sum(-1).clamp(min=1e-14)
    period, periodicity = _pitch_from_power(power, n_fft, sample_rate, window)
    gain = strength * ((periodicity - VOICING_FLOOR) / (1 - VOICING_FLOOR)).clamp(0.0, 1.0)
    n = wav.shape[-1]
    p, g = _per_sample(period, hop_length, n), _per_sample(gain, hop_length, n)
    reach = 2 * math.ceil(sample_rate / F0_FLOOR) + 1  # the longest delay, and one sample for the fraction
    padded = nn.functional.pad(wav[:, None], (reach, reach), mode="replicate")[:, 0]
    here = torch.arange(reach, reach + n, device=wav.device)
    y = wav + g / 2 * _taps(padded, here, p) + g * g / 2 * _taps(padded, here, 2 * p)
    return y / (1 + g + g * g)


def _per_sample(track: torch.Tensor, hop_length: int, n: int) -> torch.Tensor:
    """``track [B, T]`` of frames centred on samples ``t * hop_length`` -> ``[B, n]``, linear in between,
    held beyond the last frame."""
    t = track.shape[-1]
    if t == 1:
        return track.expand(-1, n)
    out = nn.functional.interpolate(track[:, None], size=(t - 1) * hop_length + 1, mode="linear", align_corners=True)[:, 0]
    if out.shape[-1] < n:
        out = nn.functional.pad(out[:, None], (0, n - out.shape[-1]), mode="replicate")[:, 0]
    return out[:, :n]


def _taps(padded: torch.Tensor, here: torch.Tensor, delay: torch.Tensor) -> torch.Tensor:
    """``x[n - d] + x[n + d]`` at the positions ``here [L]`` of ``padded [B, L']`` (the signal with room for
    the delays on both sides) for fractional delays ``d [B, L] >= 0``, linear between samples."""
    whole = delay.floor()
    frac = delay - whole
    back, ahead = here - whole.long(), here + whole.long()
    return (torch.lerp(padded.gather(1, back), padded.gather(1, back - 1), frac)
            + torch.lerp(padded.gather(1, ahead), padded.gather(1, ahead + 1), frac))

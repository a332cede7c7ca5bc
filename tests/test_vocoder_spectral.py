"""The vocoder's STFT framing (speechlm.vocoder.spectral): the inverse STFT equals vocos' ISTFT module to the
bit, inverts ``stft_same``, and the vocoder built on it decodes what the head's own module would."""

from __future__ import annotations

import pytest
import torch
from vocos.spectral_ops import ISTFT

from speechlm.vocoder.model import Vocoder, VocoderConfig
from speechlm.vocoder.spectral import istft_same, overlap_add, stft_same


@pytest.mark.parametrize("n_fft, hop", [(1024, 240), (480, 240), (1024, 256), (1000, 250)])
@pytest.mark.parametrize("frames", [1, 2, 5, 200])
def test_istft_same_equals_vocos_istft(n_fft, hop, frames):
    g = torch.Generator().manual_seed(frames)
    spec = torch.polar(torch.randn(2, frames, n_fft // 2 + 1, generator=g).exp(),
                       torch.rand(2, frames, n_fft // 2 + 1, generator=g) * 6.3)
    vocos = ISTFT(n_fft, hop, n_fft, padding="same")
    ours = istft_same(spec, n_fft, hop, vocos.window)
    assert ours.shape == (2, frames * hop)
    torch.testing.assert_close(ours, vocos(spec.transpose(1, 2)), rtol=0, atol=0)


def test_istft_same_inverts_stft_same():
    x = torch.randn(2, 30 * 240)
    window = torch.hann_window(1024)
    spec = stft_same(x, 1024, 240, window)
    assert spec.shape == (2, 30, 513)
    assert (istft_same(spec, 1024, 240, window) - x).abs().max() < 1e-5


def test_overlap_add_sums_frames_at_their_offsets():
    frames = torch.arange(1.0, 7.0).view(1, 2, 3).expand(2, -1, -1)  # frames [1 2 3] and [4 5 6], hop 2
    torch.testing.assert_close(overlap_add(frames, 2), torch.tensor([[1.0, 2.0, 7.0, 5.0, 6.0]] * 2))


def test_vocoder_decodes_what_the_heads_own_istft_gives():
    torch.manual_seed(0)
    vocoder = Vocoder(VocoderConfig(latent_dim=8, dim=16, intermediate_dim=32, num_layers=1)).eval()
    latent = torch.randn(1, 8, 12)
    with torch.no_grad():
        wav = vocoder(latent)
        x = vocoder.backbone(vocoder.upsample(latent))
        wav_vocos = vocoder.head(x)  # vocos' ISTFTHead: its layer, exp/cos/sin, its ISTFT module
    assert wav.shape == (1, 12 * 4 * 240)
    torch.testing.assert_close(wav, wav_vocos, rtol=1e-5, atol=1e-5)


def test_istft_same_gradient_equals_vocos_istft():
    """Training backpropagates through it: the ends that "same" cuts off (where the window's envelope is 0) must
    not turn the gradient into 0 / 0."""
    vocos = ISTFT(1024, 240, 1024, padding="same")
    parts = torch.randn(2, 2, 9, 513, requires_grad=True)
    weight = torch.randn(2, 9 * 240)
    grads = [torch.autograd.grad((f(torch.complex(parts[0], parts[1])) * weight).sum(), parts)[0]
             for f in (lambda s: istft_same(s, 1024, 240, vocos.window), lambda s: vocos(s.transpose(1, 2)))]
    assert grads[0].isfinite().all()
    torch.testing.assert_close(grads[0], grads[1])

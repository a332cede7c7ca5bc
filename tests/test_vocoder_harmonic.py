"""The vocoder's harmonic source (speechlm.vocoder.harmonic): the pulse train, its STFT framing, gaining it,
teacher forcing, and chunked decoding that carries the source's phase."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechlm.codec.model import CodecConfig
from speechlm.codec.neural import NeuralCodec
from speechlm.codec.streaming import decode_stream
from speechlm.errors import SpeechLMError
from speechlm.vocoder.harmonic import excitation, fill_unvoiced
from speechlm.vocoder.lightning import _extend_vocoder
from speechlm.vocoder.model import VocoderConfig
from tests.conftest import eval_script, voiced

SR, HOP = 24000, 240


def test_excitation_is_a_band_limited_comb_gated_by_voicing():
    f0 = torch.full((1, 100), 150.0)
    e, phase = excitation(f0, torch.ones(1, 100), HOP, SR, max_hz=3000.0)
    assert e.shape == (1, 100 * HOP) and phase.shape == (1, 101)
    spectrum = np.abs(np.fft.rfft(e[0].numpy()))
    freqs = np.fft.rfftfreq(e.shape[1], 1 / SR)
    peaks = freqs[spectrum > 0.25 * spectrum.max()]
    assert np.allclose(peaks, np.arange(150, 3001, 150))  # every harmonic up to max_hz, nothing else
    assert torch.allclose(phase[0, 1], torch.tensor(2 * np.pi * 150 * HOP / SR, dtype=torch.float64))
    silent, _ = excitation(f0, torch.zeros(1, 100), HOP, SR, max_hz=3000.0)
    assert not silent.any()


def test_an_anchored_window_continues_the_same_source():
    f0 = 120 + 40 * torch.rand(2, 60)
    e, phase = excitation(f0, torch.ones(2, 60), HOP, SR, 8000.0)
    # the same F0 from frame 25 on, told the phase the full pass had there
    tail, _ = excitation(f0[:, 20:], torch.ones(2, 40), HOP, SR, 8000.0, anchor=(5, phase[:, 25]))
    assert (tail[:, 5 * HOP:] - e[:, 25 * HOP:]).abs().max() < 1e-3  # float32 rounding of a comb of ~60


def test_fill_unvoiced_interpolates_and_holds():
    f0 = torch.tensor([[0.0, 100.0, 0.0, 0.0, 200.0, 0.0], [0.0] * 6])
    want = torch.tensor([[100.0, 100.0, 100 + 100 / 3, 100 + 200 / 3, 200.0, 200.0], [100.0] * 6])
    assert torch.allclose(fill_unvoiced(f0), want)


def _harmonic(seed: int = 0) -> NeuralCodec:
    torch.manual_seed(seed)
    plain = NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).eval()
    codec = _extend_vocoder(plain, harmonic=True).eval()
    with torch.no_grad():  # as if trained: the filter varies by frame
        torch.nn.init.normal_(codec.vocoder.harmonic_filter.weight, std=0.1)
    return codec


def test_gaining_the_source_keeps_every_weight_and_teacher_forcing_drives_it():
    torch.manual_seed(0)
    plain = NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).eval()
    codec = _extend_vocoder(plain, harmonic=True).eval()
    codes = plain.encode(voiced(0.5, SR))
    assert codec.harmonic and not plain.harmonic
    state = codec.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in plain.state_dict().items())
    assert codec.vocoder.harmonic_gate.item() == 1.0  # the source sounds from the start (a zero gate stays zero)
    assert not torch.allclose(plain.decode(codes), codec.decode(codes))
    with pytest.raises(SpeechLMError, match="harmonic source"):
        _extend_vocoder(codec, harmonic=False)

    codec = _harmonic()
    latent = codec.tokenizer.embed(codes)
    predicted = codec.vocoder.synthesize(latent)
    forced = codec.vocoder.synthesize(latent, f0=torch.full((1, latent.shape[-1] * 4), 200.0))
    assert predicted.pitch.shape == (1, 2, latent.shape[-1] * 4)
    assert not torch.allclose(predicted.wav, forced.wav)
    assert torch.equal(codec.decode(codes), predicted.wav)


def test_streaming_a_harmonic_codec_matches_the_full_pass():
    codec = _harmonic()
    codes = codec.encode(voiced(3.0, SR))
    full = codec.decode(codes)
    for chunk in (1, 4):
        streamed = torch.cat(list(decode_stream(codec, codes, chunk_frames=chunk)), dim=-1)
        assert streamed.shape == full.shape
        assert (streamed - full).abs().max() < 1e-4 * full.abs().max()


def test_harmonic_codec_saves_and_loads(tmp_path):
    codec = _harmonic()
    codec.save_pretrained(tmp_path / "c")
    again = NeuralCodec.from_pretrained(tmp_path / "c")
    codes = codec.encode(voiced(0.5, SR))
    assert again.harmonic and torch.equal(again.decode(codes), codec.decode(codes))


def test_quantized_f0_holds_one_log_step_per_codec_frame():
    quantize_f0 = eval_script("bench_codec").quantize_f0
    f0 = torch.tensor([[0, 0, 0, 0, 100, 101, 0, 102, 200, 210, 220, 230, 0, 150]], dtype=torch.float32)
    q = quantize_f0(f0, 7, 4)
    assert q.shape == f0.shape and (q[0, :4] == 0).all() and (q[0, 12:] == 0).all()  # majority unvoiced
    assert torch.unique(q[0, 4:8]).numel() == 1 and torch.unique(q[0, 8:12]).numel() == 1  # held over the frame
    medians = torch.tensor([101.0, 210.0])  # of the voiced frames (torch takes the lower middle one)
    cents = 1200 * torch.log2(q[0, [4, 8]] / medians).abs()
    assert (cents <= 0.5 * 1200 * np.log2(600 / 50) / 126 + 1e-3).all()  # within half a 7-bit step


def test_oracle_f0_decode_uses_the_originals_pitch(tmp_path):
    bench = eval_script("bench_codec")
    codec = _harmonic()
    codec.save_pretrained(tmp_path / "h")
    clip = {"wav": voiced(1.0, SR, f0=150.0), "sr": SR, "reference": None}
    exact, sr = bench.roundtrip_of(f"{tmp_path / 'h'}@f0", tmp_path)(clip)
    coarse, _ = bench.roundtrip_of(f"{tmp_path / 'h'}@f0:4", tmp_path)(clip)
    own, _, _ = bench.neural_roundtrip(codec, clip["wav"], SR)
    assert sr == SR and exact.shape == coarse.shape == own.shape == (SR,)
    assert not np.allclose(exact, own, atol=1e-4) and not np.allclose(exact, coarse, atol=1e-4)
    plain = NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny())
    plain.save_pretrained(tmp_path / "p")
    with pytest.raises(SystemExit, match="harmonic"):
        bench.roundtrip_of(f"{tmp_path / 'p'}@f0", tmp_path)(clip)
    with pytest.raises(SystemExit, match="f0:BITS"):
        bench.roundtrip_of(f"{tmp_path / 'h'}@pitch", tmp_path)

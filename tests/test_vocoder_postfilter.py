"""The vocoder's postfilters (speechlm.vocoder.postfilter: sharpen, pitch_comb): what they do to a spectrum,
that they are off by default and in training, that they keep the tokens and chunked decoding exact, and
eval/codec_postfilter.py's choice; eval/codec_select.py's, which shares its tuning clips."""

from __future__ import annotations

import math

import pytest
import torch

from speechlm.codec.model import CodecConfig
from speechlm.codec.neural import NeuralCodec
from speechlm.codec.streaming import decode_stream
from speechlm.errors import SpeechLMError
from speechlm.vocoder.model import VocoderConfig
from speechlm.vocoder.postfilter import PITCH_BAND_HZ, _autocorrelation_basis, _band_bins, frame_pitch, pitch_comb, sharpen
from tests.conftest import eval_script, voiced


def test_sharpen_deepens_valleys_and_keeps_each_frames_energy():
    f = torch.arange(257.0)
    comb = torch.log(1.2 + torch.cos(2 * torch.pi * f / 8))  # harmonics every 8 bins, shallow valleys
    log_mag = torch.stack([comb, comb + 1.0], dim=-1)[None]  # [1, F, 2 frames], the second 1 neper louder
    out = sharpen(log_mag, 0.5, 9)
    contrast = lambda x: (x.max(dim=1).values - x.min(dim=1).values)  # noqa: E731
    assert (contrast(out) > 1.3 * contrast(log_mag)).all()
    power = lambda x: torch.logsumexp(2 * x, dim=1)  # noqa: E731
    torch.testing.assert_close(power(out), power(log_mag))
    assert torch.equal(sharpen(log_mag, 0.0, 9), log_mag)


def _log_stft(x: torch.Tensor) -> torch.Tensor:
    spec = torch.stft(x, 1024, 240, window=torch.hann_window(1024), return_complex=True)
    return spec.abs().clamp(min=1e-5).log()[None]


def test_autocorrelation_basis_is_the_inverse_fft_of_the_band_limited_power():
    """The pitch search's autocorrelation, a matrix product over the bins below PITCH_BAND_HZ at the lags it
    searches, is what the inverse real FFT of that power gives at lag 0 and those lags."""
    power = torch.rand(2, 513, 7, dtype=torch.float64)
    lags = torch.arange(39, 483)
    k = _band_bins(1024, 24000)
    assert k == 129 and (k - 1) * 24000 / 1024 <= PITCH_BAND_HZ < k * 24000 / 1024
    low = torch.zeros_like(power)
    low[:, :k] = power[:, :k]
    full = torch.fft.irfft(low, n=1024, dim=1)
    ours = _autocorrelation_basis(1024, 24000, lags, torch.float64) @ power[:, :k]
    torch.testing.assert_close(ours, torch.cat([full[:, :1], full[:, lags]], dim=1))


def _harmonics(f0: float, seconds: float = 0.5, sr: int = 24000) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return sum(torch.cos(2 * math.pi * k * f0 * t) / k for k in range(1, int(8000 / f0)))


@pytest.mark.parametrize("f0", [70.0, 123.0, 250.0, 480.0])
def test_frame_pitch_reads_the_period_of_a_harmonic_frame(f0):
    torch.manual_seed(0)
    x = _harmonics(f0) + 0.05 * torch.randn(12000)
    period, periodicity = frame_pitch(_log_stft(x), 24000, torch.hann_window(1024))
    inner = slice(5, -5)  # away from the padded ends
    assert (24000 / period[0, inner] - f0).abs().max() < 0.01 * f0  # no octave errors
    assert (periodicity[0, inner] > 0.9).all()
    _, noise = frame_pitch(_log_stft(torch.randn(12000)), 24000, torch.hann_window(1024))
    assert noise.max() < 0.5  # below the comb's voicing floor


def test_pitch_comb_lowers_what_lies_between_harmonics_and_passes_noise():
    torch.manual_seed(0)
    window = torch.hann_window(1024)
    clean = _harmonics(150.0)
    x = clean + 0.3 * torch.randn(12000)  # harmonics with noise between them
    out = pitch_comb(x[None], 0.8, 24000, 240, window)[0]
    inner = slice(2400, -2400)
    error = lambda y: (y - clean)[inner].pow(2).mean() / clean[inner].pow(2).mean()  # noqa: E731
    assert error(out) < 0.5 * error(x)  # the noise between the harmonics falls, the harmonics stay
    noise = torch.randn(12000)
    torch.testing.assert_close(pitch_comb(noise[None], 0.8, 24000, 240, window)[0], noise)
    assert torch.equal(pitch_comb(x[None], 0.0, 24000, 240, window)[0], x)


@pytest.fixture(scope="module")
def codec() -> NeuralCodec:
    torch.manual_seed(0)
    return NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).eval()


def _humming(codec: NeuralCodec) -> NeuralCodec:
    """The tiny codec with a head that always predicts a 200 Hz harmonic tone (every 4th bin of its 480-point
    STFT, constant phases: each harmonic advances a whole number of turns per 240-sample hop) over weaker
    energy between the harmonics: output the pitch comb acts on, which the random head's noise is not."""
    other = codec.with_postfilter()
    head = other.vocoder.head.out
    bins = head.out_features // 2
    with torch.no_grad():
        head.weight.zero_()
        head.bias[:bins] = math.log(0.05)
        head.bias[:bins:4] = 0.0
        head.bias[bins:] = torch.rand(bins, generator=torch.Generator().manual_seed(0)) * 2 * math.pi
    return other


@pytest.mark.parametrize("setting", [{"strength": 0.4, "bins": 5}, {"pitch": 0.5}])
def test_postfilter_changes_the_audio_not_the_tokens_and_streams_exactly(codec, tmp_path, setting):
    wav = voiced(2.0, 24000)
    codec = _humming(codec) if "pitch" in setting else codec
    filtered = codec.with_postfilter(**setting)
    codes = codec.encode(wav)
    assert torch.equal(filtered.encode(wav), codes) and filtered.info == codec.info
    full = filtered.decode(codes)
    assert not torch.allclose(full, codec.decode(codes), atol=1e-4)
    streamed = torch.cat(list(decode_stream(filtered, codes, chunk_frames=3)), dim=-1)
    assert (streamed - full).abs().max() < 1e-5  # local: chunking with the vocoder's context changes nothing
    filtered.save_pretrained(tmp_path / "pf")
    again = NeuralCodec.from_pretrained(tmp_path / "pf")
    assert again.vocoder_config == filtered.vocoder_config and torch.equal(again.decode(codes), full)
    filtered.vocoder.train()  # training sees the unfiltered spectrum: the postfilter is decode-time only
    with torch.no_grad():
        latent = filtered.tokenizer.embed(codes)
        torch.testing.assert_close(filtered.vocoder(latent), codec.vocoder(latent))


@pytest.mark.parametrize("setting", [{"postfilter": -0.1}, {"postfilter": 0.3, "postfilter_bins": 8},
                                     {"postfilter": 0.3, "postfilter_bins": 1}, {"pitch_postfilter": 1.5},
                                     {"pitch_postfilter": -0.2}])
def test_bad_postfilter_settings_are_refused(setting):
    with pytest.raises(SpeechLMError, match="postfilter"):
        VocoderConfig(**setting)


def test_the_choice_keeps_dnsmos_and_maximises_pesq():
    choose = eval_script("codec_postfilter").choose
    off = {"strength": 0.0, "bins": 9, "pitch": 0.0, "stoi": 0.80}
    table = [off | {"pesq_wb": 1.40, "dnsmos_ovrl": 2.70},
             off | {"strength": 0.2, "pesq_wb": 1.50, "dnsmos_ovrl": 2.60},  # better PESQ, worse DNSMOS
             off | {"strength": 0.2, "bins": 5, "pesq_wb": 1.45, "dnsmos_ovrl": 2.71},
             off | {"pitch": 0.4, "pesq_wb": 1.44, "dnsmos_ovrl": 2.90}]
    assert (choose(table)["strength"], choose(table)["bins"]) == (0.2, 5)
    assert choose(table[:2])["strength"] == 0.0
    assert choose([table[0], table[3]])["pitch"] == 0.4
    codec2 = {"pesq_wb": 1.45, "stoi": 0.70, "dnsmos_ovrl": 2.80}  # what the bar has to beat
    # worst margins: off -0.10 (OVRL), pitch 0.4 -0.01 (PESQ), the contrast rows -0.20 / -0.09
    assert choose(table, codec2)["pitch"] == 0.4
    assert choose(table[:3], codec2)["bins"] == 5


def test_codec_select_compares_decoders_of_one_tokenizer_only(codec):
    select = eval_script("codec_select")
    retrained = NeuralCodec(codec.codec_config, codec.vocoder_config, codec.info.name, codec.info.version)
    retrained.load_state_dict(codec.state_dict())
    with torch.no_grad():
        retrained.vocoder.head.out.bias.add_(0.1)  # another vocoder on the same tokens
    assert select.same_tokenizer(codec, retrained)
    with torch.no_grad():
        next(retrained.tokenizer.parameters()).add_(0.1)
    assert not select.same_tokenizer(codec, retrained)
    table = [{"codec": "ref", "pesq_wb": 1.3, "dnsmos_ovrl": 2.5}, {"codec": "a", "pesq_wb": 1.5, "dnsmos_ovrl": 2.4},
             {"codec": "b", "pesq_wb": 1.4, "dnsmos_ovrl": 2.6}]
    assert select.choose(table)["codec"] == "b"  # a's PESQ comes with a lower DNSMOS than the reference's
    # against the bar's reference: the worst margin over it decides, not PESQ-WB first
    table = [{"codec": "ref", "pesq_wb": 1.64, "stoi": 0.844, "dnsmos_ovrl": 2.82},
             {"codec": "real", "pesq_wb": 1.63, "stoi": 0.847, "dnsmos_ovrl": 2.88}]
    codec2 = {"pesq_wb": 1.41, "stoi": 0.835, "dnsmos_ovrl": 2.83}
    assert select.choose(table)["codec"] == "ref"  # PESQ first: the 0.01 keeps the first
    assert select.choose(table, codec2)["codec"] == "real"  # worst margins -0.01 (OVRL) vs +0.01 (STOI)
    md = select.render({"command": "x", "clips": {"s": 1}, "table": [dict(t, by_set={"s": t}) for t in table],
                        "against": "codec2:1200", "against_scores": dict(codec2, by_set={"s": codec2}),
                        "chosen": "real"}, ["s"])
    assert "| codec2:1200 (the bar's reference) |" in md and "| **+0.012** |" in md and "| -0.010 |" in md

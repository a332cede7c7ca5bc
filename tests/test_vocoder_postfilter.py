"""The vocoder's postfilter (speechlm.vocoder.model.sharpen): what it does to a spectrum, that it is off by
default and in training, that it keeps the tokens and chunked decoding exact, and eval/codec_postfilter.py's choice; eval/codec_select.py's, which shares its tuning clips."""

from __future__ import annotations

import pytest
import torch

from speechlm.codec.model import CodecConfig
from speechlm.codec.neural import NeuralCodec
from speechlm.codec.streaming import decode_stream
from speechlm.errors import SpeechLMError
from speechlm.vocoder.model import VocoderConfig, sharpen
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


@pytest.fixture(scope="module")
def codec() -> NeuralCodec:
    torch.manual_seed(0)
    return NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).eval()


def test_postfilter_changes_the_audio_not_the_tokens_and_streams_exactly(codec, tmp_path):
    wav = voiced(2.0, 24000)
    filtered = codec.with_postfilter(0.4, 5)
    codes = codec.encode(wav)
    assert torch.equal(filtered.encode(wav), codes) and filtered.info == codec.info
    full = filtered.decode(codes)
    assert not torch.allclose(full, codec.decode(codes), atol=1e-4)
    streamed = torch.cat(list(decode_stream(filtered, codes, chunk_frames=3)), dim=-1)
    assert (streamed - full).abs().max() < 1e-5  # frame-local: chunking changes nothing
    filtered.save_pretrained(tmp_path / "pf")
    again = NeuralCodec.from_pretrained(tmp_path / "pf")
    assert again.vocoder_config.postfilter == 0.4 and torch.equal(again.decode(codes), full)
    filtered.vocoder.train()  # training sees the unfiltered spectrum: the postfilter is decode-time only
    with torch.no_grad():
        latent = filtered.tokenizer.embed(codes)
        torch.testing.assert_close(filtered.vocoder(latent), codec.vocoder(latent))


@pytest.mark.parametrize("strength,bins", [(-0.1, 9), (0.3, 8), (0.3, 1)])
def test_bad_postfilter_settings_are_refused(strength, bins):
    with pytest.raises(SpeechLMError, match="postfilter"):
        VocoderConfig(postfilter=strength, postfilter_bins=bins)


def test_the_choice_keeps_dnsmos_and_maximises_pesq():
    choose = eval_script("codec_postfilter").choose
    table = [{"strength": 0.0, "bins": 9, "pesq_wb": 1.40, "dnsmos_ovrl": 2.70},
             {"strength": 0.2, "bins": 9, "pesq_wb": 1.50, "dnsmos_ovrl": 2.60},  # better PESQ, worse DNSMOS
             {"strength": 0.2, "bins": 5, "pesq_wb": 1.45, "dnsmos_ovrl": 2.71}]
    assert (choose(table)["strength"], choose(table)["bins"]) == (0.2, 5)
    assert choose(table[:2])["strength"] == 0.0


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

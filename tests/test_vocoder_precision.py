"""Decode precision: the vocoder's backbone in bfloat16 when decoding on hardware that has it, fp32 otherwise;
tokens, training and streaming exactness unaffected (tiny models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import speechlm.vocoder.model as vocoder_model
from speechlm.codec.model import CodecConfig
from speechlm.codec.neural import NeuralCodec
from speechlm.codec.streaming import decode_stream
from speechlm.errors import SpeechLMError
from speechlm.vocoder.model import VocoderConfig
from tests.conftest import voiced

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def codecs() -> tuple[NeuralCodec, NeuralCodec]:
    torch.manual_seed(0)
    fp32 = NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).eval()
    return fp32, fp32.with_decode_precision("bf16")


def _backbone_dtypes(codec: NeuralCodec, run) -> list[torch.dtype]:
    """The dtype each backbone matrix product (the first block's first pointwise layer) gave during ``run()``."""
    seen = []
    handle = codec.vocoder.backbone.convnext[0].pwconv1.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    try:
        run()
    finally:
        handle.remove()
    return seen


def test_unknown_precision_is_refused():
    with pytest.raises(SpeechLMError, match="decode_precision must be one of fp32, bf16, got 'fp16'"):
        VocoderConfig(decode_precision="fp16")


def test_bf16_decoding_runs_the_backbone_in_bf16_and_stays_close(codecs, monkeypatch):
    monkeypatch.setattr(vocoder_model, "native_bf16", lambda device: True)  # as on a CPU with AVX512-BF16
    fp32, bf16 = codecs
    codes = fp32.encode(voiced(1.5, 24000))
    assert torch.equal(bf16.encode(voiced(1.5, 24000)), codes)  # encoding is fp32 whatever the setting
    a = fp32.decode(codes)
    seen = _backbone_dtypes(bf16, lambda: bf16.decode(codes))
    b = bf16.decode(codes)
    assert seen == [torch.bfloat16] and b.dtype == torch.float32 and b.shape == a.shape
    assert not torch.equal(a, b)  # it really ran in bf16 ...
    snr = 10 * np.log10(float(a.square().sum() / (a - b).square().sum()))
    assert snr > 25, snr  # ... and differs from fp32 by bf16 rounding only (bundle: 48 dB on speech)


def test_bf16_streaming_still_equals_the_full_pass(codecs, monkeypatch):
    monkeypatch.setattr(vocoder_model, "native_bf16", lambda device: True)
    _, bf16 = codecs
    codes = bf16.encode(voiced(3.0, 24000))
    full = bf16.decode(codes)
    for chunk in (1, 4):
        streamed = torch.cat(list(decode_stream(bf16, codes, chunk_frames=chunk)), dim=-1)
        assert (streamed - full).abs().max() < 1e-5  # each frame's products do not depend on the chunk


def test_without_native_bf16_it_decodes_in_fp32(codecs, monkeypatch):
    monkeypatch.setattr(vocoder_model, "native_bf16", lambda device: False)  # emulated bf16 is slower than fp32
    fp32, bf16 = codecs
    codes = fp32.encode(voiced(1.0, 24000))
    assert _backbone_dtypes(bf16, lambda: bf16.decode(codes)) == [torch.float32]
    assert torch.equal(bf16.decode(codes), fp32.decode(codes))


def test_training_ignores_the_decode_precision(codecs, monkeypatch):
    monkeypatch.setattr(vocoder_model, "native_bf16", lambda device: True)
    _, bf16 = codecs
    latent = torch.randn(1, bf16.vocoder_config.latent_dim, 5)
    bf16.vocoder.train()
    try:
        assert _backbone_dtypes(bf16, lambda: bf16.vocoder(latent)) == [torch.float32]
    finally:
        bf16.vocoder.eval()


def test_precision_is_saved_with_the_codec(codecs, tmp_path):
    _, bf16 = codecs
    loaded = NeuralCodec.from_pretrained(bf16.save_pretrained(tmp_path / "codec"))
    assert loaded.vocoder_config.decode_precision == "bf16"

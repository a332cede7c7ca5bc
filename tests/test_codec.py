"""Codec interface, token contract, streaming, persistence, the EnCodec backend and bad input (tiny models)."""

from __future__ import annotations

import datetime
from pathlib import Path
import json
import math

import numpy as np
import pytest
import torch

from speechlm.codec.base import CodecInputError
from speechlm.codec.encodec_backend import EncodecCodec, verify_checksum
from speechlm.codec.model import CodecConfig, codebook_stats
from speechlm.codec.neural import NeuralCodec
from speechlm.codec.streaming import StreamingDecoder, decode_stream, default_context, encode_chunked
from speechlm.errors import SpeechLMError
from speechlm.vocoder.model import VocoderConfig
from tests.conftest import voiced


@pytest.fixture(scope="module")
def codec() -> NeuralCodec:
    torch.manual_seed(0)
    return NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).eval()


def test_default_operating_point_is_low_rate():
    c = CodecConfig.default()
    assert c.frame_rate == 25.0 and c.samples_per_frame == 960 and c.codebook_size == 1000
    assert 990 < c.bitrate <= 1000  # 25 Hz x 4 levels x log2(1000) bits
    codec = NeuralCodec(CodecConfig(), VocoderConfig())
    half = codec.with_codebooks(2)
    assert half.n_codebooks == 2 and abs(half.bitrate - c.bitrate / 2) < 1e-9
    wav = voiced(1.0, 24000)
    assert torch.equal(half.encode(wav), codec.encode(wav)[:, :2])  # residual: the first levels are shared
    assert half.decode(half.encode(wav)).shape == (1, 24000)


def test_quantizer_dropout_trains_fewer_levels_and_stats_skip_them():
    tok = NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).tokenizer.train()
    wav = torch.from_numpy(voiced(1.0, 24000))[None]
    used = {tok(wav, quantizer_dropout=True).n_codebooks for _ in range(20)}
    assert used == {1, 2} and tok(wav).n_codebooks == 2
    s = codebook_stats(torch.tensor([[[1, 2], [-1, -1]]]), 16)
    assert "usage_0" in s and "usage_1" not in s


@pytest.mark.parametrize("seconds", [0.01, 0.5, 1.37])
def test_token_contract_shapes_and_lengths(codec, seconds):
    wav = torch.from_numpy(voiced(seconds, 24000))
    codes = codec.encode(wav)
    assert codes.dtype == torch.int64 and codes.shape == (1, 2, math.ceil(wav.numel() / 960))
    assert int(codes.min()) >= 0 and int(codes.max()) < codec.codebook_size
    out = codec.decode(codes, num_samples=wav.numel())
    assert out.shape == (1, wav.numel()) and torch.isfinite(out).all()
    assert codec.decode(codes).shape[-1] == codes.shape[-1] * 960


def test_any_rate_and_channel_layout(codec):
    mono = voiced(1.0, 16000)
    a = codec.encode(mono, sample_rate=16000)
    stereo = np.stack([mono, mono])[None]  # [B, C, L]
    assert torch.equal(codec.encode(stereo, sample_rate=16000), a)
    for sr in (8000, 48000):
        assert codec.encode(voiced(1.0, sr), sample_rate=sr).shape == (1, 2, 25)
    batch = torch.stack([torch.from_numpy(voiced(1.0, 24000, seed=s)) for s in range(3)])
    assert codec.encode(batch).shape == (3, 2, 25)


@pytest.mark.parametrize("signal", ["silence", "clipped", "dc"])
def test_degenerate_but_valid_audio_encodes(codec, signal):
    x = voiced(1.0, 24000)
    x = {"silence": np.zeros_like(x), "clipped": np.clip(x * 50, -1, 1), "dc": x + 0.5}[signal]
    codes = codec.encode(x)
    assert codes.shape == (1, 2, 25) and torch.isfinite(codec.decode(codes)).all()


@pytest.mark.parametrize("bad,match", [
    (np.array([0.1, np.nan, 0.2] * 100, dtype=np.float32), "NaN or infinite"),
    (np.zeros(0, dtype=np.float32), "empty"),
    (np.zeros((1, 1, 1, 10), dtype=np.float32), "must be"),
])
def test_bad_audio_is_a_clear_error(codec, bad, match):
    with pytest.raises(CodecInputError, match=match):
        codec.encode(bad)


def test_bad_codes_are_a_clear_error(codec):
    with pytest.raises(SpeechLMError, match=r"code values must be in \[0, 16\)"):
        codec.decode(torch.full((1, 2, 5), 99))
    with pytest.raises(SpeechLMError, match="3 codebooks"):
        codec.decode(torch.zeros(1, 3, 5, dtype=torch.long))


def test_streaming_decode_matches_full_pass(codec):
    codes = codec.encode(voiced(3.0, 24000))
    full = codec.decode(codes)
    for chunk in (1, 3, 7):
        streamed = torch.cat(list(decode_stream(codec, codes, chunk_frames=chunk)), dim=-1)
        assert streamed.shape == full.shape
        assert (streamed - full).abs().max() < 1e-5  # float rounding only
    dec = StreamingDecoder(codec, lookahead=1)  # lower latency, small approximation
    approx = torch.cat([dec.push(codes[..., i:i + 2]) for i in range(0, codes.shape[-1], 2)] + [dec.flush()], -1)
    assert approx.shape == full.shape


def test_first_audio_arrives_after_lookahead(codec):
    dec = StreamingDecoder(codec)
    codes = codec.encode(voiced(2.0, 24000))
    k = default_context(codec)
    assert dec.push(codes[..., :k]).shape[-1] == 0  # nothing is final before the lookahead is known
    assert dec.push(codes[..., k:k + 2]).shape[-1] == 2 * codec.samples_per_frame


def test_chunked_encode_matches_one_pass(codec):
    wav = voiced(4.0, 24000)
    assert torch.equal(encode_chunked(codec, wav, chunk_frames=13), codec.encode(wav))


def test_save_load_round_trip_and_errors(codec, tmp_path):
    codec.save_pretrained(tmp_path / "c")
    loaded = NeuralCodec.from_pretrained(tmp_path / "c")
    wav = voiced(1.0, 24000)
    assert torch.equal(loaded.encode(wav), codec.encode(wav))
    assert torch.allclose(loaded.decode(codec.encode(wav)), codec.decode(codec.encode(wav)))
    assert NeuralCodec.from_pretrained(tmp_path / "c", n_codebooks=1).n_codebooks == 1
    with pytest.raises(SpeechLMError, match="not a saved speechlm codec"):
        NeuralCodec.from_pretrained(tmp_path / "nothing")
    cfg = json.loads((tmp_path / "c" / "codec.json").read_text())
    cfg["codec"]["dim"] = 32
    (tmp_path / "c" / "codec.json").write_text(json.dumps(cfg))
    with pytest.raises(SpeechLMError, match="weights do not match the config"):
        NeuralCodec.from_pretrained(tmp_path / "c")
    (tmp_path / "c" / "codec.json").write_text('{"format": "something-else", "format_version": 1}')
    with pytest.raises(SpeechLMError, match="not a speechlm-codec v1 config"):
        NeuralCodec.from_pretrained(tmp_path / "c")


def test_codebook_stats():
    codes = torch.tensor([[[0, 1, 2, 3], [0, 0, 0, 0]]])
    s = codebook_stats(codes, 4)
    assert s["usage_0"] == 1.0 and abs(s["perplexity_0"] - 4.0) < 1e-5
    assert s["usage_1"] == 0.25 and abs(s["perplexity_1"] - 1.0) < 1e-5


# ------------------------------------------------------------------------------------ EnCodec backend

@pytest.fixture(scope="module")
def encodec() -> EncodecCodec:
    return EncodecCodec.random(1.5)


def test_encodec_architecture_with_random_weights(encodec):
    assert encodec.frame_rate == 75.0 and encodec.n_codebooks == 2 and encodec.bitrate == 1500.0
    wav = voiced(1.0, 24000)
    codes = encodec.encode(wav)
    assert codes.shape == (1, 2, 75) and encodec.decode(codes, 24000).shape == (1, 24000)
    assert EncodecCodec.random(6.0).encode(wav).shape == (1, 8, 75)


def test_encodec_checkpoint_loading_path(encodec, tmp_path):
    path = tmp_path / "encodec_24khz-00000000.th"
    torch.save(encodec.model.state_dict(), path)
    loaded = EncodecCodec.from_checkpoint(path, verify=False)
    wav = voiced(0.5, 24000)
    assert torch.equal(loaded.encode(wav), encodec.encode(wav))
    with pytest.raises(SpeechLMError, match="checksum mismatch"):
        verify_checksum(path)

    evil = tmp_path / "evil.th"  # an arbitrary pickled object: torch.load(weights_only=True) must refuse it
    torch.save({"x": datetime.date(2020, 1, 1)}, evil)
    with pytest.raises(SpeechLMError, match="refused, the checkpoint holds more than tensors"):
        EncodecCodec.from_checkpoint(evil, verify=False)


def test_encodec_pretrained_without_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHLM_CACHE", str(tmp_path))
    with pytest.raises(SpeechLMError, match="not cached"):
        EncodecCodec.pretrained(download=False)


def test_one_hour_file_encodes_with_bounded_memory(tmp_path):
    """A 1-hour file is encoded window by window: peak memory stays far below the decoded file's size."""
    import subprocess
    import sys

    import soundfile as sf

    path = tmp_path / "hour.wav"
    sr, minute = 16000, voiced(60.0, 16000)
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16") as f:
        for _ in range(60):
            f.write(minute)
    # Decoded at the codec's 24 kHz as float32, the whole hour would take 345 MB.
    script = f"""
import resource, sys, torch
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from speechlm.codec.model import CodecConfig
from speechlm.codec.neural import NeuralCodec
from speechlm.codec.streaming import encode_file
from speechlm.vocoder.model import VocoderConfig
torch.manual_seed(0)
codec = NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).eval()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
codes, n = encode_file(codec, {str(path)!r}, chunk_frames=750)
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(codes.shape[-1], n, grew // 1024)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    frames, samples, grew_mb = int(out[0]), int(out[1]), int(out[2])
    assert frames == 90_000 and samples == 3600 * 24000
    assert grew_mb < 150, f"peak memory grew by {grew_mb} MB"

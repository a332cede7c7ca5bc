"""Token files, the tokenize stage and the `speechlm codec` commands (tiny codec, generated audio)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from speechlm.cli import main
from speechlm.codec.encodec_backend import EncodecCodec
from speechlm.codec.model import CodecConfig
from speechlm.codec.neural import NeuralCodec
from speechlm.codec.tokens import CodecMismatchError, load_tokens, read_token_info, save_tokens
from speechlm.data.prepare import prepare
from speechlm.data.split import split_manifest
from speechlm.data.tokenize_stage import run_tokenize_stage
from speechlm.errors import SpeechLMError
from speechlm.vocoder.model import VocoderConfig
from tests.conftest import voiced, write_wav


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("codec")
    NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).save_pretrained(path)
    return path


def test_token_file_round_trip_and_codec_identity(codec_dir, tmp_path):
    codec = NeuralCodec.from_pretrained(codec_dir)
    codes = [codec.encode(voiced(s, 24000))[0] for s in (0.5, 1.3)]
    save_tokens(tmp_path / "t.safetensors", codec.info, ["a", "b"], codes, [12000, 31200])
    tf = load_tokens(tmp_path / "t.safetensors", expect=codec.info)
    assert tf.ids == ["a", "b"] and tf.num_samples == [12000, 31200]
    assert all(torch.equal(x, y) for x, y in zip(tf.codes, codes))
    assert read_token_info(tmp_path / "t.safetensors") == codec.info
    with pytest.raises(CodecMismatchError, match=r"frame_rate: file has 25.0, codec has 75.0"):
        load_tokens(tmp_path / "t.safetensors", expect=EncodecCodec.random().info)
    with pytest.raises(CodecMismatchError, match="n_codebooks: file has 2, codec has 1"):
        load_tokens(tmp_path / "t.safetensors", expect=codec.with_codebooks(1).info)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SpeechLMError, match="not a token file"):
        load_tokens(tmp_path / "junk.safetensors")


def test_tokenize_stage_shards_resumes_and_is_idempotent(codec_dir, layouts, tmp_path):
    root = layouts.generic_table(lines=[f"u{i}|s{i % 2}|Sentence number {i}." for i in range(7)])
    out = tmp_path / "exp"
    prepare("generic", root, out, progress=False)
    split_manifest(out / "cuts.jsonl.gz", out, dev_fraction=0.0, test_fraction=0.0)
    r = run_tokenize_stage(out, str(codec_dir), shard_size=3, workers=1, progress=False)
    shards = sorted(p.name for p in (out / "tokens").rglob("*.safetensors"))
    assert r.utterances["train"] == 7 and shards == ["train-00000.safetensors", "train-00001.safetensors",
                                                     "train-00002.safetensors"]
    tf = load_tokens(next((out / "tokens").rglob("train-00002.safetensors")))
    assert tf.ids == ["u6"] and tf.codes[0].shape == (2, 15)  # 0.6 s -> 15 frames at 25 Hz
    assert run_tokenize_stage(out, str(codec_dir), shard_size=3, workers=1, progress=False).skipped_as_done
    next((out / "tokens").rglob("train-00001.safetensors")).unlink()  # an interrupted run lost one shard
    again = run_tokenize_stage(out, str(codec_dir), shard_size=3, workers=1, progress=False)
    assert not again.skipped_as_done and again.skipped_shards == 2


def test_codec_commands(codec_dir, tmp_path, capsys):
    src = write_wav(tmp_path / "in.flac", seconds=1.1, sr=16000, fmt="FLAC")
    assert main(["codec", "encode", str(src), str(tmp_path / "x.tokens"), "--codec", str(codec_dir)]) == 0
    assert main(["codec", "decode", str(tmp_path / "x.tokens"), str(tmp_path / "x.wav"), "--codec",
                 str(codec_dir)]) == 0
    info = sf.info(tmp_path / "x.wav")
    assert info.samplerate == 24000 and info.frames == 26400  # 1.1 s at the codec's rate
    assert main(["codec", "resynth", str(src), str(tmp_path / "y.wav"), "--codec", str(codec_dir)]) == 0
    assert np.allclose(sf.read(tmp_path / "x.wav")[0], sf.read(tmp_path / "y.wav")[0], atol=1e-4)
    capsys.readouterr()
    assert main(["codec", "encode", str(tmp_path / "missing.wav"), str(tmp_path / "z.tokens"), "--codec",
                 str(codec_dir)]) == 1
    assert "missing.wav: file does not exist" in capsys.readouterr().err
    assert main(["codec", "decode", str(tmp_path / "x.tokens"), str(tmp_path / "z.wav"), "--codec",
                 "encodec_24khz:random"]) == 1
    assert "tokens were made by a different codec" in capsys.readouterr().err

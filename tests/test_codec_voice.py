"""A voice-conditioned decoder: the codec takes a voice embedding from a reference clip; training crops
come with a reference of the same speaker; the pipeline decodes each voice with its own embedding."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from speechlm.codec.model import CodecConfig
from speechlm.codec.neural import NeuralCodec
from speechlm.codec.streaming import decode_stream
from speechlm.data.audio_dataset import AudioCropDataset
from speechlm.data.prepare import prepare
from speechlm.errors import SpeechLMError
from speechlm.inference import Pipeline
from speechlm.train import main as train_main
from speechlm.vocoder.lightning import _extend_vocoder
from speechlm.vocoder.model import VocoderConfig
from tests.conftest import REPO, eval_script, voiced, write_wav
from tests.test_pipeline import build_tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _conditioned(seed: int = 0) -> NeuralCodec:
    torch.manual_seed(seed)
    plain = NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny())
    codec = _extend_vocoder(plain, speaker_dim=6).eval()
    torch.nn.init.normal_(codec.vocoder.speaker_proj.weight)  # as if trained: the embedding now matters
    return codec


def test_gaining_conditioning_starts_from_the_same_audio():
    torch.manual_seed(0)
    plain = NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).eval()
    cond = _extend_vocoder(plain, speaker_dim=6).eval()
    wav = voiced(0.5, 24000)
    codes = plain.encode(wav)
    spk = cond.speaker_embedding(voiced(1.0, 16000, f0=200.0), 16000)
    assert spk.shape == (1, 6) and cond.voice_conditioned and not plain.voice_conditioned
    assert torch.equal(plain.decode(codes), cond.decode(codes, speaker=spk))  # zero projection: nothing changed
    assert torch.equal(cond.encode(wav), codes)  # the tokens are the tokenizer's alone
    with pytest.raises(SpeechLMError, match="already voice-conditioned"):
        _extend_vocoder(cond, speaker_dim=8)


def test_embedding_changes_the_audio_broadcasts_and_streams():
    codec = _conditioned()
    codes = codec.encode(voiced(0.8, 24000))
    a, b = (codec.speaker_embedding(voiced(1.0, 24000, f0=f0, seed=i), 24000) for i, f0 in enumerate((110.0, 220.0)))
    assert not torch.allclose(codec.decode(codes, speaker=a), codec.decode(codes, speaker=b))
    two = torch.cat([codes, codes])
    both = codec.decode(two, speaker=torch.cat([a, b]))
    assert torch.allclose(both[0], codec.decode(codes, speaker=a)[0], atol=1e-5)
    assert torch.allclose(both[1], codec.decode(codes, speaker=b)[0], atol=1e-5)
    assert torch.allclose(codec.decode(two, speaker=a)[1], codec.decode(codes, speaker=a)[0], atol=1e-5)  # [1, D]
    streamed = torch.cat(list(decode_stream(codec, codes, chunk_frames=3, speaker=a)), dim=-1)
    assert torch.allclose(streamed, codec.decode(codes, speaker=a), atol=1e-5)
    # a stereo reference at another rate is one voice
    stereo = torch.stack([torch.from_numpy(voiced(1.0, 48000)), torch.from_numpy(voiced(1.0, 48000))])
    assert codec.speaker_embedding(stereo[None], 48000).shape == (1, 6)


def test_speaker_errors_are_named():
    codec = _conditioned()
    plain = NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).eval()
    codes = codec.encode(voiced(0.5, 24000))
    assert plain.speaker_embedding(voiced(0.5, 24000), 24000) is None
    with pytest.raises(SpeechLMError, match="not voice-conditioned"):
        plain.decode(codes, speaker=torch.zeros(1, 6))
    with pytest.raises(SpeechLMError, match=r"\[1 or 1, 6\]"):
        codec.decode(codes, speaker=torch.zeros(1, 5))
    with pytest.raises(SpeechLMError, match=r"\[2 or 1, 6\]"):
        codec.decode(torch.cat([codes, codes]), speaker=torch.zeros(3, 6))


def test_save_load_keeps_the_reference_encoder(tmp_path):
    codec = _conditioned()
    loaded = NeuralCodec.from_pretrained(codec.save_pretrained(tmp_path / "c"))
    assert json.loads((tmp_path / "c" / "codec.json").read_text())["vocoder"]["speaker_dim"] == 6
    ref = voiced(1.0, 24000)
    assert torch.equal(loaded.speaker_embedding(ref, 24000), codec.speaker_embedding(ref, 24000))


def test_reference_crops_come_from_another_utterance_of_the_speaker(layouts, tmp_path):
    root = layouts.base / "generic"
    for i in range(3):
        write_wav(root / "wavs" / f"a{i}.wav", seconds=0.5 + 0.5 * i, seed=i)
    write_wav(root / "wavs" / "b0.wav", seconds=1.0, seed=9)
    layouts.generic_table(lines=["a0|alice|One.", "a1|alice|Two.", "a2|alice|Three.", "b0|bob|Four."])
    prepare("generic", root, tmp_path / "d", progress=False)
    ds = AudioCropDataset([str(tmp_path / "d" / "cuts.jsonl.gz")], sample_rate=16000, segment_seconds=0.25,
                          reference_seconds=0.5, gain_db=())
    ids = {Path(item[0]).stem: i for i, item in enumerate(ds.items)}
    groups = {Path(ds.items[i][0]).stem: sorted(Path(ds.items[j][0]).stem for j in ds.same_speaker[i]) for i in ids.values()}
    assert groups["a1"] == ["a0", "a1", "a2"] and groups["b0"] == ["b0"]
    crop, ref = ds[ids["a0"]]
    assert crop.shape == (4000,) and ref.shape == (8000,)
    val = AudioCropDataset([str(tmp_path / "d" / "cuts.jsonl.gz")], sample_rate=16000, segment_seconds=0.25,
                           reference_seconds=0.5, random_crop=False)
    _, ref_b = val[ids["b0"]]  # bob has one utterance: its own start is the reference
    assert torch.equal(ref_b, val._crop(ids["b0"], 8000))
    _, ref_a = val[ids["a0"]]
    assert not torch.equal(ref_a, val._crop(ids["a0"], 8000))  # alice's reference is another utterance


def test_tiny_voice_conditioned_vocoder_trains(layouts, tmp_path):
    root = layouts.generic_table(lines=[f"u{i}|s{i % 2}|Sentence {i}." for i in range(4)])
    prepare("generic", root, tmp_path / "data", progress=False)
    manifest = str(tmp_path / "data" / "cuts.jsonl.gz")
    torch.manual_seed(0)
    start = NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny())
    start.save_pretrained(tmp_path / "codec")
    cfgs = REPO / "configs" / "vocoder"
    args = ["vocoder", "-c", str(cfgs / "base.yaml"), "-c", str(cfgs / "spectral.yaml"), "-c", str(cfgs / "voice.yaml"),
            "-c", str(cfgs / "tiny.yaml"), "--model.codec_dir", str(tmp_path / "codec"),
            "--data.train_manifests", f"[{manifest}]", "--data.val_manifests", f"[{manifest}]",
            "--data.reference_seconds", "0.5", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--model.export_dir", str(tmp_path / "run" / "export"), "--trainer.logger", "false"]
    assert train_main(args) == 0
    tuned = NeuralCodec.from_pretrained(tmp_path / "run" / "export")
    assert tuned.voice_conditioned and tuned.speaker_dim == 128
    before, after = start.state_dict(), tuned.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("tokenizer."))
    assert tuned.vocoder.speaker_proj.weight.abs().sum() > 0  # the projection left zero: the reference is used
    assert train_main(args + ["--trainer.max_steps", "6"]) == 0  # resumes the conditioned model
    no_reference = [a for a in args if a != "0.5" and a != "--data.reference_seconds"] + ["--data.reference_seconds", "0"]
    with pytest.raises(SpeechLMError, match="reference_seconds"):
        train_main(no_reference + ["--trainer.default_root_dir", str(tmp_path / "run2"), "--model.export_dir",
                                   str(tmp_path / "run2" / "export")])


def test_pipeline_decodes_each_voice_with_its_embedding(tmp_path):
    base = build_tiny_pipeline()
    pipe = Pipeline(_conditioned(), base.lm, base.layout, base.tokenizer, base.frontend,
                    defaults=dataclasses.replace(base.defaults))
    pipe.add_voice("alice", voiced(1.0, 24000, f0=210.0), 24000, text="Hello there.", speaker="alice")
    pipe.add_voice("bob", voiced(1.2, 16000, f0=110.0, seed=1), 16000, text="Good morning.", speaker="bob")
    alice = pipe.voices["alice"].embedding
    assert alice.shape == (1, 6) and torch.equal(alice, pipe.codec.speaker_embedding(voiced(1.0, 24000, f0=210.0), 24000))
    opts = {"min_frames": 4, "max_frames": 4}
    out = pipe.synthesize("Hello there.", "alice", seed=0, **opts)
    expected = pipe.codec.decode(out.tokens[None], speaker=alice)[0].numpy()
    assert out.audio.shape == expected.shape
    streamed = torch.cat([torch.from_numpy(c) for c in pipe.stream("Hello there.", "alice", seed=0, **opts)])
    assert torch.allclose(streamed, torch.from_numpy(out.audio), atol=1e-4)

    saved = pipe.save_pretrained(tmp_path / "p")
    stored = load_file(str(saved / "voices.safetensors"))
    assert torch.equal(stored["embedding:alice"], alice) and "embedding:bob" in stored
    loaded = Pipeline.from_pretrained(saved, quantize=None)
    assert torch.equal(loaded.voices["alice"].embedding, alice)
    again = loaded.synthesize("Hello there.", "alice", seed=0, **opts)
    assert torch.allclose(torch.from_numpy(again.audio), torch.from_numpy(out.audio), atol=1e-5)

    # presets saved without an embedding (another codec's bundle) get one from their decoded prompt
    base_saved = base.save_pretrained(tmp_path / "plain")
    assert not any(k.startswith("embedding:") for k in load_file(str(base_saved / "voices.safetensors")))
    moved = Pipeline(pipe.codec, base.lm, base.layout, base.tokenizer, base.frontend,
                     voices=Pipeline.from_pretrained(base_saved, quantize=None).voices)
    bob = moved.voices["bob"]
    assert bob.embedding.shape == (1, 6)
    assert torch.equal(bob.embedding, pipe.codec.speaker_embedding(pipe.codec.decode(bob.codes[None]), 24000))


def test_codec_commands_take_a_voice_reference(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from speechlm.cli import main

    codec = _conditioned()
    codec_dir = codec.save_pretrained(tmp_path / "codec")
    src = write_wav(tmp_path / "in.wav", seconds=1.0, sr=16000, seed=1)
    other = write_wav(tmp_path / "ref.wav", seconds=1.5, sr=22050, seed=2)
    run = lambda *a: main(["codec", *map(str, a), "--codec", str(codec_dir)])
    assert run("encode", src, tmp_path / "x.tokens") == 0
    assert run("resynth", src, tmp_path / "self.wav") == 0  # default reference: the input itself
    assert run("decode", tmp_path / "x.tokens", tmp_path / "none.wav") == 0  # no reference
    assert run("decode", tmp_path / "x.tokens", tmp_path / "with_ref.wav", "--reference", other) == 0
    codes = codec.encode(*sf.read(src, dtype="float32"))
    expect = lambda ref: codec.decode(codes, 24000, speaker=ref)[0].numpy()
    wav, sr = sf.read(other, dtype="float32")
    assert np.allclose(sf.read(tmp_path / "with_ref.wav")[0], expect(codec.speaker_embedding(wav, sr)), atol=1e-4)
    assert np.allclose(sf.read(tmp_path / "none.wav")[0], expect(None), atol=1e-4)
    wav, sr = sf.read(src, dtype="float32")
    assert np.allclose(sf.read(tmp_path / "self.wav")[0], expect(codec.speaker_embedding(wav, sr)), atol=1e-4)
    capsys.readouterr()
    assert run("decode", tmp_path / "x.tokens", tmp_path / "z.wav", "--reference", tmp_path / "missing.wav") == 1
    assert "missing.wav" in capsys.readouterr().err


def test_bench_reference_is_the_speakers_next_utterance(tmp_path):
    bench = eval_script("bench_codec")
    paths = {u: write_wav(tmp_path / f"{u}.wav", seconds=0.2 + 0.1 * i, sr=16000) for i, u in enumerate("abc")}
    wav, sr = bench._reference(paths.get, "b", ["a", "b", "c"])
    assert sr == 16000 and len(wav) == 6400  # c, the next one
    assert len(bench._reference(paths.get, "c", ["a", "b", "c"])[0]) == 3200  # wraps round to a
    assert bench._reference(paths.get, "a", ["a"]) is None

"""The synthesis pipeline on a tiny random-weight model: folder round trip and checks, voices, seeds, streaming,
long text, sentence splitting, the asr transcription loop."""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechlm.codec.model import CodecConfig
from speechlm.codec.neural import NeuralCodec
from speechlm.data.audio import AudioError
from speechlm.errors import SpeechLMError
from speechlm.inference import Pipeline
from speechlm.lm.data import ASSISTANT, ChatTurn, SequenceBuilder, Utterance
from speechlm.lm.generate import length_guard
from speechlm.lm.layout import TEXT, TTS, TokenLayout
from speechlm.lm.model import SpeechLM, lm_config
from speechlm.synthesis.bundle import BundleError, SynthesisDefaults
from speechlm.synthesis.results import Request
from speechlm.synthesis.sentences import split_sentences, split_text
from speechlm.synthesis.voice import generate_text
from speechlm.text.frontend import TextFrontend
from speechlm.text.normalize import TextError
from speechlm.text.tokenizer import EOS_ID, SYMBOL_OFFSET, TextTokenizer
from speechlm.vocoder.model import VocoderConfig
from tests.conftest import REPO, voiced

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.", "Hello there, how are you today?",
    "She sells sea shells by the sea shore!", "Judge the size of the azure vase with much joy.",
    "Thank you for the pleasure of this measure, sir.", "Why would a young cow chew on thick hay?",
]
SMALL = {"max_frames": 3}  # a random LM babbles until the length guard: keep generations short


def build_tiny_pipeline(max_seq_len: int = 512, seed: int = 0) -> Pipeline:
    """Tiny codec + tiny LM with random weights, a tokenizer over a few sentences, two voice presets."""
    torch.manual_seed(seed)
    fe = TextFrontend("en")
    tok = TextTokenizer.build([o.phonemes for o in fe.process(SENTENCES)], kind=fe.symbol_kind, language="en")
    codec = NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).eval()
    layout = TokenLayout(tok.vocab_size, codec.n_codebooks, codec.codebook_size)
    lm = SpeechLM(lm_config("tiny", layout.stream_vocab, max_seq_len=max_seq_len))
    # fp32 when loaded too (cpu_quantize=None), so a saved copy gives exactly the same outputs
    pipe = Pipeline(codec, lm, layout, tok, fe, defaults=SynthesisDefaults(cpu_quantize=None))
    pipe.add_voice("alice", voiced(1.0, 24000, f0=210.0), 24000, text="Hello there.", speaker="alice")
    pipe.add_voice("bob", voiced(1.2, 16000, f0=110.0, seed=1), 16000, text="Good morning.", speaker="bob")
    return pipe


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    return build_tiny_pipeline()


@pytest.fixture(scope="module")
def saved(pipe, tmp_path_factory) -> Path:
    return pipe.save_pretrained(tmp_path_factory.mktemp("pipeline") / "tiny")


def _copy(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "copy"))


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# ------------------------------------------------------------------------------------------ folder


def test_folder_layout_is_json_and_safetensors_only(saved):
    files = sorted(str(p.relative_to(saved)) for p in saved.rglob("*") if p.is_file())
    assert files == ["MODEL_CARD.md", "codec/codec.json", "codec/codec.safetensors", "lm/lm.json",
                     "lm/lm.safetensors", "pipeline.json", "tokenizer.json", "voices.json", "voices.safetensors"]
    m = json.loads((saved / "pipeline.json").read_text())
    assert m["format"] == "speechlm-pipeline" and m["format_version"] == 1
    assert set(m["codec"]["info"]) == {"name", "version", "sample_rate", "frame_rate", "n_codebooks", "codebook_size"}
    assert m["tokenizer"]["hash"].startswith("sha256:") and m["voices"] == ["alice", "bob"]
    assert not list(saved.parent.glob(".*"))  # no temp folder left beside it


def test_roundtrip_gives_the_same_outputs(pipe, saved):
    loaded = Pipeline.from_pretrained(saved)
    assert loaded.tokenizer == pipe.tokenizer and loaded.codec.info == pipe.codec.info
    assert sorted(loaded.voices) == ["alice", "bob"]
    assert torch.equal(loaded.voices["bob"].codes, pipe.voices["bob"].codes)
    for voice in (None, "alice"):
        a = pipe.synthesize("Hello there. The fox jumps!", voice, seed=3, **SMALL)
        b = loaded.synthesize("Hello there. The fox jumps!", voice, seed=3, **SMALL)
        assert torch.equal(a.tokens, b.tokens) and np.allclose(a.audio, b.audio, atol=1e-6)


def test_saving_keeps_the_lms_lineage_and_guided_heads(pipe, tmp_path):
    extra = {"init_from": {"path": "runs/x/export", "weights_sha256": "ab", "step": 7}, "total_steps": 9,
             "guided_attention": {"layers": [1], "heads": 1}}
    pipe.lm_meta = {**(pipe.lm_meta or {}), **extra}
    try:
        pipe.save_pretrained(tmp_path / "p")
    finally:
        pipe.lm_meta = {k: v for k, v in pipe.lm_meta.items() if k not in extra}
    loaded = Pipeline.from_pretrained(tmp_path / "p")
    assert all(loaded.lm_meta[k] == v for k, v in extra.items())
    assert loaded.alignment_guard().layer == 1  # so generation still follows the guided head


def test_save_over_an_existing_folder_replaces_it(pipe, tmp_path):
    out = tmp_path / "p"
    pipe.save_pretrained(out)
    (out / "stale.txt").write_text("old")
    pipe.save_pretrained(out)
    assert not (out / "stale.txt").exists() and (out / "pipeline.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


@pytest.mark.parametrize("tamper, message", [
    (lambda d: d["codec"]["info"].update(codebook_size=17), "codebook_size: pipeline.json says 17"),
    (lambda d: d["codec"]["info"].update(n_codebooks=1), "(LM vs codec: n_codebooks: 2 vs 1)"),
    (lambda d: d["tokenizer"].update(hash="sha256:" + "0" * 64), "tokenizer.json hashes to"),
    (lambda d: d.update(format_version=99), "format version 99 is not supported"),
    (lambda d: d.update(default_voice="carol"), "default_voice 'carol'"),
])
def test_parts_that_do_not_belong_together_are_named(saved, tmp_path, tamper, message):
    path = _copy(saved, tmp_path)
    _edit_json(path / "pipeline.json", tamper)
    with pytest.raises(SpeechLMError, match=re.escape(message)):
        Pipeline.from_pretrained(path)


def test_tokenizer_of_another_size_is_a_layout_mismatch(saved, tmp_path):
    path = _copy(saved, tmp_path)
    other = TextTokenizer.build(["abc"], kind="phoneme")
    other.save(path / "tokenizer.json")
    _edit_json(path / "pipeline.json", lambda d: d["tokenizer"].update(hash=other.content_hash))
    with pytest.raises(BundleError, match=r"LM text_vocab \d+ != tokenizer vocab_size 71"):
        Pipeline.from_pretrained(path)


def test_lm_trained_on_another_codec_is_refused(pipe, saved, tmp_path):
    path = _copy(saved, tmp_path)
    _edit_json(path / "lm" / "lm.json", lambda d: d["codec"].update(version="99"))
    with pytest.raises(BundleError, match="LM was trained on tokens of another codec .*"
                                          + re.escape(f"version: '99' vs '{pipe.codec.info.version}'")):
        Pipeline.from_pretrained(path)
    # an LM that does not record its codec is still checked against the codec's shape
    _edit_json(path / "lm" / "lm.json", lambda d: d.update(codec=None))
    _edit_json(path / "pipeline.json", lambda d: d["codec"]["info"].update(n_codebooks=1))
    with pytest.raises(BundleError, match="LM n_codebooks 2 != codec n_codebooks 1"):
        Pipeline.from_pretrained(path)


def test_missing_parts_and_default(tmp_path, monkeypatch, saved):
    with pytest.raises(SpeechLMError, match="not 'default' or a pipeline folder"):
        Pipeline.from_pretrained(tmp_path / "nothing")
    path = _copy(saved, tmp_path)
    (path / "lm" / "lm.safetensors").unlink()
    with pytest.raises(SpeechLMError, match="lm.safetensors: not found"):
        Pipeline.from_pretrained(path)
    import speechlm.inference as inference

    monkeypatch.setattr(inference, "BUNDLED", tmp_path / "pretrained")
    with pytest.raises(SpeechLMError, match="no bundled pipeline .* Pass a pipeline folder"):
        Pipeline.from_pretrained("default")


# ------------------------------------------------------------------------------------------ synthesis


def test_audio_matches_tokens_and_segments(pipe):
    r = pipe.synthesize("Hello there. How are you today?", "bob", seed=0, max_frames=5)
    spf = pipe.codec.samples_per_frame
    assert r.sample_rate == 24000 and r.audio.dtype == np.float32 and np.isfinite(r.audio).all()
    assert r.tokens.shape == (2, sum(s.frames for s in r.segments)) and int(r.tokens.max()) < pipe.codec.codebook_size
    assert [s.text for s in r.segments] == ["Hello there.", "How are you today?"]
    for s in r.segments:
        assert s.status == "ok" and 1 <= s.frames <= 5 and s.sample_span[1] - s.sample_span[0] == s.frames * spf
    pause = round(pipe.defaults.sentence_pause * 24000)
    assert r.segments[1].sample_span[0] == r.segments[0].sample_span[1] + pause
    assert len(r.audio) == r.tokens.shape[-1] * spf + pause == r.segments[-1].sample_span[1]
    assert r.timings.total_s >= r.timings.first_audio_s > 0 and r.timings.audio_s == pytest.approx(r.duration)
    assert r.voice.name == "bob" and r.voice.transcript_source == "preset"


def test_seeded_and_reproducible(pipe):
    a = pipe.synthesize("The quick brown fox.", seed=1, temperature=1.0, max_frames=8, min_frames=8)
    b = pipe.synthesize("The quick brown fox.", seed=1, temperature=1.0, max_frames=8, min_frames=8)
    c = pipe.synthesize("The quick brown fox.", seed=2, temperature=1.0, max_frames=8, min_frames=8)
    assert torch.equal(a.tokens, b.tokens) and np.array_equal(a.audio, b.audio)
    assert not torch.equal(a.tokens, c.tokens)


@pytest.mark.parametrize("text, batch_size", [("The quick brown fox jumps.", 8), ("Hello there. Why not? Fine!", 1)])
def test_stream_equals_synthesize(pipe, text, batch_size):
    opts = {"seed": 5, "max_frames": 14, "min_frames": 12}
    whole = pipe.synthesize(text, "alice", batch_size=batch_size, **opts)
    chunks = list(pipe.stream(text, "alice", **opts))
    streamed = np.concatenate(chunks)
    assert streamed.shape == whole.audio.shape
    np.testing.assert_allclose(streamed, whole.audio, atol=1e-5)  # same tokens; streaming decode is exact
    # audio starts after lookahead + 1 frames: the first chunk is one frame, not the whole piece
    first = next(c for c in chunks if np.any(c))
    assert len(first) < pipe.codec.samples_per_frame and len(chunks) >= 3 * len(whole.segments)


def test_batch_keeps_seeds_apart_and_isolates_failures(pipe):
    text = "The quick brown fox."
    reqs = [Request(text, "alice", seed=1, options=SMALL), Request("🙂", seed=1, options=SMALL),
            Request(text, "alice", seed=2, options=SMALL), Request(text, "carol", options=SMALL)]
    out = pipe.synthesize_batch(reqs, batch_size=8)
    assert isinstance(out[1], TextError) and "unknown voice preset 'carol'" in str(out[3])
    for r, seed in ((out[0], 1), (out[2], 2)):  # other seeds never share a batch: as if synthesized alone
        assert torch.equal(r.tokens, pipe.synthesize(text, "alice", seed=seed, **SMALL).tokens)


def test_text_and_voice_errors(pipe, tmp_path):
    with pytest.raises(TextError):
        pipe.synthesize("", **SMALL)
    with pytest.raises(TextError, match="nothing speakable"):
        pipe.synthesize("🙂 🙃", **SMALL)
    with pytest.raises(SpeechLMError, match="unknown voice preset 'carol' .*available: alice, bob"):
        pipe.synthesize("Hello.", "carol", **SMALL)
    with pytest.raises(AudioError, match="missing.wav: reference audio does not exist"):
        pipe.synthesize("Hello.", str(tmp_path / "missing.wav"), **SMALL)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00junk" * 10)
    with pytest.raises(AudioError, match="broken.wav: cannot read the reference audio"):
        pipe.synthesize("Hello.", bad, **SMALL)
    with pytest.raises(SpeechLMError, match="unknown synthesis option"):
        list(pipe.stream("Hello.", tempo=2))


def test_reference_audio_voice(pipe, tmp_path):
    ref = tmp_path / "ref.flac"
    sf.write(ref, voiced(8.0, 16000, seed=4), 16000)
    r = pipe.synthesize("Hello there.", ref, seed=0, **SMALL)  # no transcript: the LM's asr task makes one
    assert r.voice.transcript_source == "asr" and r.voice.name == str(ref)
    voice = pipe.resolve_voice(str(ref))
    assert voice.codes.shape == (2, 6 * 25)  # capped at max_voice_seconds
    with pytest.raises(SpeechLMError, match="8.0 s; with a transcript it must be at most 6 s"):
        pipe.synthesize("Hello.", ref, voice_text="Some words.", **SMALL)
    short = tmp_path / "short.wav"
    sf.write(short, voiced(2.0, 22050), 22050)
    given = pipe.resolve_voice(short, "Judge the vase.")
    assert given.transcript_source == "given" and given.phonemes == pipe.frontend.process(["Judge the vase."])[0].phonemes
    assert given.codes.shape == (2, 50)


def test_int8_quantization_auto_from_the_folder_and_saving_keeps_float_weights(pipe, saved, tmp_path):
    path = _copy(saved, tmp_path)
    _edit_json(path / "pipeline.json", lambda d: d["defaults"].update(cpu_quantize="int8"))
    q = Pipeline.from_pretrained(path)  # quantize="auto": what the folder says
    assert q.quantize == "int8" and "quantized" in type(q.lm.blocks[0].attn.q).__module__
    assert Pipeline.from_pretrained(path, quantize=None).quantize is None
    r = q.synthesize("Hello there.", "alice", seed=0, **SMALL)
    assert r.tokens.shape[0] == 2 and len(r.audio) > 0
    again = Pipeline.from_pretrained(q.save_pretrained(tmp_path / "resaved"), quantize=None)
    assert all(torch.equal(a, b) for a, b in zip(again.lm.state_dict().values(), pipe.lm.state_dict().values()))
    fresh = build_tiny_pipeline().optimize("int8")  # never loaded: its float weights exist nowhere
    with pytest.raises(SpeechLMError, match="float weights are not on disk"):
        fresh.save_pretrained(tmp_path / "q")


# ------------------------------------------------------------------------------------------ long text


def _long_text(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ("the a fox dog runs over under bright cold river city music quietly seven "
             "reads writes tall small green paper window").split()
    out, count = [], 0
    while count < n_words:
        kind = rng.random()
        if kind < 0.05:
            s = "Dr. Smith paid 3.5 dollars, e.g. for tea."
        elif kind < 0.08:
            s = "🙂."  # nothing speakable: listed as skipped, never silently dropped
        elif kind < 0.10:
            s = ", ".join(" ".join(rng.choices(words, k=6)) for _ in range(25)) + "."  # ~150 words, one sentence
        else:
            s = " ".join(rng.choices(words, k=rng.randint(3, 14))).capitalize() + rng.choice(".!?;")
        out.append(s)
        count += len(s.split())
    return "".join(s + rng.choice([" ", "  ", "\n"]) for s in out)


def test_long_text_every_sentence_accounted_for_in_order(pipe):
    text = _long_text(2000)
    assert len(text.split()) >= 2000
    r = pipe.synthesize(text, "alice", seed=0, batch_size=16, max_frames=2)
    sentences = split_sentences(text)
    segs = r.segments
    assert "".join(s.text for s in segs).replace(" ", "") == re.sub(r"\s", "", text)  # nothing dropped
    assert [s.char_span for s in segs] == sorted(s.char_span for s in segs)
    assert all(text[a:b] == s.text for s, (a, b) in zip(segs, [s.char_span for s in segs]))
    assert sorted({s.sentence for s in segs}) == list(range(len(sentences)))
    assert [s.sentence for s in segs] == sorted(s.sentence for s in segs)
    skipped = [s for s in segs if s.status != "ok"]
    assert skipped and all(s.text == "🙂." and s.frames == 0 for s in skipped)
    spans = [s.sample_span for s in segs]
    assert all(a <= b for a, b in spans) and all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
    assert spans[-1][1] == len(r.audio)
    assert len(segs) > len(sentences)  # the ~150-word sentences were cut to fit the LM's 512 steps
    long_pieces = [s for s in segs if s.status == "ok"]
    assert max(len(pipe.tokenizer.encode(s.phonemes)) for s in long_pieces) < 512


def test_pieces_fit_the_context_under_the_length_guard(pipe):
    text = ", ".join(["the bright river runs under seven small windows"] * 6) + "."
    r = pipe.synthesize(text, "alice", seed=0)  # no frame cap: the text-length guard decides
    k, d, alice = pipe.layout.n_codebooks, pipe.defaults, pipe.voices["alice"]
    for s in r.segments:
        n = len(pipe.tokenizer.encode(s.phonemes))
        prompt = pipe.builder.tts_prompt([0] * n, "en", pipe.tokenizer.encode(alice.phonemes), alice.codes)
        _, max_frames = length_guard(n, 25.0, d.min_seconds_per_token, d.max_seconds_per_token, d.slack_seconds)
        assert prompt.shape[-1] + max_frames + k <= pipe.lm.cfg.max_seq_len
        assert s.frames <= max_frames
    assert len(r.segments) >= 3 and {s.sentence for s in r.segments} == {0}


# ------------------------------------------------------------------------------------------ splitting


def test_sentence_splitter_rules():
    text = ("Dr. Smith paid $3.50, e.g. for tea. Then he left!  Was it No. 5? I said no. J. R. R. Tolkien wrote; "
            "it was fine... and more etc. Yes.\nA line without a stop\n\"Help!\" she cried. 你好。世界！")
    got = [text[a:b] for a, b in split_sentences(text)]
    assert got == ["Dr. Smith paid $3.50, e.g. for tea.", "Then he left!", "Was it No. 5?", "I said no.",
                   "J. R. R. Tolkien wrote;", "it was fine... and more etc.", "Yes.", "A line without a stop",
                   "\"Help!\" she cried.", "你好。", "世界！"]
    assert split_sentences("  \n ") == []


def test_split_to_fit_prefers_clauses_and_keeps_every_character():
    text = "one two, three four five, six seven eight nine ten eleven. Short."
    pieces = split_text(text, lambda s: len(s) <= 20)
    assert all(len(p.text) <= 20 for p in pieces) and [p.sentence for p in pieces][-1] == 1
    assert pieces[0].text == "one two," and "".join(p.text for p in pieces).replace(" ", "") == text.replace(" ", "")
    assert [p.text for p in split_text("abcdefghijklmnop", lambda s: len(s) <= 5)] == ["abcd", "efgh", "ijkl", "mnop"]


# ------------------------------------------------------------------------------------------ asr


def _scripted_lm(pipe: Pipeline, a: int, b: int, start: int = TEXT) -> SpeechLM:
    """The tiny LM with hand-set weights whose greedy stream-0 continuation of ``<|text|>`` is ``a b <eos>``.

    Blocks output zero (their projections are zeroed), so each position's hidden state is its input
    embedding; with tied heads the logits are dot products between embedding rows, chosen so that
    <|text|> -> a -> b -> <eos>, while a tag (<|tts|>) would score highest after <|text|> if it were allowed.
    ``start`` replaces <|text|> as the token the text follows (``<|assistant|>`` for chat).
    """
    lm = copy.deepcopy(pipe.lm)
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if name.endswith(("attn.out.weight", "ffn.down.weight")) or name.startswith("embed.") and name != "embed.0.weight":
                p.zero_()
        e = lm.embed[0].weight
        e.zero_()
        dim = e.shape[1]
        unit = torch.eye(dim)
        e[start] = unit[0]
        e[TTS] = 50 * unit[0]  # masked: tags may not appear in a transcript
        e[a] = unit[0] + unit[1]
        e[b] = 3 * (unit[1] + unit[2])
        e[EOS_ID] = 10 * (unit[2] + unit[3])
    return lm.eval()


def test_asr_transcription_loop_follows_the_layout(pipe):
    a, b = SYMBOL_OFFSET + 2, SYMBOL_OFFSET + 5
    lm = _scripted_lm(pipe, a, b)
    codes = pipe.voices["alice"].codes
    prompt = pipe.builder.asr_prompt(codes, "en")
    seq, mask = SequenceBuilder(pipe.layout).build("asr", Utterance("u", "s", "en", [a, b], codes))
    assert torch.equal(seq[:, : prompt.shape[-1]], prompt) and not mask[:, : prompt.shape[-1]].any()
    assert generate_text(lm, pipe.layout, prompt, max_tokens=20) == [a, b]
    assert generate_text(lm, pipe.layout, prompt, max_tokens=1) == [a]
    scripted = copy.copy(pipe)
    scripted._lm_run = lm
    voice = scripted.voice_from_audio(voiced(1.0, 24000), 24000)
    assert voice.transcript_source == "asr" and voice.phonemes == pipe.tokenizer.decode([a, b])


def test_chat_reply_follows_the_layout_and_is_spoken_as_phonemes(pipe):
    a, b = SYMBOL_OFFSET + 2, SYMBOL_OFFSET + 5
    scripted = copy.copy(pipe)
    scripted._lm_run = _scripted_lm(pipe, a, b, start=ASSISTANT)
    question = pipe.tokenizer.encode(pipe.frontend.process(["What is two plus two?"])[0].phonemes)
    prompt = pipe.builder.chat_prompt(question, "en")
    seq, mask = SequenceBuilder(pipe.layout).build_chat(ChatTurn("t", "en", question, [a, b]))
    assert torch.equal(seq[:, : prompt.shape[-1]], prompt) and seq[0, prompt.shape[-1] - 1] == ASSISTANT
    assert seq[0, mask[0]].tolist() == [a, b, EOS_ID] and not mask[1:].any()
    reply = scripted.chat("What is two plus two?")
    assert reply == pipe.tokenizer.decode([a, b])
    spoken = pipe.synthesize(reply, phonemes=True, seed=0, **SMALL)
    assert spoken.phonemes == reply and len(spoken.audio) > 0
    with pytest.raises(TextError):
        pipe.chat("🙂")


def test_classifier_free_guidance_option(pipe):
    opts = {"seed": 2, "max_frames": 10, "min_frames": 9, "cfg_scale": 2.0}
    text = "Hello there. Why not?"
    whole = pipe.synthesize(text, "alice", batch_size=1, **opts)  # piece i: seed + i, as stream() does
    assert [s.status for s in whole.segments] == ["ok", "ok"]
    streamed = np.concatenate(list(pipe.stream(text, "alice", **opts)))
    np.testing.assert_allclose(streamed, whole.audio, atol=1e-5)  # both paths guide the same way
    # the pipeline's unconditional prompt: the voice prompt with no text, as text_dropout trains it
    plan = pipe._plan(0, "Hello there.", pipe.voices["alice"], {})[0]
    alice = pipe.voices["alice"]
    assert torch.equal(plan.uncond, pipe.builder.tts_prompt([], "en", pipe.tokenizer.encode(alice.phonemes), alice.codes))
    with pytest.raises(SpeechLMError, match="cfg_scale must be a number >= 0"):
        pipe.synthesize(text, "alice", **{**opts, "cfg_scale": -1.0})


def test_best_of_n_keeps_the_take_the_asr_task_reads_best(pipe):
    from speechlm.lm.generate import generate
    from speechlm.lm.rerank import transcript_nll

    opts = {"seed": 4, "max_frames": 6, "min_frames": 6, "temperature": 1.0}
    text = "Hello there."
    best = pipe.synthesize(text, "alice", candidates=3, **opts)
    plan = pipe._plan(0, text, pipe.voices["alice"], opts)[0]
    cfg, _ = pipe._generation([plan], opts, 4)
    takes = generate(pipe.lm, pipe.layout, [plan.prompt] * 3, cfg)  # the three takes, side by side in one batch
    assert len({tuple(t.flatten().tolist()) for t in takes}) == 3
    nll = transcript_nll(pipe.lm, pipe.layout, takes, [plan.ids] * 3)
    assert torch.equal(best.tokens, takes[int(nll.argmin())])
    streamed = np.concatenate(list(pipe.stream(text, "alice", candidates=3, **opts)))
    np.testing.assert_allclose(streamed, best.audio, atol=1e-5)  # stream() picks the same take
    for bad in (0, 1.5, True):
        with pytest.raises(SpeechLMError, match="candidates must be a whole number >= 1"):
            pipe.synthesize(text, candidates=bad, **SMALL)


def test_voice_embeddings_from_another_voice_encoder_are_an_error(tmp_path):
    torch.manual_seed(0)
    pipe = build_tiny_pipeline()
    pipe.codec = NeuralCodec(CodecConfig.tiny(), dataclasses.replace(VocoderConfig.tiny(), speaker_dim=8)).eval()
    pipe.voices = {}
    pipe.add_voice("alice", voiced(1.0, 24000, f0=210.0), 24000, text="Hello there.", speaker="alice")
    assert pipe.voices["alice"].embedding is not None
    path = pipe.save_pretrained(tmp_path / "p")
    again = Pipeline.from_pretrained(path, quantize=None)  # the same encoder: loads
    assert torch.equal(again.voices["alice"].embedding, pipe.voices["alice"].embedding)
    # the vocoder trained on after the voices were made: its reference encoder is not the one they came from
    codec_dir = path / "codec"
    trained = NeuralCodec.from_pretrained(codec_dir)
    with torch.no_grad():
        next(trained.vocoder.reference.parameters()).add_(0.01)
    assert trained.voice_encoder_hash != pipe.codec.voice_encoder_hash
    trained.save_pretrained(codec_dir)
    with pytest.raises(BundleError, match="made by another voice encoder"):
        Pipeline.from_pretrained(path, quantize=None)


def test_revoice_remakes_the_embeddings_with_the_new_encoder(tmp_path):
    import runpy

    import soundfile as sf

    torch.manual_seed(0)
    corpus = tmp_path / "corpus"
    (corpus / "wavs").mkdir(parents=True)
    sf.write(corpus / "wavs" / "alice_s00001.flac", voiced(1.0, 24000, f0=210.0), 24000)
    (corpus / "metadata.csv").write_text("id|speaker|split|text\nalice_s00001|alice|train|Hello there.\n")
    audio, sr = sf.read(corpus / "wavs" / "alice_s00001.flac", dtype="float32")  # as the corpus stores it
    pipe = build_tiny_pipeline()
    pipe.codec = NeuralCodec(CodecConfig.tiny(), dataclasses.replace(VocoderConfig.tiny(), speaker_dim=8)).eval()
    pipe.voices = {}
    pipe.add_voice("alice", audio, sr, text="Hello there.", speaker="alice")
    path = pipe.save_pretrained(tmp_path / "p")
    trained = NeuralCodec.from_pretrained(path / "codec")
    with torch.no_grad():
        next(trained.vocoder.reference.parameters()).add_(0.01)  # the vocoder trained on: a new encoder
    trained.save_pretrained(path / "codec")
    revoice = runpy.run_path(str(REPO / "data_recipes" / "revoice.py"))["main"]
    assert revoice(["--pipeline", str(path), "--corpus", str(corpus)]) == 0
    again = Pipeline.from_pretrained(path, quantize=None)  # loads again: the embeddings are the new encoder's
    assert torch.equal(again.voices["alice"].codes, pipe.voices["alice"].codes)
    assert torch.allclose(again.voices["alice"].embedding, trained.speaker_embedding(audio, sr))
    assert not torch.allclose(again.voices["alice"].embedding, pipe.voices["alice"].embedding)
    (corpus / "metadata.csv").write_text("id|speaker|split|text\nalice_s00001|alice|train|Something else.\n")
    with pytest.raises(SystemExit, match="no utterance of 'alice' saying 'Hello there.'"):
        revoice(["--pipeline", str(path), "--corpus", str(corpus)])

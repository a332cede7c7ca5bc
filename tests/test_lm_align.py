"""Guided attention: spans read from batches, the diagonal prior, attention probabilities, and training."""

from __future__ import annotations

import pytest
import torch

from speechlm.errors import SpeechLMError
from speechlm.lm.align import alignment_spans, diagonal_prior, guided_attention_loss
from speechlm.lm.data import SequenceBuilder, collate
from speechlm.lm.layout import AUDIO, TEXT
from speechlm.lm.lightning import LMModule
from speechlm.lm.model import SpeechLM, lm_config
from speechlm.text.tokenizer import EOS_ID
from tests.test_lm_data import L, utt
from tests.test_lm_training import _args, tokenized  # noqa: F401  (module-scoped fixture)


def _item(task: str, u, prompt=None, prefix: int = 0):
    seq, mask = SequenceBuilder(L).build(task, u, prompt, prefix)
    return seq[:, :-1], seq[:, 1:], mask[:, 1:], 0


def test_spans_point_at_target_text_and_audio():
    u, p = utt(0, n_text=6, frames=10), utt(1, n_text=4, frames=7)
    batch = [_item("tts", u, p), _item("tts", u), _item("asr", u), _item("continue", u, prefix=3)]
    inputs, targets, mask, _ = collate(batch, L)
    spans = alignment_spans(inputs, L).tolist()
    for row, (q0, q1, k0, k1) in zip(range(2), spans):
        s0 = inputs[row, 0].tolist()
        assert s0[k0 - 1] == TEXT and s0[k0:k1] == u.text and s0[k1] == AUDIO  # the target text, not the prompt's
        assert q0 == k1 and q1 - q0 == 10 + 1  # queries predicting the 10 frames and <eos>
        assert mask[row, 0, q0:q1].all() and not mask[row, 0, :q0].any()
    q0, q1, k0, k1 = spans[2]
    assert targets[2, 0, q0:q1].tolist() == [*u.text, EOS_ID]  # the transcript's queries ...
    assert k1 - k0 == 10 and L.is_audio_token(inputs[2, 0, k0:k1]).all()  # ... over the audio frames
    assert spans[3] == [0, 0, 0, 0]  # continue: nothing to align


def test_prior_peaks_on_the_diagonal():
    g = diagonal_prior(40, 10, width=0.2)
    assert g.shape == (40, 10) and g.max() <= 1
    assert g.argmax(-1).tolist() == [t * 10 // 40 for t in range(40)]
    assert g[0, 9] < 0.01  # the first frame is far from the last phoneme


def test_attention_probs_match_the_model_and_train_the_heads():
    torch.manual_seed(0)
    model = SpeechLM(lm_config("tiny", L.stream_vocab))
    batch = [_item("tts", utt(i, n_text=8, frames=20)) for i in range(3)]
    inputs, targets, mask, _ = collate(batch, L)
    plain = model(inputs, targets, mask)
    out = model(inputs, targets, mask, attn_probs={1: 2})
    assert torch.equal(plain.logits[0], out.logits[0]) and len(out.attn) == 1
    probs = out.attn[0]
    assert probs.shape == (3, 2, inputs.shape[-1], inputs.shape[-1])
    assert torch.allclose(probs.sum(-1), torch.ones(3, 2, inputs.shape[-1]), atol=1e-5)
    assert probs.triu(diagonal=1).abs().max() == 0  # causal
    spans = alignment_spans(inputs, L)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = guided_attention_loss(model(inputs, attn_probs={1: 2}).attn, spans)
        losses.append(float(loss))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0]  # the guided heads learned to look along the diagonal


def test_no_span_no_loss():
    inputs, *_ = collate([_item("continue", utt(0), prefix=2)], L)
    probs = [torch.full((1, 1, inputs.shape[-1], inputs.shape[-1]), 0.1)]
    assert guided_attention_loss(probs, alignment_spans(inputs, L)) is None


def test_bad_layer_is_a_clear_error():
    with pytest.raises(SpeechLMError, match="layers 0..1"):
        LMModule(size="tiny", text_vocab=90, n_codebooks=3, codebook_size=16,
                 guided_attention={"layers": [5], "heads": 1})
    with pytest.raises(SpeechLMError, match="guide 1..4"):  # no heads at all would guide nothing
        LMModule(size="tiny", text_vocab=90, n_codebooks=3, codebook_size=16,
                 guided_attention={"layers": [1], "heads": 0})


def test_lm_trains_with_guided_attention(tokenized, tmp_path):  # noqa: F811
    from speechlm.train import main as train_main

    out, tokens, vocab = tokenized
    args = _args(out, tokens, vocab, tmp_path / "run") + [
        "--model.guided_attention", '{"layers": [1], "heads": 2, "weight": 0.5}', "--trainer.logger", "true"]
    assert train_main(args) == 0
    metrics = next((tmp_path / "run").rglob("metrics.csv")).read_text()
    assert "train/guided_attn" in metrics.splitlines()[0]
    # the export says which heads were guided, and a pipeline built on it follows the last one
    from speechlm.lm.export import read_meta
    from tests.test_pipeline import build_tiny_pipeline

    meta = read_meta(tmp_path / "run" / "export")
    assert meta["guided_attention"]["layers"] == [1]
    pipe = build_tiny_pipeline()
    assert pipe.alignment_guard() is None  # an LM without guided heads: no guard
    pipe.lm_meta = {"guided_attention": {"layers": [0, 1], "heads": 1}}
    guard = pipe.alignment_guard()
    assert (guard.layer, guard.head, guard.max_end_frames) == (1, 0, round(0.5 * pipe.codec.frame_rate))
    assert pipe.synthesize("Hello there.", "alice", max_frames=3).audio.size > 0


def _bias():
    from speechlm.lm.generate import _stream_bias

    return _stream_bias(L, L.stream_vocab, "cpu")


def test_alignment_guard_holds_eos_until_the_text_is_read_then_forces_it():
    from speechlm.lm.generate import AlignmentGuard, _alignment_bias

    guard, bias = AlignmentGuard(layer=0, end_tokens=2, max_end_frames=3, max_step=2), _bias()
    reading, at_end, trace = [-1], [0], [[]]
    text_start, text_end, keys = 5, 15, 30  # 10 text tokens at [5, 15)
    allowed = []
    for pos in [0, 2, 1, 9, 5, 6, 2, 9, 9, 9, 9]:  # the head's argmax over the text, one step each
        probs = torch.zeros(1, keys)
        probs[0, text_start + pos] = 1.0
        row = _alignment_bias(probs, [text_start], text_end, reading, at_end, guard, bias, trace)[0]
        allowed.append("eos" if torch.equal(row, bias["eos"]) else "either" if row[EOS_ID] == 0 else "audio")
    # never moves back, and the glance at the end (9 after 2) advances it by 2 only
    assert trace[0] == [0, 2, 2, 4, 5, 6, 6, 8, 9, 9, 9]
    # near the end from position 8 (10 - 2): <eos> allowed for 3 frames, then forced
    assert allowed == ["audio"] * 7 + ["either"] * 3 + ["eos"]


def test_generation_with_the_guard_ends_when_the_head_has_stayed_at_the_end():
    from speechlm.lm.generate import AlignmentGuard, GenerationConfig, generate
    from speechlm.lm.sampling import SamplingConfig

    torch.manual_seed(0)
    model = SpeechLM(lm_config("tiny", L.stream_vocab)).eval()
    prompt = SequenceBuilder(L).tts_prompt(utt(0, n_text=4).text, "en")
    # end_tokens >= the text's length: "near the end" from the first step, so after 3 frames <eos> is forced
    trace: list[list[int]] = []
    cfg = GenerationConfig(3, 50, SamplingConfig(temperature=0.0), alignment=AlignmentGuard(1, 0, 4, 2), trace=trace)
    assert generate(model, L, [prompt, prompt[:, 1:]], cfg)[0].shape[-1] == 3
    assert len(trace) == 2 and all(0 <= p < 4 for p in trace[0])
    free = generate(model, L, [prompt], GenerationConfig(50, 50, SamplingConfig(temperature=0.0)))[0]
    assert free.shape[-1] == 50  # the same model without the guard runs to its length limit

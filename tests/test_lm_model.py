"""The LM building blocks: token layout, transformer (causality, KV cache, GQA, learning), sampling."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file

from speechlm.lm.layout import AUDIO, TTS, TokenLayout
from speechlm.lm.model import LMConfig, SpeechLM, apply_rope, lm_config, rope_tables
from speechlm.lm.sampling import SamplingConfig, draw, filter_logits, sample
from speechlm.text.tokenizer import PAD_ID


@pytest.mark.parametrize("k,t", [(1, 5), (4, 7), (8, 3)])
def test_delay_pattern_round_trip(k, t):
    layout = TokenLayout(text_vocab=100, n_codebooks=k, codebook_size=16)
    codes = torch.randint(0, 16, (k, t))
    steps = layout.audio_steps(codes)
    assert steps.shape == (k, t + k - 1)
    assert torch.equal(layout.codes_from_steps(steps), codes)
    assert (steps[0, t:] == PAD_ID).all() and all((steps[i, :i] == layout.empty).all() for i in range(1, k))
    assert layout.is_audio_token(steps[0, :t]).all()  # codebook 0 lives above the text ids


def test_layout_vocab_and_tags():
    layout = TokenLayout(text_vocab=120, n_codebooks=4, codebook_size=1000)
    assert layout.stream_vocab == [1120, 1001, 1001, 1001]
    steps = layout.text_steps([TTS, AUDIO])
    assert steps.shape == (4, 2) and steps[0].tolist() == [TTS, AUDIO] and (steps[1:] == 1000).all()
    assert TTS != AUDIO and 4 <= TTS < 68  # inside the tokenizer's reserved tag block


@pytest.fixture(scope="module")
def tiny() -> SpeechLM:
    torch.manual_seed(0)
    return SpeechLM(lm_config("tiny", [50, 17, 17], max_seq_len=64)).eval()


def _steps(b=2, s=12):
    return torch.stack([torch.randint(0, 50, (b, s)), torch.randint(0, 17, (b, s)), torch.randint(0, 17, (b, s))], 1)


def test_causal_no_lookahead(tiny):
    x = _steps()
    y = x.clone()
    y[:, :, 7:] = torch.randint(0, 17, y[:, :, 7:].shape)
    a, b = tiny(x).logits, tiny(y).logits
    for la, lb in zip(a, b):
        assert torch.allclose(la[:, :7], lb[:, :7], atol=1e-5)
        assert not torch.allclose(la[:, 7:], lb[:, 7:], atol=1e-3)


@pytest.mark.parametrize("decoding_layout", [False, True])
def test_kv_cache_matches_full_forward(tiny, decoding_layout):
    model = copy.deepcopy(tiny).optimize_for_decoding() if decoding_layout else tiny
    x = _steps(s=10)
    full = tiny(x).logits
    cache = model.new_cache(2, 16)
    parts = [model(x[..., :4], cache=cache).logits]  # prefill, then a chunk, then one step at a time
    parts.append(model(x[..., 4:7], cache=cache).logits)
    parts += [model(x[..., i:i + 1], cache=cache).logits for i in range(7, 10)]
    for k in range(3):
        inc = torch.cat([p[k] for p in parts], dim=1)
        assert torch.allclose(inc, full[k], atol=1e-5)
    assert cache.length == 10


def test_last_only_logits_are_the_last_position(tiny):
    x = _steps(s=6)
    full, last = tiny(x).logits, tiny(x, last_only=True).logits
    for a, b in zip(full, last):
        assert b.shape == (2, 1, a.shape[-1]) and torch.allclose(a[:, -1:], b, atol=1e-6)
    with pytest.raises(ValueError, match="last_only"):
        tiny(x, targets=x, last_only=True)


def test_cached_steps_with_left_padding_match_the_unpadded_forward(tiny):
    x = _steps(b=1, s=9)
    full = tiny(x).logits
    padded = torch.cat([torch.zeros(1, 3, 3, dtype=torch.long), x], -1)  # 3 pad steps in front
    key_mask = torch.arange(12)[None] >= 3
    cache = tiny.new_cache(1, 12)
    parts = [tiny(padded[..., :8], cache=cache, key_mask=key_mask[:, :8]).logits]
    parts += [tiny(padded[..., i:i + 1], cache=cache, key_mask=key_mask[:, :i + 1]).logits for i in range(8, 12)]
    for k in range(3):
        inc = torch.cat([p[k] for p in parts], dim=1)[:, 3:]
        assert torch.allclose(inc, full[k], atol=1e-5)


def test_rope_is_the_pairwise_rotation():
    cos, sin = rope_tables(8, 5, 10_000.0)
    x = torch.randn(2, 3, 5, 8)
    ang = torch.outer(torch.arange(5).float(), 1.0 / 10_000.0 ** (torch.arange(0, 8, 2).float() / 8))
    a, b = x.unflatten(-1, (-1, 2)).unbind(-1)
    ref = torch.stack([a * ang.cos() - b * ang.sin(), a * ang.sin() + b * ang.cos()], -1).flatten(-2)
    assert torch.equal(apply_rope(x, cos, sin), ref)  # bit for bit the textbook formula
    assert torch.allclose(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_decoding_layout_keeps_outputs_names_and_checkpoints(tiny, tmp_path):
    opt = copy.deepcopy(tiny).optimize_for_decoding()
    assert opt.heads[0].weight is opt.embed[0].weight  # still tied
    assert all(not p.is_contiguous() for p in opt.parameters() if p.dim() == 2)
    x = _steps()
    for a, b in zip(tiny(x).logits, opt(x).logits):
        assert torch.allclose(a, b, atol=1e-6)
    ref, state = tiny.state_dict(), opt.state_dict()
    assert list(state) == list(ref)
    assert all(v.is_contiguous() and torch.equal(v, ref[k]) for k, v in state.items())
    assert state["heads.0.weight"] is state["embed.0.weight"]  # tied weights stay one tensor in checkpoints
    untied = {k: v for k, v in state.items() if not k.startswith("heads.")}
    save_file(untied, tmp_path / "lm.safetensors")
    fresh = SpeechLM(tiny.cfg).optimize_for_decoding()
    fresh.load_state_dict(load_file(tmp_path / "lm.safetensors"), strict=False)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), tiny.parameters()))
    assert not fresh.blocks[0].attn.q.weight.is_contiguous()  # loading keeps the decoding layout


def test_tiny_lm_learns_a_sequence():
    torch.manual_seed(1)
    model = SpeechLM(LMConfig(stream_vocab=[20, 9], dim=32, n_layers=2, n_heads=4, max_seq_len=32))
    x = torch.stack([torch.arange(16) % 20, torch.arange(16) % 9])[None]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        out = model(x[..., :-1], targets=x[..., 1:])
        first = first if first is not None else out.loss.item()
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.loss.item() < 0.1 * first


def test_loss_mask_counts_only_target_spans():
    torch.manual_seed(0)
    model = SpeechLM(LMConfig(stream_vocab=[10], dim=16, n_layers=1, n_heads=2, max_seq_len=16))
    x = torch.randint(0, 10, (1, 1, 8))
    mask = torch.zeros(1, 1, 8, dtype=torch.bool)
    mask[..., 5:] = True
    a = model(x, targets=x, loss_mask=mask).loss
    y = x.clone()
    y[..., :5] = (y[..., :5] + 1) % 10  # change only the unmasked targets
    assert torch.allclose(model(x, targets=y, loss_mask=mask).loss, a)


def test_named_sizes():
    vocab = [1120, 1001, 1001, 1001]
    with torch.device("meta"):  # count parameters without allocating them
        counts = {s: SpeechLM(lm_config(s, vocab)).num_params() for s in ("mini", "small", "base", "large")}
    assert 4e6 < counts["mini"] < 8e6
    assert 10e6 < counts["small"] < 25e6
    assert 80e6 < counts["base"] < 130e6
    assert 400e6 < counts["large"] < 600e6
    with pytest.raises(ValueError, match="unknown LM size"):
        lm_config("huge", vocab)


def test_sampling_controls():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    g = torch.Generator().manual_seed(0)
    assert sample(logits, SamplingConfig(temperature=0)).item() == 1
    assert sample(logits, SamplingConfig(top_k=1), g).item() == 1
    assert sample(logits, SamplingConfig(top_p=0.01), g).item() == 1
    assert torch.isinf(filter_logits(logits, top_k=2)).sum() == 2
    def draws(seed: int) -> list[int]:
        g = torch.Generator().manual_seed(seed)
        return [sample(logits, SamplingConfig(), g).item() for _ in range(20)]

    assert draws(7) == draws(7)


def test_draw_gives_torch_multinomials_tokens():
    probs = torch.rand(3, 50).pow(4).softmax(-1)
    for seed in range(20):  # seeded generations stay what they were with torch.multinomial
        expected = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(seed)).squeeze(-1)
        assert torch.equal(draw(probs, torch.Generator().manual_seed(seed)), expected)
    counts = torch.bincount(draw(torch.tensor([[0.2, 0.8]]).expand(4000, 2), torch.Generator().manual_seed(0)))
    assert abs(counts[1].item() / 4000 - 0.8) < 0.03


def test_repetition_aware_sampling_breaks_loops():
    logits = torch.tensor([[5.0, 4.9, 4.8, 4.7]])  # top-k 1 always picks token 0 ...
    cfg = SamplingConfig(top_k=1, repetition_window=10, repetition_ratio=0.5)
    g = torch.Generator().manual_seed(0)
    no_loop = torch.ones(1, 10, dtype=torch.long)
    assert {sample(logits, cfg, g, history=no_loop).item() for _ in range(20)} == {0}
    looping = torch.zeros(1, 10, dtype=torch.long)  # ... but token 0 already fills the window
    picks = [sample(logits, cfg, g, history=looping).item() for _ in range(40)]
    assert len(set(picks)) > 1  # resampled from the unfiltered distribution
    plain = SamplingConfig(top_k=1)
    assert {sample(logits, plain, g, history=looping).item() for _ in range(20)} == {0}


@pytest.mark.parametrize("k", [1, 3])
def test_audio_segment_ends_with_eos_where_generation_does(k):
    layout = TokenLayout(text_vocab=100, n_codebooks=k, codebook_size=16)
    codes = torch.randint(0, 16, (k, 5))
    steps = layout.audio_steps(codes, eos=True)
    assert steps[0, 5].item() == 3 and steps.shape[-1] == 5 + max(k - 1, 1)  # <eos> right after frame 4
    assert torch.equal(layout.codes_from_steps(steps), codes)

"""Generation over the delay-pattern layout: constraints, length guard, batching with padding, seeds."""

from __future__ import annotations

import copy

import pytest
import torch

from speechlm.lm.generate import GenerationConfig, generate, length_guard, stream_frames
from speechlm.lm.layout import AUDIO, TTS, TokenLayout
from speechlm.lm.model import SpeechLM, lm_config
from speechlm.lm.sampling import SamplingConfig

LAYOUT = TokenLayout(text_vocab=80, n_codebooks=3, codebook_size=16)


@pytest.fixture(scope="module")
def model() -> SpeechLM:
    torch.manual_seed(0)
    return SpeechLM(lm_config("tiny", LAYOUT.stream_vocab, max_seq_len=128)).eval()


def prompt(n_text: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(68, 80, (n_text,), generator=g).tolist()
    return LAYOUT.text_steps([2, TTS, *text, AUDIO])


def test_codes_respect_the_layout_and_length_guard(model):
    cfg = GenerationConfig(min_frames=4, max_frames=9, sampling=SamplingConfig(temperature=1.0))
    for codes in generate(model, LAYOUT, [prompt(5), prompt(8, 1)], cfg):
        assert codes.shape[0] == 3 and 4 <= codes.shape[1] <= 9
        assert int(codes.min()) >= 0 and int(codes.max()) < 16
    exact = GenerationConfig(min_frames=6, max_frames=6)
    assert generate(model, LAYOUT, [prompt(5)], exact)[0].shape == (3, 6)


def test_frames_stream_out_before_the_end(model):
    cfg = GenerationConfig(min_frames=8, max_frames=8)
    ready_at = [i for i, r in enumerate(stream_frames(model, LAYOUT, [prompt(4)], cfg)) if r[0] is not None]
    assert ready_at[0] == 2  # frame 0 is complete after K - 1 = 2 more steps, long before the last frame
    assert len(ready_at) == 8


def test_batched_prompts_with_padding_match_single_runs(model):
    cfg = GenerationConfig(min_frames=5, max_frames=7, sampling=SamplingConfig(temperature=0))
    short, long = prompt(3, 2), prompt(11, 3)
    alone = generate(model, LAYOUT, [short], cfg)[0]
    batched = generate(model, LAYOUT, [long, short], cfg)
    assert torch.equal(batched[1], alone)  # left padding is invisible to the short prompt
    assert torch.equal(batched[0], generate(model, LAYOUT, [long], cfg)[0])


def test_seeded_and_reproducible(model):
    cfg = lambda seed: GenerationConfig(min_frames=6, max_frames=6, seed=seed)  # noqa: E731
    a, b = generate(model, LAYOUT, [prompt(5)], cfg(1))[0], generate(model, LAYOUT, [prompt(5)], cfg(1))[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, generate(model, LAYOUT, [prompt(5)], cfg(2))[0])


def test_length_guard_scales_with_text():
    lo, hi = length_guard(40, frame_rate=25.0)
    assert lo == 20 and hi == 275  # 40 tokens: 0.8 s .. 10 s + 1 s slack at 25 Hz
    assert length_guard(0, 25.0) == (1, 25)
    with pytest.raises(ValueError, match="max_seq_len"):
        generate(SpeechLM(lm_config("tiny", LAYOUT.stream_vocab, max_seq_len=16)), LAYOUT, [prompt(5)],
                 GenerationConfig(max_frames=50))


def test_equal_min_and_max_frames_never_stop_early(model):
    cfg = GenerationConfig(min_frames=7, max_frames=7, sampling=SamplingConfig(temperature=0))
    steps = list(stream_frames(model, LAYOUT, [prompt(4)], cfg))
    assert len(steps) == 7 + LAYOUT.n_codebooks - 1  # what eval/bench_lm.py counts on


# Codes from the implementation before the decoding speed work (commit 4d5a74b), same seeds and model:
# the speed work (masks built once, GQA without copies, additive rule masks, sampling without
# torch.multinomial's check, the decoding weight layout) must not change one seeded token.
# Item 0 of "sampled" ends with <eos> after 10 frames while item 1 runs to the length guard.
BEFORE = {
    "greedy": (GenerationConfig(min_frames=2, max_frames=6, sampling=SamplingConfig(temperature=0)),
               [[[3, 3, 3, 3, 3, 3], [12, 12, 12, 12, 12, 12], [2, 2, 2, 2, 2, 2]],
                [[0, 0, 0, 0, 0, 0], [12, 12, 12, 12, 12, 12], [2, 2, 2, 2, 2, 2]]]),
    "sampled": (GenerationConfig(min_frames=2, max_frames=12, seed=5),
                [[[14, 14, 13, 0, 9, 2, 5, 5, 15, 9], [4, 12, 12, 2, 7, 11, 8, 3, 3, 4],
                  [8, 13, 6, 1, 10, 2, 3, 10, 11, 14]],
                 [[3, 3, 12, 10, 3, 0, 4, 8, 13, 0, 9, 2], [6, 8, 0, 12, 11, 11, 14, 12, 7, 5, 1, 9],
                  [2, 2, 12, 12, 14, 3, 0, 15, 12, 10, 8, 10]]]),
    "filtered": (GenerationConfig(min_frames=2, max_frames=6, seed=7, sampling=SamplingConfig(
                     temperature=0.9, top_k=6, top_p=0.8, repetition_window=4, repetition_ratio=0.3)),
                 [[[10, 0, 2, 14, 2, 11], [2, 2, 0, 6, 6, 0], [5, 5, 12, 7, 14, 4]],
                  [[3, 6, 13, 14, 2, 2], [2, 12, 3, 5, 0, 9], [5, 2, 4, 4, 15, 15]]]),
}


@pytest.mark.parametrize("decoding_layout", [False, True])
@pytest.mark.parametrize("case", list(BEFORE))
def test_seeded_codes_unchanged_by_the_speed_work(model, case, decoding_layout):
    lm = copy.deepcopy(model).optimize_for_decoding() if decoding_layout else model
    cfg, expected = BEFORE[case]
    codes = generate(lm, LAYOUT, [prompt(5, 1), prompt(9, 2)], cfg)  # left-padded batch of two
    assert [c.tolist() for c in codes] == expected


@pytest.fixture(scope="module")
def lively() -> SpeechLM:
    """A random LM with large weights: unlike ``model`` (std 0.02), its tokens depend on the text."""
    torch.manual_seed(0)
    lm = SpeechLM(lm_config("tiny", LAYOUT.stream_vocab, max_seq_len=128)).eval()
    with torch.no_grad():
        for p in lm.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.3)
    return lm


def test_classifier_free_guidance_mixes_the_two_rows(lively):
    model = lively
    cond, uncond = prompt(9, 4), prompt(0, 4)  # the same prompt without its text
    # sampled, one seed: draws are made for the guided rows only, so runs compare token for token
    fixed = dict(min_frames=7, max_frames=7, sampling=SamplingConfig(temperature=1.0), seed=3)
    plain = generate(model, LAYOUT, [cond], GenerationConfig(**fixed))[0]
    # scale 1 is the conditional model: the unconditional row is not even run
    assert torch.equal(generate(model, LAYOUT, [cond], GenerationConfig(**fixed, cfg_scale=1.0), [uncond])[0], plain)
    # scale 0 is the unconditional model alone, fed the same tokens as the conditional row it runs beside
    alone = generate(model, LAYOUT, [uncond], GenerationConfig(**fixed))[0]
    assert not torch.equal(alone, plain)  # (the text matters to this random model, so the checks can fail)
    assert torch.equal(generate(model, LAYOUT, [cond], GenerationConfig(**fixed, cfg_scale=0.0), [uncond])[0], alone)
    # identical rows: l_u + s (l_c - l_u) = l_c for any scale
    same = generate(model, LAYOUT, [cond], GenerationConfig(**fixed, cfg_scale=3.0), [cond])[0]
    assert torch.equal(same, plain)
    guided = generate(model, LAYOUT, [cond], GenerationConfig(**fixed, cfg_scale=3.0), [uncond])[0]
    assert not torch.equal(guided, plain)  # and a real unconditional row changes the output
    with pytest.raises(ValueError, match="1 unconditional prompts for 2 prompts"):
        generate(model, LAYOUT, [cond, cond], GenerationConfig(**fixed, cfg_scale=2.0), [uncond])


def test_classifier_free_guidance_batched_with_padding(lively):
    model = lively
    cfg = GenerationConfig(min_frames=5, max_frames=6, sampling=SamplingConfig(temperature=0), cfg_scale=2.5)
    a, b = prompt(3, 5), prompt(10, 6)
    ua, ub = prompt(0, 5), prompt(0, 6)
    batched = generate(model, LAYOUT, [a, b], cfg, [ua, ub])
    assert torch.equal(batched[0], generate(model, LAYOUT, [a], cfg, [ua])[0])
    assert torch.equal(batched[1], generate(model, LAYOUT, [b], cfg, [ub])[0])

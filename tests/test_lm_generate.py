"""Generation over the delay-pattern layout: constraints, length guard, batching with padding, seeds."""

from __future__ import annotations

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

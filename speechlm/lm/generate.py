"""Autoregressive audio-token generation over the delay-pattern layout, with a KV cache.

Given prompts that end where the target audio starts (after ``<|audio|>``), each step samples one
token per stream under the layout's rules:

* step ``j`` of the audio carries codebook ``k`` of frame ``j - k``: streams ``k > j`` are EMPTY;
* stream 0 may emit a codebook-0 token or ``<eos>``; ``<eos>`` is forbidden before ``min_frames``
  and forced at ``max_frames`` (a length guard tied to the text, so the model can neither stop after
  one word nor babble forever);
* after ``<eos>`` at frame ``T`` the other streams run ``K - 1`` more steps to finish their delayed
  codebooks, then the item is done.

Frames are yielded as soon as all ``K`` of their codebooks exist (``stream_frames``), which is what
streaming synthesis decodes; ``generate`` collects them. Batches of prompts with different lengths
are left-padded and masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from speechlm.lm.layout import TokenLayout
from speechlm.lm.model import SpeechLM
from speechlm.lm.sampling import SamplingConfig, sample
from speechlm.text.tokenizer import EOS_ID, PAD_ID


@dataclass
class GenerationConfig:
    min_frames: int = 1
    max_frames: int = 500
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    seed: int | None = 0


def length_guard(n_text_tokens: int, frame_rate: float, min_seconds_per_token: float = 0.02,
                 max_seconds_per_token: float = 0.25, slack_seconds: float = 1.0) -> tuple[int, int]:
    """``(min_frames, max_frames)`` for a text of ``n_text_tokens`` phoneme/character tokens."""
    lo = int(n_text_tokens * min_seconds_per_token * frame_rate)
    hi = int((n_text_tokens * max_seconds_per_token + slack_seconds) * frame_rate)
    return max(1, lo), max(lo + 1, hi)


def _left_pad(prompts: list[torch.Tensor], layout: TokenLayout) -> tuple[torch.Tensor, torch.Tensor]:
    k = layout.n_codebooks
    width = max(p.shape[-1] for p in prompts)
    steps = torch.full((len(prompts), k, width), layout.empty, dtype=torch.long)
    steps[:, 0] = PAD_ID
    mask = torch.zeros(len(prompts), width, dtype=torch.bool)
    for i, p in enumerate(prompts):
        steps[i, :, width - p.shape[-1]:] = p
        mask[i, width - p.shape[-1]:] = True
    return steps, mask


@torch.inference_mode()
def stream_frames(model: SpeechLM, layout: TokenLayout, prompts: list[torch.Tensor],
                  cfg: GenerationConfig = GenerationConfig()) -> Iterator[list[torch.Tensor | None]]:
    """Yields, per step, one entry per prompt: a finished frame's codes ``[K]`` or None."""
    k, b = layout.n_codebooks, len(prompts)
    device = next(model.parameters()).device
    steps, key_mask = _left_pad(prompts, layout)
    steps, key_mask = steps.to(device), key_mask.to(device)
    total = steps.shape[-1] + cfg.max_frames + k
    if total > model.cfg.max_seq_len:
        raise ValueError(f"prompt + {cfg.max_frames} frames needs {total} steps > max_seq_len {model.cfg.max_seq_len}")
    gen = torch.Generator(device=device).manual_seed(cfg.seed) if cfg.seed is not None else None
    cache = model.new_cache(b, total)
    out = model(steps, cache=cache, key_mask=key_mask)
    end = torch.full((b,), -1, dtype=torch.long)  # frame count once <eos> was sampled
    history: list[torch.Tensor] = []  # generated steps [B, K]
    j = 0
    while True:
        tokens = torch.empty(b, k, dtype=torch.long, device=device)
        for s in range(k):
            logits = out.logits[s][:, -1].float()
            allowed = torch.zeros_like(logits, dtype=torch.bool)
            if s == 0:
                allowed[:, layout.text_vocab:] = True  # codebook 0
                allowed[:, EOS_ID] = j >= cfg.min_frames
                if j >= cfg.max_frames:  # length guard: force the end
                    allowed[:] = False
                    allowed[:, EOS_ID] = True
            else:
                allowed[:, : layout.codebook_size] = True
            hist = torch.stack([h[:, s] for h in history[-64:]], -1) if history else None
            tokens[:, s] = sample(logits.masked_fill(~allowed, -torch.inf), cfg.sampling, gen, hist)
        for s in range(1, k):  # delay pattern: nothing yet / nothing any more on this stream
            frame = j - s
            idle = (frame < 0) | ((end >= 0) & (frame >= end))
            tokens[idle.to(device), s] = layout.empty
        newly = (end < 0) & (tokens[:, 0].cpu() == EOS_ID)
        end[newly] = j
        tokens[(end >= 0).to(device), 0] = PAD_ID
        tokens[newly.to(device), 0] = EOS_ID
        history.append(tokens)
        # frame j - (k - 1) is now complete on every stream
        f = j - (k - 1)
        ready: list[torch.Tensor | None] = [None] * b
        if f >= 0:
            for i in range(b):
                if end[i] < 0 or f < end[i]:
                    ready[i] = torch.stack([history[f + s][i, s] for s in range(k)]).cpu()
                    ready[i][0] -= layout.text_vocab
        yield ready
        if (end >= 0).all() and j >= int(end.max()) + k - 2:  # last frame's last codebook is out
            return
        j += 1
        key_mask = torch.cat([key_mask, torch.ones(b, 1, dtype=torch.bool, device=device)], 1)
        out = model(tokens[:, :, None], cache=cache, key_mask=key_mask)


def generate(model: SpeechLM, layout: TokenLayout, prompts: list[torch.Tensor],
             cfg: GenerationConfig = GenerationConfig()) -> list[torch.Tensor]:
    """Codes ``[K, T_i]`` for each prompt (``[K, S_i]`` steps ending where the audio starts)."""
    frames: list[list[torch.Tensor]] = [[] for _ in prompts]
    for ready in stream_frames(model, layout, prompts, cfg):
        for i, fr in enumerate(ready):
            if fr is not None:
                frames[i].append(fr)
    return [torch.stack(f, dim=-1) if f else torch.zeros(layout.n_codebooks, 0, dtype=torch.long) for f in frames]

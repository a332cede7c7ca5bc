"""Token sampling: temperature, top-k, top-p, and VALL-E 2's repetition-aware sampling; seeded.

Repetition-aware sampling (Chen et al. 2024, VALL-E 2): decode with nucleus sampling, but when the
sampled token already fills more than ``repetition_ratio`` of the last ``repetition_window`` tokens,
sample again from the unfiltered distribution. This breaks the loops (a held vowel, a stuck
syllable) that make codec LMs babble, without the quality cost of high temperature everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SamplingConfig:
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    repetition_window: int = 0  # 0 = off; VALL-E 2 uses 10
    repetition_ratio: float = 0.1


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """``logits [B, V]`` with everything outside the top-k / nucleus set to -inf; the input is left as is."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix reaching top_p
        logits = logits.masked_fill(torch.empty_like(drop).scatter_(-1, order, drop), -torch.inf)
    return logits


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per row of ``probs [B, V]``, ``argmax(p / q)`` with ``q ~ Exp(1)`` (the Gumbel-max trick).

    The same draws and the same tokens as ``torch.multinomial(probs, 1, generator=generator)``, which
    does exactly this for one sample, minus its input check: that check reads a flag back from the
    device, a sync per stream per step on a GPU, and a few reductions on a CPU.
    """
    q = torch.empty_like(probs).exponential_(1, generator=generator)
    return (probs / q).argmax(-1)


def sample(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None,
           history: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row of ``logits [B, V]``; ``history [B, n]`` holds the tokens already generated."""
    if cfg.temperature <= 0:
        return logits.argmax(-1)
    scaled = logits.float() / cfg.temperature
    probs = filter_logits(scaled, cfg.top_k, cfg.top_p).softmax(-1)
    tokens = draw(probs, generator)
    if cfg.repetition_window > 0 and history is not None and history.shape[-1] > 0:
        recent = history[:, -cfg.repetition_window:]
        repeats = (recent == tokens[:, None]).sum(-1)
        looping = repeats > cfg.repetition_ratio * cfg.repetition_window
        if looping.any():
            fallback = draw(scaled.softmax(-1), generator)
            tokens = torch.where(looping, fallback, tokens)
    return tokens

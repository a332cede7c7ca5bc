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
    """``logits [B, V]`` with everything outside the top-k / nucleus set to -inf."""
    logits = logits.clone()
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits[logits < kth] = -torch.inf
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) > top_p  # keep the smallest prefix reaching top_p
        sorted_logits[drop] = -torch.inf
        logits = torch.full_like(logits, -torch.inf).scatter(-1, order, sorted_logits)
    return logits


def sample(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None,
           history: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row of ``logits [B, V]``; ``history [B, n]`` holds the tokens already generated."""
    if cfg.temperature <= 0:
        return logits.argmax(-1)
    scaled = logits.float() / cfg.temperature
    probs = filter_logits(scaled, cfg.top_k, cfg.top_p).softmax(-1)
    tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    if cfg.repetition_window > 0 and history is not None and history.shape[-1] > 0:
        recent = history[:, -cfg.repetition_window:]
        repeats = (recent == tokens[:, None]).sum(-1)
        looping = repeats > cfg.repetition_ratio * cfg.repetition_window
        if looping.any():
            fallback = torch.multinomial(scaled.softmax(-1), 1, generator=generator).squeeze(-1)
            tokens = torch.where(looping, fallback, tokens)
    return tokens

"""Autoregressive audio-token generation over the delay-pattern layout, with a KV cache.

Given prompts that end where the target audio starts (after ``<|audio|>``), each step samples one
token per stream under the layout's rules:

* step ``j`` of the audio carries codebook ``k`` of frame ``j - k``: streams ``k > j`` are EMPTY;
* stream 0 may emit a codebook-0 token or ``<eos>``; ``<eos>`` is forbidden before ``min_frames``
  and forced at ``max_frames`` (a length guard tied to the text, so the model can neither stop after
  one word nor babble forever);
* after ``<eos>`` at frame ``T`` the other streams run ``K - 1`` more steps to finish their delayed
  codebooks, then the item is done.

With an :class:`AlignmentGuard` (an LM trained with guided attention, ``align.py``) the guided head's
attention over the target text says how far through the text the speech is, and ``<eos>`` waits
until it has reached the end and comes once it has stayed there too long: attention-constrained
inference (Wang et al., 2024) in its simplest form, so that the length follows what was said, not
only the text length.

With ``cfg_scale`` != 1 and an unconditional prompt per prompt (the same voice prompt, no target text)
generation runs both and samples from ``l_u + cfg_scale * (l_c - l_u)`` per stream: classifier-free
guidance, as Koel-TTS (Hussain et al., 2025) applies it to a codec LM. It pushes every token away from
what the voice alone predicts and towards what the text adds: an LM trained with ``text_dropout``
(``data.py``) knows both. Both rows are fed the same sampled tokens; the guard reads the conditional row.

Frames are yielded as soon as all ``K`` of their codebooks exist (``stream_frames``), which is what
streaming synthesis decodes; ``generate`` collects them. Batches of prompts with different lengths
are left-padded and masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from speechlm.lm.layout import TEXT, TokenLayout
from speechlm.lm.model import SpeechLM
from speechlm.lm.sampling import SamplingConfig, sample
from speechlm.text.tokenizer import EOS_ID, PAD_ID


@dataclass
class AlignmentGuard:
    """``<eos>`` from the guided head's reading position (the text token it attends to most, never moving back,
    never jumping ahead by more than ``max_step``)."""

    layer: int  # the guided head (lm.json's ``guided_attention``)
    head: int = 0
    end_tokens: int = 3  # <eos> only once the position is within this many tokens of the text's end ...
    max_end_frames: int = 12  # ... and forced after this many frames there (12 = 0.48 s at 25 Hz)
    # the position advances at most this many tokens a frame: speech reads ~0.5 a frame at 25 Hz, so a
    # larger jump is the head glancing ahead, and must not let <eos> in early
    max_step: int = 2


@dataclass
class GenerationConfig:
    min_frames: int = 1
    max_frames: int = 500
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    seed: int | None = 0
    alignment: AlignmentGuard | None = None
    trace: list[list[int]] | None = None  # with ``alignment``: filled with each prompt's reading positions
    cfg_scale: float = 1.0  # classifier-free guidance; used when unconditional prompts are given


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


def _stream_bias(layout: TokenLayout, vocab: list[int], device) -> dict[str, torch.Tensor]:
    """The per-stream rules as additive logit masks (0 = allowed, -inf = not), built once per call."""
    def bias(size: int, *allowed: slice | int) -> torch.Tensor:
        b = torch.full((size,), -torch.inf, device=device)
        for a in allowed:
            b[a] = 0.0
        return b

    codebook0 = slice(layout.text_vocab, None)
    masks = {"audio0": bias(vocab[0], codebook0), "audio0_or_eos": bias(vocab[0], codebook0, EOS_ID),
             "eos": bias(vocab[0], EOS_ID)}
    if len(vocab) > 1:  # streams 1..K-1: their codebook, never EMPTY (the delay pattern places those)
        masks["audio"] = bias(vocab[1], slice(0, layout.codebook_size))
    return masks


@torch.inference_mode()
def stream_frames(model: SpeechLM, layout: TokenLayout, prompts: list[torch.Tensor],
                  cfg: GenerationConfig = GenerationConfig(), uncond: list[torch.Tensor] | None = None
                  ) -> Iterator[list[torch.Tensor | None]]:
    """Yields, per step, one entry per prompt: a finished frame's codes ``[K]`` or None.

    ``uncond``: one unconditional prompt per prompt, for classifier-free guidance (``cfg.cfg_scale``).
    Exactly ``max_frames + K - 1`` steps when ``min_frames == max_frames`` (no early ``<eos>``).
    """
    k, b = layout.n_codebooks, len(prompts)
    guided = uncond is not None and cfg.cfg_scale != 1.0
    if uncond is not None and len(uncond) != b:
        raise ValueError(f"{len(uncond)} unconditional prompts for {b} prompts")
    device = next(model.parameters()).device
    steps, key_mask = _left_pad(prompts + uncond if guided else prompts, layout)  # rows b.. : unconditional
    width = steps.shape[-1]
    total = width + cfg.max_frames + k
    if total > model.cfg.max_seq_len:
        raise ValueError(f"prompt + {cfg.max_frames} frames needs {total} steps > max_seq_len {model.cfg.max_seq_len}")
    gen = torch.Generator(device=device).manual_seed(cfg.seed) if cfg.seed is not None else None
    rows = steps.shape[0]
    cache = model.new_cache(rows, total)
    padded = not bool(key_mask.all())  # no padding: no key mask, so SDPA runs unmasked
    if padded:  # every generated step is a real key; the mask is sliced per step, never regrown
        key_mask = torch.cat([key_mask, torch.ones(rows, total - width, dtype=torch.bool)], 1).to(device)
    out = model(steps.to(device), cache=cache, key_mask=key_mask[:, :width] if padded else None, last_only=True)
    guard = cfg.alignment
    if guard is not None:
        # each prompt ends "<|text|> text <|audio|>": the target text is after its last <|text|>
        text_start = [int((row == TEXT).nonzero().max()) + 1 if (row == TEXT).any() else width - 1
                      for row in steps[:b, 0]]
        reading, at_end = [-1] * b, [0] * b
        if cfg.trace is not None:
            cfg.trace[:] = [[] for _ in range(b)]
    bias = _stream_bias(layout, [lg.shape[-1] for lg in out.logits], device)
    window = cfg.sampling.repetition_window
    history = torch.empty(b, k, total - width, dtype=torch.long, device=device)  # generated steps
    end = [-1] * b  # frame count once <eos> was sampled (plain ints: this bookkeeping is per step)
    j = 0
    while True:
        tokens = history[:, :, j]
        eos_bias = None
        if guard is not None and j > 0:
            eos_bias = _alignment_bias(out.attn[0][:b, guard.head, -1], text_start, width - 1, reading, at_end,
                                       guard, bias, cfg.trace)
        logits = [lg[:, -1].float() for lg in out.logits]
        if guided:
            logits = [lg[b:] + cfg.cfg_scale * (lg[:b] - lg[b:]) for lg in logits]
        for s in range(k):
            if s > 0:
                allowed = bias["audio"]
            elif j >= cfg.max_frames:  # length guard: force the end
                allowed = bias["eos"]
            elif j < cfg.min_frames:
                allowed = bias["audio0"]
            else:
                allowed = eos_bias if eos_bias is not None else bias["audio0_or_eos"]
            hist = history[:, s, max(0, j - window): j] if window > 0 else None
            tokens[:, s] = sample(logits[s] + allowed, cfg.sampling, gen, hist)
        for s in range(1, k):  # delay pattern: nothing yet / nothing any more on this stream
            if j < s:
                tokens[:, s] = layout.empty
            else:
                for i in range(b):
                    if 0 <= end[i] <= j - s:
                        tokens[i, s] = layout.empty
        first = tokens[:, 0].tolist()
        for i in range(b):
            if end[i] < 0 and first[i] == EOS_ID:
                end[i] = j
            elif end[i] >= 0:  # <eos> once, then <pad> while the delayed streams finish
                tokens[i, 0] = PAD_ID
        # frame j - (k - 1) is now complete on every stream
        f = j - (k - 1)
        ready: list[torch.Tensor | None] = [None] * b
        if f >= 0:
            # stream i of frame f sits at step f + i: the diagonal of the last K steps, [B, K]
            codes = history[:, :, f: f + k].diagonal(dim1=1, dim2=2).to("cpu", copy=True)
            codes[:, 0] -= layout.text_vocab
            ready = [codes[i].clone() if end[i] < 0 or f < end[i] else None for i in range(b)]
        yield ready
        if min(end) >= 0 and j >= max(end) + k - 2:  # last frame's last codebook is out
            return
        j += 1
        fed = torch.cat([tokens, tokens]) if guided else tokens
        out = model(fed[:, :, None], cache=cache, key_mask=key_mask[:, : width + j] if padded else None,
                    attn_probs={guard.layer: guard.head + 1} if guard is not None else None)


def _alignment_bias(probs: torch.Tensor, text_start: list[int], text_end: int, reading: list[int],
                    at_end: list[int], guard: AlignmentGuard, bias: dict[str, torch.Tensor],
                    trace: list[list[int]] | None) -> torch.Tensor:
    """Stream 0's logit mask ``[B, V]`` for this step from the guided head's attention ``probs [B, keys]``.

    Updates ``reading`` (position in the text, monotonic) and ``at_end`` (frames spent near the end).
    """
    rows = []
    for i in range(probs.shape[0]):
        n = text_end - text_start[i]
        if n > 0:
            looked = int(probs[i, text_start[i]: text_end].argmax())
            reading[i] = max(reading[i], min(looked, reading[i] + guard.max_step))
        near_end = n <= 0 or reading[i] >= n - guard.end_tokens
        at_end[i] += int(near_end)
        if trace is not None:
            trace[i].append(reading[i])
        if not near_end:
            rows.append(bias["audio0"])
        elif at_end[i] > guard.max_end_frames:
            rows.append(bias["eos"])
        else:
            rows.append(bias["audio0_or_eos"])
    return torch.stack(rows)


def generate(model: SpeechLM, layout: TokenLayout, prompts: list[torch.Tensor],
             cfg: GenerationConfig = GenerationConfig(), uncond: list[torch.Tensor] | None = None
             ) -> list[torch.Tensor]:
    """Codes ``[K, T_i]`` for each prompt (``[K, S_i]`` steps ending where the audio starts); ``uncond`` as
    in :func:`stream_frames`."""
    frames: list[list[torch.Tensor]] = [[] for _ in prompts]
    for ready in stream_frames(model, layout, prompts, cfg, uncond):
        for i, fr in enumerate(ready):
            if fr is not None:
                frames[i].append(fr)
    return [torch.stack(f, dim=-1) if f else torch.zeros(layout.n_codebooks, 0, dtype=torch.long) for f in frames]

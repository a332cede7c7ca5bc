"""Guided attention: a diagonal prior that teaches chosen attention heads to read text in step with audio.

A decoder-only TTS model has to find out by itself which phoneme each audio frame is saying. Small models
trained briefly do not (``eval/lm_text_dependence.py``: the 11,700-step LM bundled before lost only 0.03 nats per
frame when given another sentence's text), and then speak babble in the right voice. Tacotron-era models
had the same trouble with their encoder-decoder attention; DC-TTS (Tachibana et al., 2017) cured it with
a guided-attention loss that penalizes attention far from the diagonal, since speech reads text roughly
at an even pace. T5-TTS (Neekhara et al., 2024) adds the same kind of prior to an LM's cross-attention.

Here the prior is applied to a few heads of a decoder-only LM's self-attention: for ``tts`` the queries of
the target audio frames over the keys of the target text, for ``asr`` the transcript's queries over the
audio frames. With ``G[t, n] = exp(-(n/N - t/T)^2 / (2 width^2))`` the loss for a query ``t`` is
``-log sum_n A[t, n] G[t, n]``: the head must put its (whole, full-softmax) attention on the text, near
where an even pace says frame ``t`` is. ``width`` (0.2 in DC-TTS, in units of the whole span) leaves
room for the uneven pace of real speech. The heads stay ordinary heads (same weights, same KV cache);
the export records which ones were guided (``lm.json``'s ``guided_attention``) so that generation can
follow one of them to decide when the text has been read (``generate.AlignmentGuard``).
"""

from __future__ import annotations

from typing import TypedDict

import torch

from speechlm.lm.layout import ASR, AUDIO, TEXT, TTS, TokenLayout
from speechlm.text.tokenizer import EOS_ID


class GuidedAttention(TypedDict, total=False):
    """``model.guided_attention`` in YAML (a TypedDict so checkpoints store it as a plain dict)."""

    layers: list[int]  # which layers get guided heads
    heads: int  # the first ``heads`` heads of each of those layers
    weight: float  # the loss is added to the LM's cross-entropy with this weight
    width: float  # of the diagonal prior, as a fraction of the span


def attn_probs_request(settings: GuidedAttention) -> dict[int, int]:
    """``SpeechLM.forward``'s ``attn_probs`` argument for these settings."""
    return {int(layer): int(settings.get("heads", 1)) for layer in settings.get("layers", [])}


def alignment_spans(inputs: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Per row, ``(q0, q1, k0, k1)``: query positions ``[q0, q1)`` should attend to keys ``[k0, k1)``.

    ``inputs [B, K, S]`` are the LM's inputs (``LMDataset`` items, batched). ``tts`` rows: the steps that
    predict the target audio's codebook-0 frames (from its ``<|audio|>`` tag on) over the target text (after
    the last ``<|text|>``); ``asr`` rows: the steps that predict the transcript over the audio's codebook-0
    frames. Other rows get ``(0, 0, 0, 0)``. Read from stream 0 alone, so any batch works.
    """
    out = torch.zeros(inputs.shape[0], 4, dtype=torch.long)
    for b, row in enumerate(inputs[:, 0].cpu()):
        task = int(row[1]) if row.numel() > 1 else -1
        text = (row == TEXT).nonzero().flatten()
        audio = (row == AUDIO).nonzero().flatten()
        if task == TTS and len(text) and len(audio) and audio[-1] > text[-1]:
            k0, tag = int(text[-1]) + 1, int(audio[-1])
            frames = int(layout.is_audio_token(row[tag + 1:]).sum())  # the inputs hold all but the last
            out[b] = torch.tensor([tag, tag + frames + 1, k0, tag])
        elif task == ASR and len(text) and len(audio):
            a0, tag = int(audio[0]) + 1, int(text[-1])
            frames = int(layout.is_audio_token(row[a0:tag]).sum())
            words = int((row[tag + 1:] > EOS_ID).sum())  # the transcript's ids; padding and specials are below
            out[b] = torch.tensor([tag, tag + words + 1, a0, a0 + frames])
    return out


def diagonal_prior(n_queries: int, n_keys: int, width: float, device=None) -> torch.Tensor:
    """``G [n_queries, n_keys]``: 1 on the even-pace diagonal, falling off as a Gaussian of ``width``."""
    t = (torch.arange(n_queries, device=device, dtype=torch.float32) + 0.5) / n_queries
    n = (torch.arange(n_keys, device=device, dtype=torch.float32) + 0.5) / n_keys
    return torch.exp(-((n[None, :] - t[:, None]) ** 2) / (2 * width**2))


def guided_attention_loss(probs: list[torch.Tensor], spans: torch.Tensor, width: float = 0.2) -> torch.Tensor | None:
    """Mean of ``-log sum_n A[t, n] G[t, n]`` over the spans' queries and the given heads.

    ``probs``: attention probabilities ``[B, H, S, S]`` of the guided heads, one tensor per layer
    (``SpeechLM.forward(attn_probs=...)``); ``spans [B, 4]`` from :func:`alignment_spans`. None when no
    row has a span (a batch of ``continue`` and ``chat`` items).
    """
    losses = []
    for b, (q0, q1, k0, k1) in enumerate(spans.tolist()):
        if q1 <= q0 or k1 <= k0:
            continue
        prior = diagonal_prior(q1 - q0, k1 - k0, width, probs[0].device)
        for p in probs:
            mass = (p[b, :, q0:q1, k0:k1].float() * prior).sum(-1)  # [H, Tq]
            losses.append(-torch.log(mass.clamp_min(1e-6)).mean())
    return torch.stack(losses).mean() if losses else None

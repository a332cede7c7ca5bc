"""Best of N: rank sampled candidates by how well the LM's own ``asr`` task reads the text back from them.

Sampling a codec LM gives a different take on every draw, and some takes slur or drop words. TorToiSe
(Betker, 2023) draws many and keeps the ones its contrastive text-speech model (CLVP) scores best; here
the judge is the same LM's ``asr`` task, which it learns alongside ``tts`` (``data.py``): a candidate's
score is the mean negative log-likelihood per token of the target phonemes (and ``<eos>``) given its
codes, ``asr`` prompt and all, in one teacher-forced pass for the whole batch of candidates. Lower is
more intelligible to the model. It is not the evaluation's recognizer (pocketsphinx): the two only
agree as far as both hear the words.
"""

from __future__ import annotations

import torch

from speechlm.lm.data import SequenceBuilder, Utterance, collate
from speechlm.lm.layout import TokenLayout
from speechlm.lm.model import SpeechLM


@torch.inference_mode()
def transcript_nll(model: SpeechLM, layout: TokenLayout, codes: list[torch.Tensor], texts: list[list[int]],
                   language: str = "en") -> torch.Tensor:
    """``[N]`` mean NLL per token of ``texts[i]`` (phoneme ids) given ``codes[i] [K, T_i]``, by the ``asr`` task.

    A candidate without frames scores ``inf``; so does one whose sequence would not fit the context.
    """
    if len(codes) != len(texts):
        raise ValueError(f"{len(codes)} candidates for {len(texts)} texts")
    builder, device = SequenceBuilder(layout), next(model.parameters()).device
    scores = torch.full((len(codes),), torch.inf)
    items, rows = [], []
    for i, (c, text) in enumerate(zip(codes, texts)):
        if c.shape[-1] == 0:
            continue
        seq, mask = builder.build("asr", Utterance("", "", language, list(text), c.cpu()))
        if seq.shape[-1] - 1 > model.cfg.max_seq_len:
            continue
        items.append((seq[:, :-1], seq[:, 1:], mask[:, 1:], 0))
        rows.append(i)
    if items:
        inputs, targets, mask, _ = collate(items, layout)
        out = model(inputs.to(device), targets.to(device), mask.to(device))
        scores[rows] = (out.row_loss / out.row_tokens.clamp(min=1)).float().cpu()
    return scores

"""Voice prompts from reference audio: read and cap the clip, and transcribe it with the LM's own ``asr`` task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from speechlm.data.audio import AudioError
from speechlm.lm.layout import TokenLayout
from speechlm.lm.model import SpeechLM
from speechlm.text.tokenizer import EOS_ID, SYMBOL_OFFSET

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au", ".w64", ".caf")


def read_reference(path: str | Path) -> tuple[np.ndarray, int]:
    """``(audio [C, L] float32, sample_rate)`` of a reference clip; an AudioError names the file otherwise."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "reference audio does not exist" if not path.exists() else "not a file")
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(path, f"cannot read the reference audio: {e}") from None
    if wav.shape[0] == 0:
        raise AudioError(path, "reference audio is empty (0 samples)")
    if not np.isfinite(wav).all():
        raise AudioError(path, "reference audio contains NaN or infinite samples")
    return np.ascontiguousarray(wav.T), sr


@torch.inference_mode()
def generate_text(model: SpeechLM, layout: TokenLayout, prompt: torch.Tensor, max_tokens: int) -> list[int]:
    """Greedy text tokens on stream 0 after ``prompt [K, S]`` (an ``asr`` prompt) until ``<eos>``.

    Only symbol ids and ``<eos>`` may be chosen (no tags, no audio); the other streams carry EMPTY,
    as in the training sequences (``SequenceBuilder.build("asr", ...)``).
    """
    device = next(model.parameters()).device
    max_tokens = min(max_tokens, model.cfg.max_seq_len - prompt.shape[-1])
    if max_tokens <= 0:
        return []
    allowed = torch.zeros(layout.stream_vocab[0], dtype=torch.bool, device=device)
    allowed[SYMBOL_OFFSET: layout.text_vocab] = True
    allowed[EOS_ID] = True
    cache = model.new_cache(1, prompt.shape[-1] + max_tokens)
    out = model(prompt[None].to(device), cache=cache)
    ids: list[int] = []
    for _ in range(max_tokens):
        token = int(out.logits[0][0, -1].float().masked_fill(~allowed, -torch.inf).argmax())
        if token == EOS_ID:
            break
        ids.append(token)
        if len(ids) == max_tokens:
            break
        out = model(layout.text_steps([token])[None].to(device), cache=cache)
    return ids

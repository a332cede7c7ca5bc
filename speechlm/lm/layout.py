"""The LM's token layout, written down once: id ranges, markup tags, and the codebook delay pattern.

The LM reads and writes ``K`` parallel streams, one per codebook (MusicGen's layout), so a frame of
``K`` codes costs one sequence step whatever ``K`` is: 4 for our codec, 2-32 for EnCodec. Per step
the input embedding is the sum of the ``K`` stream embeddings and ``K`` heads predict the next step.

Stream 0 carries text, markup tags and codebook 0; streams ``1..K-1`` carry codebooks ``1..K-1``.
Ids per stream::

    stream 0:   [0, text_vocab)                          text tokenizer ids (specials, tags, symbols)
                [text_vocab, text_vocab + codebook_size)  audio codebook 0
    stream k>0: [0, codebook_size)                       audio codebook k
                codebook_size                            EMPTY (nothing at this step)

Delay pattern: codebook ``k`` of frame ``t`` sits at step ``t + k``. Predicting step ``s`` then
means predicting codebook 0 of frame ``s`` given all codebooks of earlier frames, codebook 1 of frame
``s - 1`` given codebook 0 of that frame, and so on: coarse before fine without ``K`` times longer
sequences. An audio segment of ``T`` frames takes ``T + K - 1`` steps; the steps a stream has no
token for hold EMPTY (streams > 0) or ``<pad>`` (stream 0).

A sequence reads, for text-to-speech with a voice prompt::

    <bos> <|tts|> <|lang:en|> <|voice_prompt|> [prompt text] <|audio|> [prompt audio]
          <|text|> [target text] <|audio|> [target audio] <eos>

Loss is taken only on target spans (``target_mask``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from speechlm.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, TAG_OFFSET, TAG_TOKENS


def tag_id(name: str) -> int:
    token = name if name.startswith("<|") else f"<|{name}|>"
    return TAG_OFFSET + TAG_TOKENS.index(token)


TTS, CONTINUE, ASR, CHAT = tag_id("tts"), tag_id("continue"), tag_id("asr"), tag_id("chat")
TEXT, AUDIO, SPEAKER, VOICE_PROMPT = tag_id("text"), tag_id("audio"), tag_id("speaker"), tag_id("voice_prompt")


@dataclass(frozen=True)
class TokenLayout:
    text_vocab: int  # TextTokenizer.vocab_size
    n_codebooks: int
    codebook_size: int

    @property
    def stream_vocab(self) -> list[int]:
        """Embedding / head size of each stream."""
        return [self.text_vocab + self.codebook_size] + [self.codebook_size + 1] * (self.n_codebooks - 1)

    @property
    def empty(self) -> int:
        return self.codebook_size

    def text_steps(self, ids: list[int] | torch.Tensor) -> torch.Tensor:
        """Text/tag ids ``[n]`` -> steps ``[K, n]`` (stream 0 = ids, others EMPTY)."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        out = torch.full((self.n_codebooks, ids.numel()), self.empty, dtype=torch.long)
        out[0] = ids
        return out

    def audio_steps(self, codes: torch.Tensor, eos: bool = False) -> torch.Tensor:
        """Codes ``[K, T]`` -> delayed steps ``[K, T + K - 1]``.

        With ``eos`` the segment ends the way generation ends it: ``<eos>`` on stream 0 right after
        the last codebook-0 token (step ``T``), while the delayed streams finish their last frame.
        """
        k, t = codes.shape
        if k != self.n_codebooks:
            raise ValueError(f"codes have {k} codebooks, the layout {self.n_codebooks}")
        out = torch.full((k, t + max(k - 1, int(eos))), self.empty, dtype=torch.long)
        out[0].fill_(PAD_ID)
        for i in range(k):
            out[i, i: i + t] = codes[i] + (self.text_vocab if i == 0 else 0)
        if eos:
            out[0, t] = EOS_ID
        return out

    def codes_from_steps(self, steps: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`audio_steps`: delayed steps ``[K, T + K - 1]`` -> codes ``[K, T]``."""
        k = self.n_codebooks
        t = steps.shape[-1] - (k - 1)
        if k == 1 and steps.shape[-1] and int(steps[0, -1]) == EOS_ID:
            t -= 1
        codes = torch.stack([steps[i, i: i + t] for i in range(k)])
        codes[0] -= self.text_vocab
        return codes

    def is_audio_token(self, stream0: torch.Tensor) -> torch.Tensor:
        return stream0 >= self.text_vocab


SPECIALS = {"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID}

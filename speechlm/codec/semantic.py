"""Phoneme supervision of the codec's first level, so that codebook 0 carries what is said.

A codec trained on reconstruction alone spends its coarsest level on what costs the most spectral
error (loudness, spectral tilt, pitch), and the phonetic content ends up spread thinly over all
levels. An LM over such tokens gets little from the text (``eval/lm_text_dependence.py``: the bundled LM
has a head that reads the text in step with the audio, yet another sentence's text costs it only 0.03
nats per frame). SpeechTokenizer (Zhang et al., 2024) and Mimi (Défossez et al., 2024) distill a
self-supervised speech model into the first level for this reason. Our corpus comes with phoneme
transcripts, so the first level is supervised directly: a small head reads the level-0 quantized
latent and is trained with CTC against the utterance's phonemes (stress marks, word boundaries and
punctuation dropped: they are not segments of their own). The head is training-only; the codec and
its tokens keep their format.

Utterances, not the 1-second crops of reconstruction training, since CTC needs the whole transcript:
``PhonemeUtterances`` reads phonemized manifests (``speechlm data text``), ``collate_utterances`` pads.
"""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from speechlm.data.manifest import iter_manifest
from speechlm.errors import SpeechLMError
from speechlm.text.tokenizer import PAD_ID, SYMBOL_OFFSET, UNK_ID, TextTokenizer

BLANK = PAD_ID  # never a phoneme: CTC's blank
NOT_SEGMENTS = frozenset(" !,.?;:-ˈˌː")  # symbols that are no sound of their own


def ctc_targets(tokenizer: TextTokenizer, phonemes: str) -> list[int]:
    """The phoneme ids CTC is trained on: segment symbols only, no unknowns."""
    keep = {i for s, i in zip(tokenizer.symbols, range(SYMBOL_OFFSET, tokenizer.vocab_size)) if s not in NOT_SEGMENTS}
    return [i for i in tokenizer.encode(phonemes) if i in keep and i != UNK_ID]


class PhonemeUtterances(Dataset):
    """Whole utterances ``(wav [L] at sample_rate, phoneme ids)`` from phonemized manifests.

    Utterances longer than ``max_seconds``, or with more phonemes than frames at ``frame_rate`` (CTC
    needs at least one frame per label), are left out.
    """

    def __init__(self, manifests: list[str], tokenizer: str, sample_rate: int, frame_rate: float,
                 max_seconds: float = 8.0):
        self.tokenizer = TextTokenizer.load(tokenizer)
        self.sample_rate = sample_rate
        self.items = []
        for m in manifests:
            for cut in iter_manifest(m):
                phonemes = (cut.supervisions[0].custom or {}).get("phonemes") if cut.supervisions else None
                if not phonemes or cut.duration > max_seconds:
                    continue
                ids = ctc_targets(self.tokenizer, phonemes)
                if not ids or len(ids) > int(cut.duration * frame_rate):
                    continue
                rec = cut.recording
                self.items.append((rec.sources[0].source, rec.sampling_rate, int(cut.start * rec.sampling_rate),
                                   int(cut.duration * rec.sampling_rate), ids))
        if not self.items:
            raise SpeechLMError(f"no utterance with phonemes (<= {max_seconds} s) in {manifests}; phoneme "
                                "supervision needs manifests from `speechlm data text` (DIR/text/cuts_*.jsonl.gz)")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, list[int]]:
        path, sr, offset, length, ids = self.items[i]
        wav, _ = sf.read(path, start=offset, frames=length, dtype="float32", always_2d=True)
        wav = torch.from_numpy(np.ascontiguousarray(wav.mean(axis=1)))
        if sr != self.sample_rate:
            import torchaudio.functional as AF

            wav = AF.resample(wav, sr, self.sample_rate)
        return wav.clamp(-1, 1), ids


def collate_utterances(batch: list[tuple[torch.Tensor, list[int]]], samples_per_frame: int) -> dict[str, torch.Tensor]:
    """Right-padded ``wav [B, L]`` (L a multiple of ``samples_per_frame``), ``frames [B]``, and CTC targets."""
    frames = torch.tensor([-(-len(w) // samples_per_frame) for w, _ in batch])
    wav = torch.zeros(len(batch), int(frames.max()) * samples_per_frame)
    for b, (w, _) in enumerate(batch):
        wav[b, : len(w)] = w
    return {"wav": wav, "frames": frames, "targets": torch.tensor([i for _, ids in batch for i in ids]),
            "target_lengths": torch.tensor([len(ids) for _, ids in batch])}


class PhonemeHead(nn.Module):
    """Level-0 quantized latent ``[B, T, D]`` -> phoneme log-probabilities ``[B, T, V]``.

    Small on purpose (one conv of 5 frames, 200 ms, then a linear layer): the phonemes must be easy to
    read from the tokens, not recoverable by a deep network.
    """

    def __init__(self, latent_dim: int, vocab: int, hidden: int = 256):
        super().__init__()
        self.conv = nn.Conv1d(latent_dim, hidden, 5, padding=2)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, q0: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.conv(q0.transpose(1, 2))).transpose(1, 2)
        return self.out(h).float().log_softmax(-1)


def phoneme_ctc_loss(head: PhonemeHead, tokenizer: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """CTC loss of ``head`` on the first residual level of ``tokenizer`` (a ``SpeechTokenizer``)."""
    z = tokenizer.encoder(tokenizer.mel(batch["wav"]))  # [B, D, T]
    with torch.autocast(z.device.type, enabled=False):
        q0, _ = tokenizer.quantizer.levels[0](z.float().transpose(1, 2))  # what codebook 0 holds
    logp = head(q0)
    frames = batch["frames"].clamp(max=logp.shape[1])
    return F.ctc_loss(logp.transpose(0, 1), batch["targets"], frames, batch["target_lengths"], blank=BLANK,
                      reduction="mean", zero_infinity=True)


def greedy_phonemes(head: PhonemeHead, tokenizer: nn.Module, wav: torch.Tensor) -> list[list[int]]:
    """Best-path CTC decoding of codebook 0's phonemes for ``wav [B, L]``."""
    z = tokenizer.encoder(tokenizer.mel(wav))
    q0, _ = tokenizer.quantizer.levels[0](z.float().transpose(1, 2))
    best = head(q0).argmax(-1)
    out = []
    for row in best.tolist():
        ids = [t for j, t in enumerate(row) if t != BLANK and (j == 0 or row[j - 1] != t)]
        out.append(ids)
    return out

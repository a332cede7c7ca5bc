"""Task-marked training sequences from phonemized manifests and token shards.

Every example is one utterance (its phoneme ids and codec frames); a task is drawn per example and
epoch from a seeded generator, so a resumed or distributed run sees exactly the same sequences:

* ``tts``:      <bos> <|tts|> <|lang|> [<|voice_prompt|> prompt text <|audio|> prompt audio]
                <|text|> text <|audio|> **audio <eos>**
* ``asr``:      <bos> <|asr|> <|lang|> <|audio|> audio <|text|> **text <eos>**
* ``continue``: <bos> <|continue|> <|lang|> <|audio|> audio prefix **rest of the audio <eos>**
* ``chat``:     <bos> <|chat|> <|lang|> <|user|> question <|assistant|> **reply <eos>**

``chat`` examples are text turns (:mod:`speechlm.corpus.dialogues`), not utterances; a voice chat
reads the question with ``asr`` first and speaks the reply with ``tts``.

Loss is taken on the bold spans only (``loss_mask``). The voice prompt is another utterance of the
same speaker: zero-shot prompting is learned from data, the way VALL-E learns it.

With ``text_dropout`` a share of the ``tts`` items lose their target text (``<|text|> <|audio|>``, the
voice prompt kept): the model also learns speech in that voice saying nothing in particular, which
classifier-free guidance at inference pushes away from (``generate.py``; Koel-TTS, Hussain et al., 2025).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from speechlm.codec.tokens import load_tokens
from speechlm.data.manifest import iter_manifest
from speechlm.errors import SpeechLMError
from speechlm.lm.layout import ASR, AUDIO, CHAT, CONTINUE, TEXT, TTS, VOICE_PROMPT, TokenLayout, tag_id
from speechlm.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, TextTokenizer

TASKS = ("tts", "asr", "continue", "chat")
UTTERANCE_TASKS = TASKS[:3]  # drawn per utterance by ``task_mix``; chat items are chat turns
USER, ASSISTANT = tag_id("user"), tag_id("assistant")


@dataclass
class Utterance:
    id: str
    speaker: str
    language: str
    text: list[int]  # phoneme ids (no specials)
    codes: torch.Tensor  # [K, T]


@dataclass
class ChatTurn:
    id: str
    language: str
    user: list[int]  # phoneme ids of the question
    reply: list[int]  # phoneme ids of the answer


def load_chat(path: str | Path, tokenizer: TextTokenizer, language: str = "en") -> list[ChatTurn]:
    """Chat turns from ``speechlm data chat`` (``<dir>/text/chat_{split}.jsonl``)."""
    from speechlm.data.chat_stage import load_chat_turns

    return [ChatTurn(r["id"], language, tokenizer.encode(r["user_phonemes"]), tokenizer.encode(r["reply_phonemes"]))
            for r in load_chat_turns(path)]


def load_utterances(manifest: str | Path, token_dir: str | Path, split: str, tokenizer: TextTokenizer
                    ) -> list[Utterance]:
    """Join a phonemized manifest (``text`` stage) with the token shards of the same split."""
    shards = sorted(Path(token_dir).glob(f"{split}-*.safetensors"))
    if not shards:
        raise SpeechLMError(f"{token_dir}: no {split}-*.safetensors token shards (run speechlm data tokenize)")
    codes: dict[str, torch.Tensor] = {}
    for shard in shards:
        tf = load_tokens(shard)
        codes.update(zip(tf.ids, tf.codes))
    out, missing = [], 0
    for cut in iter_manifest(manifest):
        sup = cut.supervisions[0]
        phonemes = (sup.custom or {}).get("phonemes")
        if cut.id not in codes or not phonemes:
            missing += 1
            continue
        out.append(Utterance(cut.id, sup.speaker or "", sup.language or "en", tokenizer.encode(phonemes),
                             codes[cut.id]))
    if not out:
        raise SpeechLMError(f"{manifest}: no utterance has both phonemes and tokens in {token_dir}")
    if missing:
        print(f"[lm data] {missing} utterance(s) of {manifest} lack tokens or phonemes; skipped")
    return out


def _lang(language: str) -> int:
    try:
        return tag_id(f"lang:{language.split('-')[0]}")
    except ValueError:
        return tag_id("lang:en")


class SequenceBuilder:
    """Builds ``(steps [K, S], loss_mask [K, S])`` for one task; see the module docstring."""

    def __init__(self, layout: TokenLayout):
        self.layout = layout

    def _audio_mask(self, steps: torch.Tensor) -> torch.Tensor:
        # Predict real tokens only: not the EMPTY placeholders the delay pattern forces.
        mask = steps != self.layout.empty
        mask[0] = steps[0] != PAD_ID
        return mask

    def tts_prompt(self, text: list[int], language: str, voice_text: list[int] | None = None,
                   voice_codes: torch.Tensor | None = None) -> torch.Tensor:
        """Steps ``[K, S]`` of a ``tts`` sequence up to where the target audio starts (after ``<|audio|>``).

        ``voice_text`` (ids) and ``voice_codes [K, T]`` make a zero-shot voice prompt: another utterance
        of the wanted speaker. Training (:meth:`build`) and inference build prompts here, so they match.
        """
        L = self.layout
        head = [BOS_ID, TTS, _lang(language)]
        parts = []
        if voice_codes is not None:
            parts += [L.text_steps(head + [VOICE_PROMPT, *(voice_text or []), AUDIO]), L.audio_steps(voice_codes)]
            head = []
        parts.append(L.text_steps(head + [TEXT, *text, AUDIO]))
        return torch.cat(parts, dim=-1)

    def asr_prompt(self, codes: torch.Tensor, language: str) -> torch.Tensor:
        """Steps ``[K, S]`` of an ``asr`` sequence up to where the transcript starts (after ``<|text|>``)."""
        L = self.layout
        return torch.cat([L.text_steps([BOS_ID, ASR, _lang(language), AUDIO]), L.audio_steps(codes),
                          L.text_steps([TEXT])], dim=-1)

    def chat_prompt(self, user: list[int], language: str) -> torch.Tensor:
        """Steps ``[K, S]`` of a ``chat`` sequence up to where the reply starts (after ``<|assistant|>``)."""
        return self.layout.text_steps([BOS_ID, CHAT, _lang(language), USER, *user, ASSISTANT])

    def build_chat(self, turn: ChatTurn) -> tuple[torch.Tensor, torch.Tensor]:
        given, target = self.chat_prompt(turn.user, turn.language), self.layout.text_steps([*turn.reply, EOS_ID])
        mask = torch.cat([torch.zeros_like(given, dtype=torch.bool), self._audio_mask(target)], dim=-1)
        return torch.cat([given, target], dim=-1), mask

    def build(self, task: str, utt: Utterance, prompt: Utterance | None = None,
              prefix_frames: int = 0, drop_text: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``drop_text``: a ``tts`` item without its target text (classifier-free guidance's unconditional case)."""
        L = self.layout
        if task == "tts":
            given = self.tts_prompt([] if drop_text else utt.text, utt.language, prompt.text if prompt else None,
                                    prompt.codes if prompt else None)
            target = L.audio_steps(utt.codes, eos=True)
        elif task == "asr":
            given, target = self.asr_prompt(utt.codes, utt.language), L.text_steps([*utt.text, EOS_ID])
        elif task == "continue":
            head = [BOS_ID, CONTINUE, _lang(utt.language)]
            steps = L.audio_steps(utt.codes, eos=True)
            target = self._audio_mask(steps)
            for k in range(L.n_codebooks):  # the prefix frames are given, not predicted
                target[k, : prefix_frames + k] = False
            seq = torch.cat([L.text_steps(head + [AUDIO]), steps], dim=-1)
            mask = torch.cat([torch.zeros(L.n_codebooks, len(head) + 1, dtype=torch.bool), target], dim=-1)
            return seq, mask
        else:
            raise ValueError(f"unknown utterance task {task!r}; known: {UTTERANCE_TASKS} (chat: build_chat)")
        mask = torch.cat([torch.zeros_like(given, dtype=torch.bool), self._audio_mask(target)], dim=-1)
        return torch.cat([given, target], dim=-1), mask


class LMDataset(Dataset):
    """Item ``i`` -> ``(inputs [K, S-1], targets [K, S-1], loss_mask [K, S-1], task index)``.

    Items ``0 .. len(utterances)-1`` are utterances (task drawn by ``task_mix``), the rest ``chat`` turns.
    """

    def __init__(self, utterances: list[Utterance], layout: TokenLayout, task_mix: dict[str, float] | None = None,
                 prompt_prob: float = 0.8, seed: int = 0, chat: list[ChatTurn] | None = None,
                 text_dropout: float = 0.0):
        if not 0.0 <= text_dropout < 1.0:
            raise SpeechLMError(f"text_dropout must be in [0, 1), got {text_dropout}")
        self.utts, self.layout, self.seed, self.text_dropout = utterances, layout, seed, text_dropout
        self.chat = chat or []
        self.task_mix = task_mix or {"tts": 0.7, "asr": 0.15, "continue": 0.15}
        unknown = set(self.task_mix) - set(UTTERANCE_TASKS)
        if unknown:
            raise SpeechLMError(f"unknown task(s) {sorted(unknown)} in task_mix; known: {UTTERANCE_TASKS} "
                                "(chat examples come from chat turns: data.chat)")
        self.prompt_prob = prompt_prob
        self.builder = SequenceBuilder(layout)
        self.by_speaker: dict[str, list[int]] = {}
        for i, u in enumerate(utterances):
            self.by_speaker.setdefault(u.speaker, []).append(i)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utts) + len(self.chat)

    def length(self, i: int) -> int:
        """Upper bound of item ``i``'s sequence length (for length-bucketed batching)."""
        if i >= len(self.utts):
            turn = self.chat[i - len(self.utts)]
            return len(turn.user) + len(turn.reply) + 8
        u = self.utts[i]
        return 2 * (len(u.text) + u.codes.shape[-1] + self.layout.n_codebooks) + 8

    def __getitem__(self, i: int):
        if i >= len(self.utts):
            seq, mask = self.builder.build_chat(self.chat[i - len(self.utts)])
            return seq[:, :-1], seq[:, 1:], mask[:, 1:], TASKS.index("chat")
        rng = random.Random(hash((self.seed, self.epoch, i)))
        task = rng.choices(list(self.task_mix), weights=list(self.task_mix.values()))[0]
        utt = self.utts[i]
        prompt = None
        others = [j for j in self.by_speaker[utt.speaker] if j != i]
        if task == "tts" and others and rng.random() < self.prompt_prob:
            prompt = self.utts[rng.choice(others)]
        prefix = rng.randint(1, max(1, utt.codes.shape[-1] // 2)) if task == "continue" else 0
        # drawn only when on, so that runs without it see exactly the sequences they saw before it existed
        drop = task == "tts" and self.text_dropout > 0 and rng.random() < self.text_dropout
        seq, mask = self.builder.build(task, utt, prompt, prefix, drop_text=drop)
        return seq[:, :-1], seq[:, 1:], mask[:, 1:], TASKS.index(task)


def collate(batch, layout: TokenLayout):
    """Right-pad to the longest sequence: PAD on stream 0, EMPTY elsewhere, no loss on padding."""
    k, width = layout.n_codebooks, max(x[0].shape[-1] for x in batch)
    inputs = torch.full((len(batch), k, width), layout.empty, dtype=torch.long)
    inputs[:, 0] = PAD_ID
    targets, mask = inputs.clone(), torch.zeros(len(batch), k, width, dtype=torch.bool)
    for b, (x, y, m, _) in enumerate(batch):
        inputs[b, :, : x.shape[-1]], targets[b, :, : y.shape[-1]], mask[b, :, : m.shape[-1]] = x, y, m
    return inputs, targets, mask, torch.tensor([t for *_, t in batch])

"""Stage 4: the chat turns (:mod:`speechlm.corpus.dialogues`) phonemized for the LM's ``chat`` task.

Writes ``<dir>/text/chat_{train,test}.jsonl``: one turn per line with ``user_phonemes`` and
``reply_phonemes`` beside the text, through the same front-end as the speech transcripts (stage 3),
so that the LM reads a typed question exactly as it reads the ``asr`` transcript of a spoken one.
Symbols the stage-3 tokenizer lacks are reported; such turns are left out (and counted), since the
tokenizer is fixed by the speech corpus.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from speechlm.corpus.dialogues import SPLITS, build_turns
from speechlm.data.stages import fingerprint, load_stamp, write_stamp
from speechlm.errors import SpeechLMError
from speechlm.io import atomic_open
from speechlm.text.frontend import TextFrontend
from speechlm.text.tokenizer import TextTokenizer


@dataclass
class ChatStageReport:
    turns: dict[str, int]
    left_out: int = 0
    unknown_symbols: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    skipped_as_done: bool = False

    def summary(self) -> str:
        if self.skipped_as_done:
            return "[chat] already done; nothing to do (use --force to redo)"
        counts = ", ".join(f"{s} {n}" for s, n in self.turns.items())
        left = (f"; left out {self.left_out} turns with symbols the tokenizer lacks: {self.unknown_symbols}"
                if self.left_out else "")
        return f"[chat] phonemized turns: {counts} ({self.seconds:.1f} s){left}"


def run_chat_stage(data_dir: str | Path, language: str = "en", backend: str = "auto", seed: int = 0,
                   force: bool = False) -> ChatStageReport:
    text_dir = Path(data_dir) / "text"
    tok_path = text_dir / "tokenizer.json"
    if not tok_path.exists():
        raise SpeechLMError(f"{tok_path}: not found; run the text stage (speechlm data text) first")
    outputs = [text_dir / f"chat_{s}.jsonl" for s in SPLITS]
    fp = fingerprint({"language": language, "backend": backend, "seed": seed, "stage": "chat-1"}, [tok_path])
    if not force and (done := load_stamp(text_dir, "chat", fp, outputs)) is not None:
        return ChatStageReport(**{**done, "skipped_as_done": True})

    t0 = time.time()
    tokenizer = TextTokenizer.load(tok_path)
    frontend = TextFrontend(language, backend)
    turns = build_turns(seed)
    users = frontend.process([t.user for t in turns])
    replies = frontend.process([t.reply for t in turns])
    unknown = tokenizer.unknown_symbols([u.phonemes for u in users] + [r.phonemes for r in replies])
    counts, left_out = dict.fromkeys(SPLITS, 0), 0
    with ExitStack() as stack:  # all files appear together, or none if anything fails
        handles = {s: stack.enter_context(atomic_open(p, "w")) for s, p in zip(SPLITS, outputs)}
        for turn, u, r in zip(turns, users, replies):
            if tokenizer.unknown_symbols([u.phonemes, r.phonemes]):
                left_out += 1
                continue
            row = {**asdict(turn), "user_phonemes": u.phonemes, "reply_phonemes": r.phonemes}
            handles[turn.split].write(json.dumps(row, ensure_ascii=False) + "\n")
            counts[turn.split] += 1
    report = ChatStageReport(turns=counts, left_out=left_out, unknown_symbols=dict(unknown), seconds=time.time() - t0)
    write_stamp(text_dir, "chat", fp, asdict(report))
    return report


def load_chat_turns(path: str | Path) -> list[dict]:
    """Rows of a ``chat_{split}.jsonl`` file; a malformed line is an error naming file and line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                row["user_phonemes"], row["reply_phonemes"]  # noqa: B018 (the fields the LM needs)
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise SpeechLMError(f"{path}:{n}: not a chat turn with user_phonemes/reply_phonemes ({e})") from e
            rows.append(row)
    return rows

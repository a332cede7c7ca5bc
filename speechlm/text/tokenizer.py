"""Text tokenizer: phoneme or character symbols <-> ids, with a saved, versioned, hash-checked vocabulary."""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable

from speechlm.io import write_json
from speechlm.text.normalize import TextError

# ---------------------------------------------------------------- id layout (imported by the LM)
# [0, 4)      special tokens, fixed forever
# [4, 68)     64 markup-tag slots: the named tags below, then <|reserved_N|> (N = slot index), so the
#             LM can name a new tag later by renaming a reserved slot, without shifting any symbol id
# [68, ...)   symbols learned from data (phonemes or characters), sorted, one id each
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<unk>", "<bos>", "<eos>")
NUM_TAG_SLOTS = 64
TAG_OFFSET = len(SPECIAL_TOKENS)
NAMED_TAGS: tuple[str, ...] = (
    "<|tts|>", "<|continue|>", "<|asr|>", "<|chat|>", "<|user|>", "<|assistant|>",
    "<|speaker|>", "<|voice_prompt|>", "<|text|>", "<|audio|>", "<|lang:en|>", "<|lang:zh|>",
)  # fmt: skip
TAG_TOKENS: tuple[str, ...] = NAMED_TAGS + tuple(
    f"<|reserved_{i}|>" for i in range(len(NAMED_TAGS), NUM_TAG_SLOTS)
)
SYMBOL_OFFSET = TAG_OFFSET + NUM_TAG_SLOTS

FORMAT_NAME = "speechlm-text-tokenizer"
FORMAT_VERSION = 1
KINDS = ("phoneme", "char")


def split_symbols(text: str) -> list[str]:
    """Segment text into symbols: one Unicode code point each (after NFC), except that combining marks
    (IPA diacritics such as the dental ̪ in "i̪", tie bars) stay attached to the symbol before them.
    The word boundary " " and punctuation are symbols like any other; nothing is dropped."""
    symbols: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        if symbols and unicodedata.category(ch).startswith("M"):
            symbols[-1] += ch
        else:
            symbols.append(ch)
    return symbols


def _content_hash(payload: dict) -> str:
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class TextTokenizer:
    """Maps symbol strings (the front-end's phonemes or characters) to ids and back."""

    def __init__(self, symbols: Iterable[str], kind: str = "phoneme", language: str = "en") -> None:
        if kind not in KINDS:
            raise TextError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.symbols: tuple[str, ...] = tuple(symbols)
        if len(set(self.symbols)) != len(self.symbols):
            dupes = sorted(s for s, c in Counter(self.symbols).items() if c > 1)
            raise TextError(f"duplicate symbols in tokenizer vocabulary: {dupes}")
        self.kind = kind
        self.language = language
        self._tokens = SPECIAL_TOKENS + TAG_TOKENS + self.symbols
        self._symbol_ids = {s: SYMBOL_OFFSET + i for i, s in enumerate(self.symbols)}
        self._tag_ids = {t: TAG_OFFSET + i for i, t in enumerate(TAG_TOKENS)}

    @classmethod
    def build(
        cls, texts: Iterable[str], kind: str = "phoneme", language: str = "en", min_count: int = 1
    ) -> TextTokenizer:
        """Vocabulary of every symbol seen at least ``min_count`` times in ``texts``.

        Symbols are sorted by code point rather than by frequency, so two builds over the same
        symbol set (e.g. different shards of one corpus) give the same ids.
        """
        if isinstance(texts, str):
            raise TextError("TextTokenizer.build() takes an iterable of texts, not one str")
        if min_count < 1:
            raise TextError(f"min_count must be >= 1, got {min_count}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(split_symbols(text))
        symbols = sorted(s for s, c in counts.items() if c >= min_count)
        if not symbols:
            raise TextError(f"no symbols occur at least {min_count} time(s) in the texts; cannot build a vocabulary")
        return cls(symbols, kind=kind, language=language)

    # ------------------------------------------------------------ ids

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def num_symbols(self) -> int:
        return len(self.symbols)

    def tag_id(self, name: str) -> int:
        """Id of a markup tag, given as "<|tts|>" or "tts"."""
        token = name if name.startswith("<|") else f"<|{name}|>"
        if token not in self._tag_ids:
            raise TextError(f"unknown markup tag {name!r}; known tags: {', '.join(NAMED_TAGS)} (+ reserved slots)")
        return self._tag_ids[token]

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False, strict: bool = False) -> list[int]:
        """Ids of ``text``'s symbols; unseen symbols become ``<unk>`` (or a TextError if ``strict``)."""
        ids = [self._symbol_ids.get(s, UNK_ID) for s in split_symbols(text)]
        if strict and UNK_ID in ids:
            unknown = sorted(self.unknown_symbols([text]))
            raise TextError(f"symbols not in the {self.kind} vocabulary: {unknown} in {text!r:.100}")
        return ([BOS_ID] if add_bos else []) + ids + ([EOS_ID] if add_eos else [])

    def unknown_symbols(self, texts: Iterable[str]) -> Counter[str]:
        """How often each symbol outside the vocabulary occurs in ``texts`` (for data-stage reports)."""
        if isinstance(texts, str):
            texts = [texts]
        return Counter(s for text in texts for s in split_symbols(text) if s not in self._symbol_ids)

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Text of ``ids``; specials and tags are skipped, or written by name with ``skip_special=False``."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise TextError(f"token id {i} is outside this tokenizer's vocabulary (size {self.vocab_size})")
            if i >= SYMBOL_OFFSET or not skip_special:
                out.append(self._tokens[i])
        return "".join(out)

    def id_to_token(self, i: int) -> str:
        return self._tokens[i]

    # ------------------------------------------------------------ files

    def _payload(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "language": self.language,
            "specials": list(SPECIAL_TOKENS),
            "tags": list(TAG_TOKENS),
            "symbols": list(self.symbols),
        }

    @property
    def content_hash(self) -> str:
        return _content_hash(self._payload())

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON, atomically, with a hash of its contents."""
        write_json(path, {**self._payload(), "hash": self.content_hash})

    @classmethod
    def load(cls, path: str | os.PathLike) -> TextTokenizer:
        path = Path(path)
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TextError(f"tokenizer file not found: {path}") from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
            raise TextError(f"cannot read tokenizer file {path}: {e}") from None
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise TextError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise TextError(f"{path} is not a speechlm text tokenizer (format {found!r}, expected {FORMAT_NAME!r})")
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise TextError(
                f"{path}: tokenizer format version {version!r} is not supported "
                f"(this speechlm reads version {FORMAT_VERSION}); upgrade speechlm or rebuild the tokenizer"
            )
        for key, kind in (("kind", str), ("language", str), ("specials", list), ("tags", list), ("symbols", list)):
            if not isinstance(data.get(key), kind):
                raise TextError(f"{path}: field {key!r} is missing or not a {kind.__name__}")
        payload = {k: v for k, v in data.items() if k != "hash"}
        if data.get("hash") != _content_hash(payload):
            raise TextError(
                f"{path}: content hash mismatch (file says {data.get('hash')!r}, contents hash to "
                f"{_content_hash(payload)!r}); the file was edited or corrupted, rebuild it"
            )
        if tuple(data["specials"]) != SPECIAL_TOKENS or len(data["tags"]) != NUM_TAG_SLOTS:
            raise TextError(
                f"{path}: its special tokens or number of tag slots differ from this speechlm's "
                f"({list(SPECIAL_TOKENS)}, {NUM_TAG_SLOTS} tags); the ids would not line up"
            )
        _check_tags(path, data["tags"])
        if not all(isinstance(s, str) and s for s in data["symbols"]):
            raise TextError(f"{path}: field 'symbols' must hold non-empty strings")
        return cls(data["symbols"], kind=data["kind"], language=data["language"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextTokenizer) and self._payload() == other._payload()

    def __repr__(self) -> str:
        return (
            f"TextTokenizer(kind={self.kind!r}, language={self.language!r}, "
            f"symbols={self.num_symbols}, vocab_size={self.vocab_size})"
        )


def _check_tags(path: Path, tags: list) -> None:
    # A file written before a reserved slot was given a name still lines up (the model never saw that
    # slot); a slot whose name differs from ours would silently swap tasks, so it is an error.
    for i, (saved, ours) in enumerate(zip(tags, TAG_TOKENS)):
        if saved != ours and not (isinstance(saved, str) and saved.startswith("<|reserved_")):
            raise TextError(f"{path}: tag slot {i} is {saved!r} in the file but {ours!r} in this speechlm")

"""Word and character error rates: one scoring normalization applied to reference and hypothesis, jiwer for counts."""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Iterable

import jiwer

from speechlm.text.normalize import base_language, normalize_text


def _is_cjk(ch: str) -> bool:
    return "CJK" in unicodedata.name(ch, "") or ch == "\u3007"


def normalize_for_scoring(text: str, language: str = "en") -> str:
    """Text as it is scored: the project's normalizer (numbers spelled out), lowercase, no punctuation.

    Both sides go through this, so "Dr. Smith paid $5." and "doctor smith paid five dollars" match.
    Apostrophes inside words are kept ("don't", "smith's" are words ASR systems emit); hyphens split
    words ("ninety-eight" -> "ninety eight") because recognizers disagree on them. Mandarin has no
    spaces between words, so each Han character is its own token (word error rate = character error rate).
    """
    text = normalize_text(text, language).lower()
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch == "'":
            out.append(ch)
        elif cat.startswith("P") or cat.startswith("S") or ch.isspace():
            out.append(" ")
        elif base_language(language) == "zh" and _is_cjk(ch):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    text = "".join(out)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)  # quote marks, not apostrophes
    return " ".join(text.split())


@dataclass(frozen=True)
class ErrorCounts:
    """Edit-distance counts of one utterance; sum them over a corpus for corpus WER/CER."""

    reference: str  # normalized for scoring
    hypothesis: str  # normalized for scoring
    substitutions: int
    deletions: int
    insertions: int
    ref_words: int
    char_errors: int
    ref_chars: int

    @property
    def word_errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return self.word_errors / self.ref_words if self.ref_words else math.nan

    @property
    def cer(self) -> float:
        return self.char_errors / self.ref_chars if self.ref_chars else math.nan

    def to_dict(self) -> dict:
        return asdict(self)


def _chars(text: str, language: str) -> str:
    # Spaces between Han characters are our tokenization, not something the speaker said.
    return text.replace(" ", "") if base_language(language) == "zh" else text


def score_text(reference: str, hypothesis: str, language: str = "en") -> ErrorCounts:
    """WER/CER counts of ``hypothesis`` against ``reference`` after :func:`normalize_for_scoring`.

    Raises ``ValueError`` when the reference has no words left after normalization: an error rate
    against nothing is undefined, and that is a fault in the reference, not in the system.
    """
    ref = normalize_for_scoring(reference, language)
    hyp = normalize_for_scoring(hypothesis, language)
    if not ref:
        raise ValueError(f"reference {reference!r:.80} has no words left after normalization")
    words = jiwer.process_words(ref, hyp)
    ref_c, hyp_c = _chars(ref, language), _chars(hyp, language)
    chars = jiwer.process_characters(ref_c, hyp_c)
    return ErrorCounts(
        reference=ref, hypothesis=hyp,
        substitutions=words.substitutions, deletions=words.deletions, insertions=words.insertions,
        ref_words=len(ref.split()),
        char_errors=chars.substitutions + chars.deletions + chars.insertions, ref_chars=len(ref_c),
    )


def corpus_wer(counts: Iterable[ErrorCounts]) -> float:
    """Total word errors / total reference words: long utterances weigh more, as in every ASR benchmark."""
    counts = list(counts)
    words = sum(c.ref_words for c in counts)
    return sum(c.word_errors for c in counts) / words if words else math.nan


def corpus_cer(counts: Iterable[ErrorCounts]) -> float:
    counts = list(counts)
    chars = sum(c.ref_chars for c in counts)
    return sum(c.char_errors for c in counts) / chars if chars else math.nan

"""Sentence splitting for long-text synthesis: every character of the input lands in exactly one piece.

Sentences end at ``. ! ? ;`` (and ``。！？；``) followed by a space or the end, and at newlines.
``. ! ?`` do not end a sentence when the next word starts in lower case (``etc. and``, ``... then``,
``"Help!" she cried``), and a period does not after a title or Latin abbreviation (``Dr.``,
``e.g.``), an initial (``J. R. R.``) or ``No.``/``p.`` before a number; inside numbers (``3.5``) a
period is never followed by a space, so it never splits. Sentences too long for one
generation are cut further at clause marks (``, : -``) and, failing those, at spaces, always near the
middle so the pieces stay balanced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

# Lower-case, without the final period. Titles and Latin abbreviations: a capitalised name or word
# follows them, so the "next word is lower case" rule cannot catch them.
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "rev", "gen", "col", "lt", "sgt", "capt", "gov",
    "sen", "rep", "hon", "fr", "vs", "e.g", "i.e", "cf", "viz", "approx", "dept", "inc", "ltd", "corp",
})  # fmt: skip
# Abbreviations that only precede a number ("No. 5", "p. 12"): "I said no. Then ..." still splits.
NUMBER_ABBREVIATIONS = frozenset({"no", "nos", "p", "pp", "vol", "fig", "figs", "ch", "sec", "art"})

_END = re.compile(r"""[.!?;…]+["'”’»)\]]*(?=\s|$)|[。！？；]+["'”’」』)]*|\n""")
_CLAUSE = re.compile(r"""[,:;–—]\s+|\s-+\s""")


@dataclass(frozen=True)
class Piece:
    """``text[start:end]`` of the input; ``sentence`` numbers the sentence it belongs to."""

    start: int
    end: int
    sentence: int
    text: str


def _is_boundary(text: str, m: re.Match) -> bool:
    mark = m.group()
    if mark == "\n" or mark.startswith((";", "。", "！", "？", "；")):
        return True
    rest = text[m.end():].lstrip()
    if rest[:1].islower():
        return False  # "etc. and so on", "... then", '"Help!" she cried'
    if mark.rstrip("\"'”’»)]") != ".":
        return True  # "..." followed by a capital
    word = re.search(r"(\S+)\.$", text[: m.start() + 1])
    token = word.group(1).lstrip("\"'“‘«([").lower() if word else ""
    if token in ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
        return False  # "Dr. Smith", "e.g. Paris", "J. Smith"
    return not (token in NUMBER_ABBREVIATIONS and rest[:1].isdigit())


def split_sentences(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` character spans of the sentences of ``text``, whitespace trimmed, in order.

    Together they cover every non-space character of ``text`` exactly once.
    """
    spans, start = [], 0
    for m in _END.finditer(text):
        if _is_boundary(text, m):
            spans.append((start, m.end()))
            start = m.end()
    spans.append((start, len(text)))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            out.append((a, b))
    return out


def _cut(text: str, a: int, b: int) -> int | None:
    """The best place to cut ``text[a:b]`` in two: a clause mark nearest the middle, else a space."""
    mid = (a + b) / 2
    for pattern in (_CLAUSE, re.compile(r"\s+")):
        cuts = [m.end() for m in pattern.finditer(text, a, b) if a < m.start() and m.end() < b]
        if cuts:
            return min(cuts, key=lambda c: abs(c - mid))
    return None


def split_to_fit(text: str, a: int, b: int, fits: Callable[[str], bool]) -> list[tuple[int, int]]:
    """Spans covering ``text[a:b]`` that each satisfy ``fits`` (one word too long is cut between letters)."""
    if fits(text[a:b]) or b - a <= 1:
        return [(a, b)]
    cut = _cut(text, a, b)
    if cut is None:
        cut = (a + b) // 2
    left_end = cut
    while left_end > a and text[left_end - 1].isspace():
        left_end -= 1
    return split_to_fit(text, a, left_end, fits) + split_to_fit(text, cut, b, fits)


def split_text(text: str, fits: Callable[[str], bool] = lambda s: True) -> list[Piece]:
    """Sentences of ``text``, each cut further until every piece ``fits``."""
    pieces = []
    for i, (a, b) in enumerate(split_sentences(text)):
        pieces += [Piece(s, e, i, text[s:e]) for s, e in split_to_fit(text, a, b, fits)]
    return pieces

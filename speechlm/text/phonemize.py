"""Grapheme-to-phoneme: espeak-ng IPA through `phonemizer`, with a character fallback for other languages."""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from abc import ABC, abstractmethod
from typing import Any

from speechlm.text.normalize import TextError, base_language

log = logging.getLogger(__name__)


BACKENDS = ("auto", "espeak", "char")

# Our language names -> espeak-ng voices. Mandarin deliberately uses "cmn-latn-pinyin", not "cmn":
# Debian's espeak-ng 1.51 "cmn" voice is broken and reads hanzi as pinyin spelled with English rules
# (你好 -> "(en)nɪθɹiː..."; upstream espeak-ng issue #1044), whereas "cmn-latn-pinyin" phonemizes
# hanzi correctly (你好 -> "ni2 χɑu2", tone numbers included). Its one cost: Latin words inside
# Chinese text are read as pinyin, not English.
ESPEAK_VOICES = {
    "en": "en-us",
    "en-us": "en-us",
    "en-gb": "en-gb",
    "zh": "cmn-latn-pinyin",
    "zh-cn": "cmn-latn-pinyin",
    "cmn": "cmn-latn-pinyin",
}

_INSTALL_HINT = (
    "install espeak-ng (Debian/Ubuntu: apt-get install espeak-ng; macOS: brew install espeak-ng), "
    "point PHONEMIZER_ESPEAK_LIBRARY at libespeak-ng if it is installed somewhere unusual, "
    "or use backend='char'"
)


class _EspeakLog(logging.LoggerAdapter):
    """phonemizer's log, with its warnings lowered to debug.

    It warns about word-count mismatches after every batch even in "ignore" mode, and about the
    language switches we ask it to remove; both are expected (punctuation chunks, "ninety-nine"),
    and a corpus stage would print them thousands of times.
    """

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)


def _canonical(language: str) -> str:
    return language.strip().lower().replace("_", "-")


def _espeak_backend_class() -> Any:
    """The phonemizer EspeakBackend class, or a TextError saying what to install."""
    try:
        from phonemizer.backend import EspeakBackend  # ~0.2 s import: only when espeak is wanted
    except ImportError as e:
        raise TextError(f"the 'phonemizer' package is not importable ({e}); pip install phonemizer") from e
    if not EspeakBackend.is_available():
        raise TextError(f"espeak-ng was not found (phonemizer cannot load libespeak-ng); {_INSTALL_HINT}")
    return EspeakBackend


@functools.lru_cache(maxsize=None)
def _espeak_voices() -> frozenset[str]:
    return frozenset(_espeak_backend_class().supported_languages())


def espeak_voice(language: str) -> str | None:
    """The espeak-ng voice for ``language``, or None if espeak-ng has none (raises if espeak is missing)."""
    voices = _espeak_voices()
    for lang in (_canonical(language), base_language(language)):  # "fr-CA" falls back to "fr"
        for candidate in (ESPEAK_VOICES.get(lang), lang, f"{lang}-{lang}"):  # "fr" -> "fr-fr"
            if candidate and candidate in voices:
                return candidate
    return None


class Phonemizer(ABC):
    """Turns normalized text into the symbol strings the text tokenizer is built on."""

    #: what the output symbols are; stored in the tokenizer so phonemes and characters never mix
    kind: str = "phoneme"

    def __init__(self, language: str) -> None:
        self.language = language

    @abstractmethod
    def phonemize(self, texts: list[str]) -> list[str]:
        """One output string per input text, in order; "" in gives "" out."""

    @classmethod
    def for_language(cls, language: str = "en", backend: str = "auto") -> Phonemizer:
        """espeak-ng when it has a voice for ``language`` (``backend="auto"``), else characters.

        "auto" needs espeak-ng installed to ask it which voices it has: a missing espeak-ng is an
        error rather than a silent switch to characters, which would change the symbol inventory.
        """
        if backend not in BACKENDS:
            raise TextError(f"unknown G2P backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if backend == "char":
            return CharPhonemizer(language)
        if backend == "espeak" or espeak_voice(language) is not None:
            return EspeakPhonemizer(language)
        log.info("espeak-ng has no voice for %r; using characters as symbols", language)
        return CharPhonemizer(language)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(language={self.language!r})"


class EspeakPhonemizer(Phonemizer):
    """IPA with stress marks and punctuation from espeak-ng; the backend is built once and reused."""

    kind = "phoneme"

    def __init__(self, language: str = "en") -> None:
        super().__init__(language)
        voice = espeak_voice(language)
        if voice is None:
            raise TextError(
                f"espeak-ng has no voice for language {language!r}; use backend='char' "
                "(list voices with: espeak-ng --voices)"
            )
        self.voice = voice
        self._backend = self._build()

    def _build(self) -> Any:
        return _espeak_backend_class()(
            self.voice,
            preserve_punctuation=True,  # pauses and question intonation live in the punctuation
            with_stress=True,
            # Without this espeak marks words it reads in another voice as "(en)...(cmn)".
            language_switch="remove-flags",
            logger=_EspeakLog(log, {}),
        )

    def __getstate__(self) -> dict:
        # The backend wraps a C library handle; data-loader workers rebuild it on arrival.
        return {k: v for k, v in self.__dict__.items() if k != "_backend"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._backend = self._build()

    def phonemize(self, texts: list[str]) -> list[str]:
        if isinstance(texts, str):
            raise TextError("phonemize() takes a list of texts, not one str")
        # phonemizer splits utterances on newlines, silently drops empty ones and garbles the
        # punctuation of punctuation-only ones; any of these would shift every later output by one.
        # So only texts with something to say go to espeak, one line each.
        out = [re.sub(r"\s+", " ", t).strip() for t in texts]
        todo = [i for i, t in enumerate(out) if any(ch.isalnum() for ch in t)]
        for i in set(range(len(out))) - set(todo):
            out[i] = "".join(ch for ch in out[i] if not ch.isspace())
        if todo:
            phones = self._backend.phonemize([out[i] for i in todo], strip=True)
            if len(phones) != len(todo):  # never seen, but a shifted batch would corrupt a corpus
                phones = [self._backend.phonemize([out[i]], strip=True)[0] for i in todo]
            for i, p in zip(todo, phones):
                out[i] = re.sub(r"\s+", " ", p).strip()
        return out

    def __repr__(self) -> str:
        return f"EspeakPhonemizer(language={self.language!r}, voice={self.voice!r})"


class CharPhonemizer(Phonemizer):
    """Characters as symbols, for languages espeak-ng cannot read: NFKC, lowercased, spaces collapsed."""

    kind = "char"

    def __init__(self, language: str = "en") -> None:
        super().__init__(language)

    def phonemize(self, texts: list[str]) -> list[str]:
        if isinstance(texts, str):
            raise TextError("phonemize() takes a list of texts, not one str")
        return [re.sub(r"\s+", " ", unicodedata.normalize("NFKC", t)).strip().lower() for t in texts]

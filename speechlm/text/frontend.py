"""The text front-end used by data stages and inference alike: normalize, then phonemes or characters."""

from __future__ import annotations

from dataclasses import dataclass, field

from speechlm.text.normalize import NormalizedText, TextError, normalize_checked, normalize_with_report
from speechlm.text.phonemize import Phonemizer


@dataclass(frozen=True)
class FrontendOutput:
    """One text after the front-end: what the tokenizer encodes is ``phonemes``."""

    normalized: str
    phonemes: str  # IPA from espeak-ng, or lowercased characters for the char backend
    dropped: list[str] = field(default_factory=list)  # unspeakable input removed by normalization


class TextFrontend:
    """Normalization + G2P for one language; built from YAML via ``class_path``/``init_args``.

    Args:
        language: "en", "en-gb", "zh", or any language espeak-ng or the character backend can take.
        backend: "auto" (espeak-ng if it has a voice for ``language``, else characters),
            "espeak" or "char".
    """

    def __init__(self, language: str = "en", backend: str = "auto") -> None:
        self.language = language
        self.backend = backend
        # Built once here: a missing espeak-ng is reported when the config is loaded, not mid-corpus.
        self.phonemizer = Phonemizer.for_language(language, backend)

    @property
    def symbol_kind(self) -> str:
        """"phoneme" or "char": the ``kind`` a TextTokenizer over this front-end's output must have."""
        return self.phonemizer.kind

    def normalize(self, text: str) -> str:
        """Normalized text; raises TextError if nothing speakable is left (e.g. only emoji)."""
        return normalize_checked(text, self.language).text

    def normalize_with_report(self, text: str) -> NormalizedText:
        """Normalized text and what was dropped; never raises on content."""
        return normalize_with_report(text, self.language)

    def phonemize(self, texts: list[str]) -> list[str]:
        """Symbols for already-normalized texts, in one batch."""
        return self.phonemizer.phonemize(texts)

    def process(self, texts: list[str]) -> list[FrontendOutput]:
        """Normalize and phonemize a batch; a TextError lists every text with nothing speakable."""
        if isinstance(texts, str):
            raise TextError("process() takes a list of texts, not one str")
        results = [normalize_with_report(t, self.language) for t in texts]
        empty = [f"  - [{i}] {t!r:.100}" for i, (t, r) in enumerate(zip(texts, results)) if not r.is_speakable]
        if empty:
            raise TextError(
                f"{len(empty)} of {len(texts)} text(s) have nothing speakable left after "
                f"{self.language!r} normalization:\n" + "\n".join(empty[:20])
            )
        phonemes = self.phonemize([r.text for r in results])
        return [FrontendOutput(r.text, p, r.dropped) for r, p in zip(results, phonemes)]

    def __repr__(self) -> str:
        return f"TextFrontend(language={self.language!r}, backend={self.backend!r}, phonemizer={self.phonemizer!r})"

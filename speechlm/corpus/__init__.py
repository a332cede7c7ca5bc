"""The project's embedded corpus: its own sentences, spoken by offline Debian voices (``build_corpus``)."""

from __future__ import annotations

from typing import Any

from speechlm.corpus.sentences import Sentence, generate_sentences, split_sentences
from speechlm.corpus.voices import VOICES, Voice

_BUILD_NAMES = ("CorpusConfig", "CorpusReport", "build_corpus")

__all__ = ["VOICES", "Sentence", "Voice", "generate_sentences", "split_sentences", *_BUILD_NAMES]


def __getattr__(name: str) -> Any:
    # The builder pulls in librosa, scipy and pyloudnorm; load it only when someone asks for it.
    if name in _BUILD_NAMES:
        from speechlm.corpus import build

        return getattr(build, name)
    raise AttributeError(f"module 'speechlm.corpus' has no attribute {name!r}")

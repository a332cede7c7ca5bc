"""Text front-end: normalization, grapheme-to-phoneme and the text tokenizer (phonemizer/cn2an load lazily)."""

from speechlm.text.frontend import FrontendOutput, TextFrontend
from speechlm.text.normalize import (
    NormalizedText,
    TextError,
    base_language,
    normalize_checked,
    normalize_text,
    normalize_with_report,
)
from speechlm.text.phonemize import CharPhonemizer, EspeakPhonemizer, Phonemizer, espeak_voice
from speechlm.text.tokenizer import (
    BOS_ID,
    EOS_ID,
    NAMED_TAGS,
    NUM_TAG_SLOTS,
    PAD_ID,
    SPECIAL_TOKENS,
    SYMBOL_OFFSET,
    TAG_OFFSET,
    TAG_TOKENS,
    UNK_ID,
    TextTokenizer,
    split_symbols,
)

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "NAMED_TAGS",
    "NUM_TAG_SLOTS",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "SYMBOL_OFFSET",
    "TAG_OFFSET",
    "TAG_TOKENS",
    "UNK_ID",
    "CharPhonemizer",
    "EspeakPhonemizer",
    "FrontendOutput",
    "NormalizedText",
    "Phonemizer",
    "TextError",
    "TextFrontend",
    "TextTokenizer",
    "base_language",
    "espeak_voice",
    "normalize_checked",
    "normalize_text",
    "normalize_with_report",
    "split_symbols",
]

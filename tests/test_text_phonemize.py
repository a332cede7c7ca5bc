"""G2P with the real espeak-ng (English, Mandarin), the character backend, and the TextFrontend."""

from __future__ import annotations

import pickle
import re

import pytest

from speechlm.text import (
    CharPhonemizer,
    EspeakPhonemizer,
    FrontendOutput,
    Phonemizer,
    TextError,
    TextFrontend,
    espeak_voice,
)
from speechlm.text import phonemize as phonemize_module


@pytest.fixture(scope="module")
def en() -> Phonemizer:
    return Phonemizer.for_language("en")


@pytest.fixture(scope="module")
def zh() -> TextFrontend:
    return TextFrontend("zh")


def test_voice_map() -> None:
    assert espeak_voice("en") == "en-us" and espeak_voice("en-US") == "en-us"
    assert espeak_voice("en-gb") == "en-gb"
    # "cmn" itself is broken on Debian's espeak-ng 1.51; both names must go to the pinyin voice.
    assert espeak_voice("zh") == "cmn-latn-pinyin" and espeak_voice("cmn") == "cmn-latn-pinyin"
    assert espeak_voice("fr") == "fr-fr"  # a bare code finds its main regional voice
    assert espeak_voice("xx-nonexistent") is None


def test_english_phonemes(en: Phonemizer) -> None:
    assert isinstance(en, EspeakPhonemizer) and en.kind == "phoneme"
    cat, hello, thought = en.phonemize(["cat", "hello", "thought"])
    assert cat == "kˈæt"
    assert hello.startswith("h") and "ˈoʊ" in hello  # stress on the second syllable
    assert "θ" in thought and "ɔː" in thought


def test_punctuation_preserved(en: Phonemizer) -> None:
    (out,) = en.phonemize(["Well, is it? Yes!"])
    assert out.count(",") == 1 and out.count("?") == 1 and out.endswith("!")


def test_batch_keeps_alignment_with_empty_and_punctuation_only_items(en: Phonemizer) -> None:
    texts = ["one", "", "...", "two\nthree", "!", "four"]
    out = en.phonemize(texts)
    assert len(out) == len(texts)
    assert out[1] == "" and out[2] == "..." and out[4] == "!"
    assert out[0] == en.phonemize(["one"])[0] and out[5] == en.phonemize(["four"])[0]
    assert out[3] == en.phonemize(["two three"])[0]
    with pytest.raises(TextError, match="list of texts"):
        en.phonemize("one")  # type: ignore[arg-type]


def test_british_and_american_differ() -> None:
    us = Phonemizer.for_language("en-us").phonemize(["bath"])[0]
    gb = Phonemizer.for_language("en-gb").phonemize(["bath"])[0]
    assert "æ" in us and "æ" not in gb


@pytest.mark.parametrize(
    "sentence, numeral_text",
    [
        ("你好，世界。", None),
        ("我有3本书。", "我有三本书。"),
        ("今天是2024年5月1日。", "今天是二零二四年五月一日。"),
    ],
)
def test_mandarin_sentences(zh: TextFrontend, sentence: str, numeral_text: str | None) -> None:
    (out,) = zh.process([sentence])
    assert out.phonemes and "(" not in out.phonemes  # no "(en)"/"(cmn)" language-switch flags
    # Every syllable carries a tone (digit, or ɜ for tone 2); English-rule spelling ("nɪθɹiː") has none.
    # (A "." inside a syllable is espeak's retroflex mark: "s.i5" is shi.)
    syllables = [s.strip(",.?!;:") for s in out.phonemes.split()]
    assert syllables and all(re.search(r"[1-5ɜ]", s) for s in syllables), out.phonemes
    assert not re.search(r"[0-9]", out.normalized)  # numerals became hanzi
    if numeral_text is not None:  # digits and hanzi numerals are read the same
        assert out.phonemes == zh.process([numeral_text])[0].phonemes


def test_mandarin_nihao_reads_as_pinyin(zh: TextFrontend) -> None:
    phones = zh.phonemize(["你好"])[0]
    assert phones.replace("ˈ", "") == "ni2 χɑu2"  # the broken "cmn" voice gives "nɪθɹiː..."


def test_char_backend() -> None:
    char = Phonemizer.for_language("en", backend="char")
    assert isinstance(char, CharPhonemizer) and char.kind == "char"
    assert char.phonemize(["Hello  World!", "ＡＢＣ", ""]) == ["hello world!", "abc", ""]
    fallback = Phonemizer.for_language("xx-nonexistent")  # no espeak voice: characters
    assert isinstance(fallback, CharPhonemizer)


def test_backend_errors() -> None:
    with pytest.raises(TextError, match="unknown G2P backend 'festival'"):
        Phonemizer.for_language("en", backend="festival")
    with pytest.raises(TextError, match="no voice for language 'xx-nonexistent'"):
        Phonemizer.for_language("xx-nonexistent", backend="espeak")


def test_missing_espeak_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from phonemizer.backend import EspeakBackend

    monkeypatch.setattr(EspeakBackend, "is_available", staticmethod(lambda: False))
    phonemize_module._espeak_voices.cache_clear()
    try:
        with pytest.raises(TextError, match="apt-get install espeak-ng"):
            Phonemizer.for_language("en")
        assert isinstance(Phonemizer.for_language("en", backend="char"), CharPhonemizer)
    finally:
        phonemize_module._espeak_voices.cache_clear()


def test_pickle_rebuilds_backend(en: Phonemizer) -> None:
    clone = pickle.loads(pickle.dumps(en))
    assert clone.phonemize(["cat"]) == en.phonemize(["cat"])


def test_frontend_process_and_errors() -> None:
    front = TextFrontend("en")
    assert front.symbol_kind == "phoneme"
    out = front.process(["Dr. Smith paid $3 😀", "Hi."])
    assert all(isinstance(o, FrontendOutput) for o in out)
    assert out[0].normalized == "Doctor Smith paid three dollars" and out[0].dropped == ["😀"]
    assert "θɹˈiː" in out[0].phonemes and out[1].phonemes.endswith(".")
    assert front.normalize("I have 2.") == "I have two."
    with pytest.raises(TextError, match=r"(?s)1 of 3 text\(s\).*\[1\] '🎉🎉'"):
        front.process(["ok", "🎉🎉", "fine"])
    with pytest.raises(TextError, match="nothing speakable"):
        front.normalize("🎉")
    assert TextFrontend("en", backend="char").process(["Hi 2"])[0].phonemes == "hi two"


def test_frontend_builds_from_config() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--frontend", type=TextFrontend)
    cfg = parser.parse_object(
        {"frontend": {"class_path": "speechlm.text.TextFrontend", "init_args": {"language": "zh", "backend": "char"}}}
    )
    front = parser.instantiate(cfg).frontend
    assert isinstance(front, TextFrontend) and front.symbol_kind == "char"
    assert front.process(["我有3本书"])[0].phonemes == "我有三本书"

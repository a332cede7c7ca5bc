"""Text normalization: English numbers/currency/abbreviations, Mandarin numerals, Unicode safety."""

from __future__ import annotations

import random

import pytest

from speechlm.errors import SpeechLMError
from speechlm.text import (
    NormalizedText,
    TextError,
    base_language,
    normalize_checked,
    normalize_text,
    normalize_with_report,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        # cardinals, thousands separators, negatives, decimals
        ("I have 3 cats.", "I have three cats."),
        ("It has 1,000,000 stars", "It has one million stars"),
        ("Room 105", "Room one hundred five"),
        ("It was -5 outside", "It was minus five outside"),
        ("Pi is 3.14", "Pi is three point one four"),
        # ordinals
        ("the 1st and 22nd and 103rd", "the first and twenty-second and one hundred third"),
        ("the 1,000th visitor", "the one thousandth visitor"),
        # years and decades
        ("In 1999 we met", "In nineteen ninety-nine we met"),
        ("In 2005 we met", "In two thousand five we met"),
        ("In 2010", "In twenty ten"),
        ("the 1900s", "the nineteen hundreds"),
        ("the 1990s and the '80s", "the nineteen nineties and the eighties"),
        # currency
        ("It costs $3.50.", "It costs three dollars and fifty cents."),
        ("Only £20", "Only twenty pounds"),
        ("Pay €1,000 now", "Pay one thousand euros now"),
        ("A $5 million deal", "A five million dollars deal"),
        ("$1 or $0.01", "one dollar or one cent"),
        ("$2.5bn", "two point five billion dollars"),
        ("¥500", "five hundred yen"),
        # percentages
        ("50% off", "fifty percent off"),
        ("up 3.5%", "up three point five percent"),
        # times
        ("at 3:30 pm", "at three thirty p m"),
        ("at 5:00", "at five o'clock"),
        ("at 7:05", "at seven oh five"),
        ("Leave at 10 a.m. Then rest.", "Leave at ten a m. Then rest."),
        # abbreviations
        ("Mr. Smith and Mrs. Jones", "Mister Smith and Misses Jones"),
        ("Dr. Who met Prof. X", "Doctor Who met Professor X"),
        ("Kramer vs. Kramer", "Kramer versus Kramer"),
        ("St. Louis is on Main St. today", "Saint Louis is on Main Street today"),
        ("fruit, e.g. apples, i.e. food", "fruit, for example apples, that is food"),
        ("pears, etc. We eat", "pears, et cetera. We eat"),
        ("No. 5 and no. 6", "Number five and number six"),
        # symbols
        ("Tom & Jerry", "Tom and Jerry"),
        ("2 + 2 = 4", "two plus two equals four"),
        ("1/2 of 3/4", "one half of three quarters"),
        ("MP3 player", "MP three player"),
        # punctuation, case and whitespace
        ("Hello,   WORLD!\n\tHow are you?", "Hello, WORLD! How are you?"),
        ("Wait; really: yes - no 'ok'", "Wait; really: yes - no 'ok'"),
        ("(aside) text", "aside, text"),
        ("“Curly” ‘quotes’ — and – dashes…", "\"Curly\" 'quotes' - and - dashes..."),
        ("café naïve", "café naïve"),
    ],
)
def test_english(raw: str, expected: str) -> None:
    assert normalize_text(raw, "en") == expected


def test_english_variants_use_english_rules() -> None:
    assert normalize_text("Dr. No paid $2", "en-GB") == "Doctor No paid two dollars"
    assert base_language("en_US") == "en" and base_language("cmn") == "zh" and base_language("zh-CN") == "zh"


def test_emoji_dropped_and_reported() -> None:
    result = normalize_with_report("I love it 😀! Family: 👨\u200d👩\u200d👧 ok", "en")
    assert isinstance(result, NormalizedText)
    assert result.text == "I love it! Family: ok"
    # A ZWJ emoji sequence is reported as the one thing the user typed.
    assert result.dropped == ["😀", "👨\u200d👩\u200d👧"]


def test_emoji_between_words_keeps_words_apart() -> None:
    assert normalize_text("love😀you", "en") == "love you"


def test_control_and_invisible_characters() -> None:
    result = normalize_with_report("bell\x07 and\x00 nul\u200b zero co\u00adoperate", "en")
    assert result.text == "bell and nul zero cooperate"
    assert "\x07" in result.dropped and "\x00" in result.dropped
    assert not any("\u200b" in d or "\u00ad" in d for d in result.dropped)  # invisible: not news


def test_cjk_in_english_text_is_dropped_and_reported() -> None:
    result = normalize_with_report("Hello 你好 world", "en")
    assert result.text == "Hello world"
    assert result.dropped == ["你好"]


def test_random_unicode_never_crashes() -> None:
    rng = random.Random(0)
    allowed_punct = set(" ,.?!;:-'\"")
    for _ in range(300):
        text = "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(1, 30)))
        text += " 12 $3.50 " + "".join(chr(rng.randrange(0x1F300, 0x1FAFF)) for _ in range(2))
        for lang in ("en", "zh", "de"):
            result = normalize_with_report(text, lang)
            assert isinstance(result.text, str) and result.dropped  # the emoji at least were dropped
            assert result.text == result.text.strip() and "  " not in result.text
            if lang == "en":
                assert all(ch.isalpha() or ch in allowed_punct for ch in result.text), result.text
                assert not any(ch.isdigit() for ch in result.text)


def test_huge_numbers_are_read_digit_by_digit() -> None:
    big = "7" * 5000  # past Python's 4300-digit int() limit
    for raw in (big, f"${big}.50", f"{big}th", f"{big}%", f"{big}/{big}", f"-{big}"):
        text = normalize_text(raw, "en")
        assert text.count("seven") == 5000 * (2 if "/" in raw else 1), raw[-8:]
        assert normalize_text(raw, "zh").count("七") >= 5000


def test_checked_api_raises_on_nothing_speakable() -> None:
    with pytest.raises(TextError, match="nothing speakable") as info:
        normalize_checked("😀 🎉!!", "en")
    assert "😀 🎉!!" in str(info.value)  # names the offending input
    assert isinstance(info.value, SpeechLMError)
    assert normalize_text("😀", "en") == ""  # the unchecked API just returns the empty text
    with pytest.raises(TextError, match="nothing speakable"):
        normalize_checked("...", "en")
    assert normalize_checked("Hi 😀", "en").text == "Hi"


def test_non_string_input_is_a_clear_error() -> None:
    with pytest.raises(TextError, match="expected text as a str, got NoneType"):
        normalize_text(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("你好，世界。", "你好, 世界."),
        ("你好,世界.", "你好, 世界."),  # half-width typed: the same result as full-width
        ("我有3本书。", "我有三本书."),
        ("今天是2024年5月1日。", "今天是二零二四年五月一日."),
        ("2024-05-01开会", "二零二四年五月一日开会"),
        ("价格是3.5元，增长了50%。", "价格是三点五元, 增长了百分之五十."),
        ("共1,000元", "共一千元"),
        ("在12:30开会", "在十二点三十分开会"),
        ("休息3-5天", "休息三至五天"),
        ("电话13812345678", "电话一三八一二三四五六七八"),
        ("温度-5度", "温度负五度"),
        ("我用iPhone 15拍照", "我用iPhone 十五拍照"),
        ("《三体》很好看！", '"三体"很好看!'),
        ("１２３个", "一百二十三个"),
        ("花了$1.50和￥20", "花了一点五美元和二十元"),
    ],
)
def test_mandarin(raw: str, expected: str) -> None:
    assert normalize_text(raw, "zh") == expected


def test_mandarin_drops_emoji_and_kana_keeps_hanzi_and_latin() -> None:
    result = normalize_with_report("我爱Python😀の", "zh")
    assert result.text == "我爱Python"
    assert result.dropped == ["😀の"]


def test_other_languages_spell_numbers_with_num2words() -> None:
    assert normalize_text("Ich habe 3 Katzen.", "de") == "Ich habe drei Katzen."
    assert normalize_text("Привет 5 😀", "ru") == "Привет пять"


@pytest.mark.parametrize("raw,expected", [
    ("Call 555-0123 now.", "Call five five five, zero one two three now."),
    ("Dial (212) 555-0199.", "Dial two one two, five five five, zero one nine nine."),
    ("It opened on Jan. 5, 1999.", "It opened on January five, nineteen ninety-nine."),
    ("Turn left at Baker St.", "Turn left at Baker Street."),
    ("Baker St. is long.", "Baker Street is long."),
    ("St. Paul St. is near.", "Saint Paul Street is near."),
])
def test_phone_numbers_months_and_street_at_sentence_end(raw, expected):
    assert normalize_text(raw) == expected

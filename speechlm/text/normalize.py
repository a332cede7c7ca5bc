"""Text normalization for TTS: numbers, currency, abbreviations and Unicode clean-up, per language."""

from __future__ import annotations

import re
import unicodedata
import warnings
from dataclasses import dataclass, field

from num2words import num2words

from speechlm.errors import SpeechLMError


class TextError(SpeechLMError):
    """A text the front-end cannot use: nothing speakable, a bad tokenizer file, no G2P backend."""


@dataclass(frozen=True)
class NormalizedText:
    """Normalized text plus every piece of the input that was dropped as unspeakable (emoji, controls)."""

    text: str
    dropped: list[str] = field(default_factory=list)
    language: str = "en"

    @property
    def is_speakable(self) -> bool:
        # Punctuation alone ("...", "!") gives a TTS model nothing to say.
        return any(ch.isalnum() for ch in self.text)


def base_language(language: str) -> str:
    """Map a language tag to the rule set that normalizes it: "en-GB" -> "en", "cmn"/"zh-CN" -> "zh"."""
    primary = language.strip().lower().replace("_", "-").split("-")[0]
    return "zh" if primary in ("zh", "cmn") else primary


def normalize_with_report(text: str, language: str = "en") -> NormalizedText:
    """Normalize ``text`` for ``language``; never raises on content (the result may be empty)."""
    if not isinstance(text, str):
        raise TextError(f"expected text as a str, got {type(text).__name__}: {text!r:.80}")
    lang = base_language(language)
    dropped: list[str] = []
    text = _clean_unicode(text, dropped)
    if lang == "en":
        text = _normalize_en(text)
    elif lang == "zh":
        text = _normalize_zh(text)
    else:
        text = _expand_digits_generic(text, lang)
    text = _filter_unspeakable(text, lang, dropped)
    return NormalizedText(_tidy(text, lang), dropped, language)


def normalize_text(text: str, language: str = "en") -> str:
    """Normalized text only; may be "" (use :func:`normalize_checked` where text must be non-empty)."""
    return normalize_with_report(text, language).text


def normalize_checked(text: str, language: str = "en") -> NormalizedText:
    """Like :func:`normalize_with_report`, but raise :class:`TextError` if nothing speakable is left."""
    result = normalize_with_report(text, language)
    if not result.is_speakable:
        dropped = f" (dropped: {' '.join(result.dropped)!r})" if result.dropped else ""
        raise TextError(
            f"text {text!r:.100} has nothing speakable left after {language!r} normalization{dropped}; "
            "give it words to say"
        )
    return result


# ---------------------------------------------------------------- Unicode clean-up (all languages)

# After NFKC: typographic quotes and dashes to the ASCII marks the phonemizer and tokenizer know.
_CHAR_MAP = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2212": "-",
        "\u2014": " - ", "\u2015": " - ", "\u2044": "/",
    }
)


def _clean_unicode(text: str, dropped: list[str]) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_CHAR_MAP)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch.isspace():
            out.append(" ")
        elif cat == "Nd":
            out.append(str(unicodedata.decimal(ch)))  # "٣" -> "3": the number rules and cn2an read ASCII
        elif cat in ("Cc", "Cs", "Co", "Cn"):
            dropped.append(ch)  # controls, lone surrogates, private use, unassigned
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


_KEEP_PUNCT = set(",.?!;:-'\"")


def _speakable(ch: str, lang: str) -> bool:
    if ch == " " or ch in _KEEP_PUNCT or ch.isdigit():
        return True
    if not ch.isalpha() and ch != "\u3007":  # 〇, the ideographic zero, is a letter-number
        return False
    if lang == "en":
        return "LATIN" in unicodedata.name(ch, "")
    if lang == "zh":
        name = unicodedata.name(ch, "")
        return "LATIN" in name or "CJK" in name or ch == "\u3007"
    return True  # other languages: any script's letters


def _filter_unspeakable(text: str, lang: str, dropped: list[str]) -> str:
    """Drop what the language cannot say, reporting each run (an emoji ZWJ sequence is one item)."""
    out: list[str] = []
    run: list[str] = []
    after_letter = False  # was the last base character a letter that was kept?
    for ch in text:
        cat = unicodedata.category(ch)
        if cat == "Cf":
            # Zero-width joiners, soft hyphens, BOMs are invisible: silently removed, except inside a
            # dropped run, where they keep an emoji sequence reported as the user typed it.
            if run:
                run.append(ch)
            continue
        # Combining marks and variation selectors share the fate of the letter they modify; with no
        # letter to modify (start of text, after a space or a dropped emoji) they are dropped too.
        is_mark = cat.startswith("M")
        keep = after_letter if is_mark else _speakable(ch, lang)
        after_letter = after_letter if is_mark else keep and (ch.isalpha() or ch == "\u3007")
        if keep:
            if run:
                dropped.append("".join(run))
                run = []
                out.append(" ")  # "love😀you" -> "love you", not "loveyou"
            out.append(ch)
        else:
            run.append(ch)
    if run:
        dropped.append("".join(run))
    return "".join(out)


def _tidy(text: str, lang: str) -> str:
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.?!;:])", r"\1", text)
    text = re.sub(r",(\s*,)+", ",", text)
    text = re.sub(r",\s*([.?!;:])", r"\1", text)
    if lang == "zh":
        # Unify "你好，世界" and "你好,世界": one space after a mark that precedes a hanzi.
        text = re.sub(r"([,.?!;:])(?=[\u3400-\u9fff\uf900-\ufaff])", r"\1 ", text)
    return re.sub(r"[\s,;:]+$", "", re.sub(r"^[\s,.;:?!]+", "", text)).strip()


# ---------------------------------------------------------------- English

def _words(digits: str | int, to: str = "cardinal") -> str:
    # American style, as spoken: "one hundred five", no "and"; no commas, which would add pauses.
    digits = str(digits).replace(",", "")
    if len(digits) > 15:  # serial numbers and digit soup are read digit by digit, not as "quadrillions"
        return " ".join(_DIGITS_EN[int(d)] for d in digits)
    words = num2words(int(digits), lang="en", to=to)
    return words.replace(",", "").replace(" and ", " ")


_DIGITS_EN = "zero one two three four five six seven eight nine".split()
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
_LEFT = r"(?<![\w.,\-])"  # a number starts here: not inside a word, decimal or other number


def _number(num: str, sign: str = "", year_ok: bool = False) -> str:
    num = num.replace(",", "")
    whole, _, frac = num.partition(".")
    if year_ok and not sign and not frac and len(whole) == 4 and 1100 <= int(whole) <= 2099:
        words = _words(whole, to="year")
    else:
        words = _words(whole or "0")
        if frac:
            words += " point " + " ".join(_DIGITS_EN[int(d)] for d in frac)
    return ("minus " if sign else "") + words


def _plural(word_phrase: str) -> str:
    head, _, last = word_phrase.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return f"{head} {last}".strip()


def _keeps_period(text: str, end: int) -> bool:
    # "... apples, etc. Then" / "at 3 p.m." end a sentence: the abbreviation's dot is also a full stop.
    return re.match(r"\s*$|\s+[A-Z\"]", text[end:]) is not None


_CURRENCY = {  # symbol -> (unit, units, subunit, subunits); yen has no subunit in speech
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", None, None),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
_SCALES = {"k": "thousand", "m": "million", "b": "billion", "bn": "billion"}
_CURRENCY_RE = re.compile(
    _LEFT + r"(-)?([$£€¥₹])\s?(" + _NUM + r")(?:(\s?(?:thousand|million|billion|trillion)\b)|([kKmMbB]n?)\b)?"
)


def _currency(m: re.Match) -> str:
    sign, sym, num, scale_word, scale_abbr = m.groups()
    unit, units, sub, subs = _CURRENCY[sym]
    scale = (scale_word or "").strip() or _SCALES.get((scale_abbr or "").lower(), "")
    minus = "minus " if sign else ""
    if scale:
        return f" {minus}{_number(num)} {scale} {units} "
    whole, _, frac = num.replace(",", "").partition(".")
    if sub is None or len(frac) > 2:
        n = _number(num)
        return f" {minus}{n} {unit if n == 'one' else units} "
    major, minor = whole.lstrip("0") or "0", (frac.ljust(2, "0") if frac else "00").lstrip("0") or "0"
    parts = []
    if major != "0" or minor == "0":
        parts.append(f"{_words(major)} {unit if major == '1' else units}")
    if minor != "0":
        parts.append(f"{_words(minor)} {sub if minor == '1' else subs}")
    return f" {minus}{' and '.join(parts)} "


_TIME_RE = re.compile(r"\b([01]?\d|2[0-4]):([0-5]\d)(?:\s*([ap])\.?\s?m\b\.?)?", re.IGNORECASE)
_HOUR_AMPM_RE = re.compile(r"\b(1[0-2]|0?\d)\s?([ap])\.?\s?m\b\.?", re.IGNORECASE)


def _time(m: re.Match, text: str) -> str:
    hour, minute, ampm = int(m.group(1)), int(m.group(2)), m.group(3)
    words = _words(hour)
    if minute == 0 and not ampm:
        words += " o'clock"
    elif minute:
        words += (" oh " if minute < 10 else " ") + _words(minute)
    return " " + words + _ampm(m, ampm, text)


def _ampm(m: re.Match, ampm: str | None, text: str) -> str:
    if not ampm:
        return " "
    dot = "." if m.group(0).endswith(".") and _keeps_period(text, m.end()) else ""
    return f" {ampm.lower()} m{dot} "


_ABBREVIATIONS = {  # case-sensitive; titles are followed by a name, so their dot never ends a sentence
    "Mr": "Mister", "Mrs": "Misses", "Ms": "Miz", "Dr": "Doctor", "Prof": "Professor",
    "Jr": "Junior", "Sr": "Senior", "Mt": "Mount", "Capt": "Captain", "Lt": "Lieutenant",
    "Sgt": "Sergeant", "Col": "Colonel", "Gen": "General", "Gov": "Governor", "Rev": "Reverend",
    "vs": "versus", "Vs": "versus", "approx": "approximately", "dept": "department", "Dept": "Department",
}
_ABBREV_RE = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.")
_MONTHS = {"Jan": "January", "Feb": "February", "Mar": "March", "Apr": "April", "Jun": "June", "Jul": "July",
           "Aug": "August", "Sep": "September", "Sept": "September", "Oct": "October", "Nov": "November",
           "Dec": "December"}
# Only before a day number ("Jan. 5"): "Mar." or "Jun." alone may be a name or the end of a sentence.
_MONTH_RE = re.compile(r"\b(" + "|".join(_MONTHS) + r")\.(?=\s*\d)")
# Phone numbers are read digit by digit, in their groups: "555-0123" -> "five five five, zero one two three".
_PHONE_RE = re.compile(r"(?<![\d-])(?:\(\d{3}\)\s?|\d{3}[\s-])?\d{3}-\d{4}(?![\d-])")
_LATIN_ABBREV_RE = re.compile(r"(?<!\w)(e\.g|i\.e|etc)\.(?!\w)", re.IGNORECASE)
_LATIN_ABBREVIATIONS = {"e.g": "for example", "i.e": "that is", "etc": "et cetera"}


def _latin_abbrev(m: re.Match, text: str) -> str:
    words = _LATIN_ABBREVIATIONS[m.group(1).lower()]
    # Only "etc." sits at the end of a sentence in practice; "e.g." is always followed by more.
    dot = "." if m.group(1).lower() == "etc" and _keeps_period(text, m.end()) else ""
    return f"{words}{dot} "


_SYMBOLS = {"&": " and ", "+": " plus ", "@": " at ", "=": " equals ", "%": " percent ", "°": " degrees "}
_SYMBOL_RE = re.compile("[" + re.escape("".join(_SYMBOLS)) + "]")


def _normalize_en(text: str) -> str:
    sub = re.sub
    text = _LATIN_ABBREV_RE.sub(lambda m: _latin_abbrev(m, text), text)
    # "St. Louis" (a capitalized name follows) is a saint; "Main St." / "Baker St. is" a street.
    text = sub(r"\bSt\.(?=\s*[A-Z][a-z])", "Saint ", text)
    text = sub(r"\bSt\.", lambda m: "Street." if _keeps_period(m.string, m.end()) else "Street ", text)
    text = _ABBREV_RE.sub(lambda m: _ABBREVIATIONS[m.group(1)] + " ", text)
    text = _MONTH_RE.sub(lambda m: _MONTHS[m.group(1)] + " ", text)
    text = _PHONE_RE.sub(lambda m: " " + ", ".join(" ".join(_words(d) for d in g) for g in
                                                    re.findall(r"\d+", m.group(0))) + " ", text)
    text = sub(r"\b([Nn])o\.\s?(?=\d)", lambda m: "Number " if m[1] == "N" else "number ", text)
    text = sub(r"#\s?(?=\d)", "number ", text)
    text = _TIME_RE.sub(lambda m: _time(m, text), text)
    text = _HOUR_AMPM_RE.sub(lambda m: " " + _words(m.group(1)) + _ampm(m, m.group(2), text), text)
    text = _CURRENCY_RE.sub(_currency, text)
    text = sub(_LEFT + r"(-)?(" + _NUM + r")\s?%", lambda m: f" {_number(m[2], m[1] or '')} percent ", text)
    text = sub(
        _LEFT + r"(\d{1,3}(?:,\d{3})+|\d+)(st|nd|rd|th)\b",
        lambda m: " " + _words(m[1], to="ordinal") + " ",
        text,
        flags=re.IGNORECASE,
    )
    # Decades: "1990s" -> "nineteen nineties", "'80s" -> "eighties".
    text = sub(r"(?<![\w.,])'?(\d{1,3}0)s\b", lambda m: " " + _plural(_number(m[1], year_ok=True)) + " ", text)
    text = sub(r"(?<![\d/])(\d{1,4})/(\d{1,4})(?![\d/])", _fraction, text)
    text = sub(_LEFT + r"(-)?(" + _NUM + r")(?![\d])", lambda m: f" {_number(m[2], m[1] or '', True)} ", text)
    text = sub(r"\d+", lambda m: f" {_words(m[0])} ", text)  # digits glued to letters: "MP3"
    text = _SYMBOL_RE.sub(lambda m: _SYMBOLS[m.group(0)], text)
    return sub(r"[()\[\]{}]", ", ", text)  # a parenthesis is heard as a pause


def _fraction(m: re.Match) -> str:
    num, den = int(m[1]), int(m[2])
    if not 0 < num < den <= 100:
        return f" {_words(num)} {_words(den)} "  # "24/7", "9/11": read as two numbers
    names = {2: ("half", "halves"), 4: ("quarter", "quarters")}
    one, many = names.get(den, (_words(den, to="ordinal"), _plural(_words(den, to="ordinal"))))
    return f" {_words(num)} {one if num == 1 else many} "


# ---------------------------------------------------------------- Mandarin

_ZH_PUNCT = str.maketrans(
    {
        "。": ".", "、": ",", "｡": ".", "､": ",", "《": '"', "》": '"', "「": '"', "」": '"', "『": '"',
        "』": '"', "〈": '"', "〉": '"', "【": "(", "】": ")", "〔": "(", "〕": ")", "·": " ", "・": " ",
    }
)
_ZH_DIGITS = "零一二三四五六七八九"
_ZH_CURRENCY = {"$": "美元", "¥": "元", "€": "欧元", "£": "英镑"}  # spoken after the amount


def _zh_digits(digits: str) -> str:
    return "".join(_ZH_DIGITS[int(d)] for d in digits)


def _zh_currency(m: re.Match) -> str:
    amount = m[2].rstrip("0").rstrip(".") if "." in m[2] else m[2]  # "$1.50" is 一点五美元
    return amount + _ZH_CURRENCY[m[1]]


def _normalize_zh(text: str) -> str:
    # NFKC has already made full-width ASCII half-width ("，" -> ","); the rest of the CJK marks
    # are mapped here so the phonemizer and tokenizer see one set of marks whichever width was typed.
    text = text.translate(_ZH_PUNCT)
    # Hanzi count as \w, so digit boundaries are written as digit look-arounds, not \b.
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    # ISO dates, clock times and ranges, which cn2an would read as subtractions and ratios.
    text = re.sub(
        r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)",
        lambda m: f"{m[1]}年{int(m[2])}月{int(m[3])}日",
        text,
    )
    text = re.sub(
        r"(?<!\d)([01]?\d|2[0-4]):([0-5]\d)(?!\d)",
        lambda m: f"{int(m[1])}点" + (f"{int(m[2])}分" if int(m[2]) else ""),
        text,
    )
    text = re.sub(r"(?<=\d)\s*[-~]\s*(?=\d)", "至", text)
    # Phone and account numbers (long, or zero-led like 010) are read digit by digit.
    text = re.sub(r"(?<![\d.])(0\d{2,}|\d{11,})(?![\d.])", lambda m: _zh_digits(m[0]), text)
    text = re.sub(r"(?<![\d.])([$¥€£])\s?(\d+(?:\.\d+)?)", _zh_currency, text)
    try:
        import cn2an  # slow to import (~0.2 s), so only when Mandarin text is normalized

        with warnings.catch_warnings():
            # cn2an warns (in Chinese) on input it cannot convert; the digit fallback below covers it.
            warnings.simplefilter("ignore")
            text = cn2an.transform(text, "an2cn")
    except Exception:  # noqa: BLE001 - cn2an raises bare Exceptions on odd input; digits below still work
        pass
    return re.sub(r"\d+", lambda m: _zh_digits(m[0]), text)


# ---------------------------------------------------------------- other languages

def _expand_digits_generic(text: str, lang: str) -> str:
    # num2words speaks many languages; where it does not, digits stay for the phonemizer to read.
    def words(m: re.Match) -> str:
        try:
            return f" {num2words(int(m[0]), lang=lang)} "
        except (NotImplementedError, OverflowError, ValueError, KeyError, TypeError):
            return m[0]

    return re.sub(r"\d+", words, text)

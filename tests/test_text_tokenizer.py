"""Text tokenizer: id layout, segmentation, encode/decode, unknowns, and the saved vocabulary file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechlm.text import (
    BOS_ID,
    EOS_ID,
    NAMED_TAGS,
    NUM_TAG_SLOTS,
    PAD_ID,
    SPECIAL_TOKENS,
    SYMBOL_OFFSET,
    TAG_TOKENS,
    UNK_ID,
    TextError,
    TextFrontend,
    TextTokenizer,
    split_symbols,
)
from speechlm.text.tokenizer import _content_hash

PHONEMES = ["həlˈoʊ wˈɜːld!", "kˈæt, dˈɑːɡ?", "s.ˈi.5 tɕˈiɛ5 sˈi̪5"]


@pytest.fixture()
def tok() -> TextTokenizer:
    return TextTokenizer.build(PHONEMES, kind="phoneme", language="en")


def test_id_layout_constants() -> None:
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert SPECIAL_TOKENS == ("<pad>", "<unk>", "<bos>", "<eos>")
    assert len(TAG_TOKENS) == NUM_TAG_SLOTS == 64 and len(set(TAG_TOKENS)) == 64
    assert TAG_TOKENS[:3] == ("<|tts|>", "<|continue|>", "<|asr|>") and TAG_TOKENS[11] == "<|lang:zh|>"
    assert TAG_TOKENS[12] == "<|reserved_12|>" and TAG_TOKENS[-1] == "<|reserved_63|>"
    assert SYMBOL_OFFSET == 4 + 64


def test_tag_ids_stable_and_distinct_from_symbols(tok: TextTokenizer) -> None:
    other = TextTokenizer.build(["completely different symbols 12345"], kind="char")
    for i, name in enumerate(NAMED_TAGS):
        assert tok.tag_id(name) == other.tag_id(name) == 4 + i
    assert tok.tag_id("tts") == tok.tag_id("<|tts|>") == 4
    assert tok.tag_id("lang:zh") == 15
    symbol_ids = set(tok.encode("".join(PHONEMES)))
    tag_ids = {tok.tag_id(t) for t in TAG_TOKENS}
    assert not symbol_ids & tag_ids and min(symbol_ids) == SYMBOL_OFFSET
    with pytest.raises(TextError, match="unknown markup tag 'karaoke'"):
        tok.tag_id("karaoke")


def test_segmentation() -> None:
    # The combining dental diacritic stays on its vowel; stress, length and space are symbols.
    assert split_symbols("sˈi̪5 ɑː") == ["s", "ˈ", "i̪", "5", " ", "ɑ", "ː"]
    assert split_symbols("e\u0301") == ["é"]  # NFC: decomposed and composed é are one symbol
    assert split_symbols("a, b.") == ["a", ",", " ", "b", "."]


def test_build_is_sorted_deterministic_and_respects_min_count() -> None:
    a = TextTokenizer.build(["ba", "ab"])
    b = TextTokenizer.build(["ab", "ba", "ab"])
    assert a.symbols == b.symbols == ("a", "b") and a.vocab_size == SYMBOL_OFFSET + 2
    rare = TextTokenizer.build(["aab", "ac"], min_count=2)
    assert rare.symbols == ("a",)
    with pytest.raises(TextError, match="no symbols occur at least 5"):
        TextTokenizer.build(["abc"], min_count=5)
    with pytest.raises(TextError, match="not one str"):
        TextTokenizer.build("abc")  # type: ignore[arg-type]
    with pytest.raises(TextError, match="unknown tokenizer kind 'bpe'"):
        TextTokenizer.build(["abc"], kind="bpe")


def test_encode_decode_round_trip(tok: TextTokenizer) -> None:
    for text in PHONEMES:
        ids = tok.encode(text)
        assert len(ids) == len(split_symbols(text)) and UNK_ID not in ids
        assert tok.decode(ids) == text
    ids = tok.encode(PHONEMES[0], add_bos=True, add_eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert tok.decode([tok.tag_id("tts"), *ids, PAD_ID]) == PHONEMES[0]
    assert tok.decode([tok.tag_id("tts"), BOS_ID], skip_special=False) == "<|tts|><bos>"
    with pytest.raises(TextError, match="outside this tokenizer's vocabulary"):
        tok.decode([tok.vocab_size])
    with pytest.raises(TextError, match="outside"):
        tok.decode([-1])


def test_unknown_symbols(tok: TextTokenizer) -> None:
    ids = tok.encode("kæt ʒ ʒ ñ")
    assert ids.count(UNK_ID) == 3
    assert tok.unknown_symbols(["kæt ʒ ʒ ñ", "ñ"]) == {"ʒ": 2, "ñ": 2}
    assert not tok.unknown_symbols(PHONEMES)
    with pytest.raises(TextError, match="not in the phoneme vocabulary: \\['ñ', 'ʒ'\\]"):
        tok.encode("ʒñ", strict=True)


def test_frontend_to_tokenizer_end_to_end() -> None:
    front = TextFrontend("en")
    outs = front.process(["The cat sat on the mat.", "A cat, 2 mats!"])
    tok = TextTokenizer.build([o.phonemes for o in outs], kind=front.symbol_kind, language="en")
    for o in outs:
        assert tok.decode(tok.encode(o.phonemes, strict=True)) == o.phonemes


def test_save_load_round_trip(tok: TextTokenizer, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tokenizer.json"
    tok.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]  # no temp file left behind
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "speechlm-text-tokenizer" and data["version"] == 1
    assert data["kind"] == "phoneme" and data["language"] == "en"
    assert data["specials"] == list(SPECIAL_TOKENS) and data["tags"] == list(TAG_TOKENS)
    assert data["symbols"] == list(tok.symbols) and data["hash"].startswith("sha256:")
    loaded = TextTokenizer.load(path)
    assert loaded == tok and loaded.content_hash == tok.content_hash
    assert [loaded.encode(t) for t in PHONEMES] == [tok.encode(t) for t in PHONEMES]


def _write(path: Path, data: dict, rehash: bool = True) -> Path:
    if rehash:
        data["hash"] = _content_hash({k: v for k, v in data.items() if k != "hash"})
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture()
def saved(tok: TextTokenizer, tmp_path: Path) -> dict:
    tok.save(tmp_path / "tok.json")
    return json.loads((tmp_path / "tok.json").read_text(encoding="utf-8"))


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TextError, match="tokenizer file not found: .*nope.json"):
        TextTokenizer.load(tmp_path / "nope.json")


def test_load_invalid_json(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"format": "speechlm-text-tokenizer",', encoding="utf-8")
    with pytest.raises(TextError, match=r"bad.json is not valid JSON \(line 1"):
        TextTokenizer.load(tmp_path / "bad.json")


def test_load_wrong_format(saved: dict, tmp_path: Path) -> None:
    path = _write(tmp_path / "t.json", {**saved, "format": "codec-manifest"})
    with pytest.raises(TextError, match="not a speechlm text tokenizer \\(format 'codec-manifest'"):
        TextTokenizer.load(path)
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(TextError, match="format 'list'"):
        TextTokenizer.load(tmp_path / "list.json")


def test_load_unsupported_version(saved: dict, tmp_path: Path) -> None:
    path = _write(tmp_path / "t.json", {**saved, "version": 2})
    with pytest.raises(TextError, match="format version 2 is not supported \\(this speechlm reads version 1\\)"):
        TextTokenizer.load(path)


def test_load_hash_mismatch(saved: dict, tmp_path: Path) -> None:
    symbols = list(saved["symbols"])
    symbols[0], symbols[1] = symbols[1], symbols[0]  # a hand edit that would silently swap two ids
    path = _write(tmp_path / "t.json", {**saved, "symbols": symbols}, rehash=False)
    with pytest.raises(TextError, match="content hash mismatch.*edited or corrupted"):
        TextTokenizer.load(path)


def test_load_bad_fields(saved: dict, tmp_path: Path) -> None:
    path = _write(tmp_path / "t.json", {k: v for k, v in saved.items() if k != "symbols"})
    with pytest.raises(TextError, match="field 'symbols' is missing"):
        TextTokenizer.load(path)
    path = _write(tmp_path / "t.json", {**saved, "specials": ["<pad>", "<eos>", "<bos>", "<unk>"]})
    with pytest.raises(TextError, match="ids would not line up"):
        TextTokenizer.load(path)


def test_load_tag_slots(saved: dict, tmp_path: Path) -> None:
    # A file from before a reserved slot got its name still loads: the ids are the same.
    older = list(saved["tags"])
    older[11] = "<|reserved_11|>"
    assert TextTokenizer.load(_write(tmp_path / "old.json", {**saved, "tags": older})).tag_id("lang:zh") == 15
    # A slot naming a different task would swap tasks silently: refused.
    swapped = list(saved["tags"])
    swapped[0], swapped[2] = swapped[2], swapped[0]
    with pytest.raises(TextError, match="tag slot 0 is '<\\|asr\\|>' in the file but '<\\|tts\\|>'"):
        TextTokenizer.load(_write(tmp_path / "swap.json", {**saved, "tags": swapped}))

"""Chat turns: exact closed-domain answers, a held-out split by question, phonemized with the corpus front-end."""

from __future__ import annotations

import json

import pytest

from speechlm.corpus.dialogues import build_turns
from speechlm.data.chat_stage import load_chat_turns, run_chat_stage
from speechlm.errors import SpeechLMError
from speechlm.text.frontend import TextFrontend
from speechlm.text.tokenizer import TextTokenizer


def test_answers_are_computed_and_the_split_is_seeded():
    turns = build_turns(seed=0)
    by_user = {t.user: t for t in turns}
    assert by_user["What is seven plus eight?"].reply == "Seven plus eight is fifteen."
    assert by_user["What is ten times nine?"].reply == "Ten times nine is ninety."
    assert by_user["What day comes after Sunday?"].reply == "The day after Sunday is Monday."
    assert by_user["Which is bigger, three or eleven?"].reply == "Eleven is bigger than three."
    assert len(by_user) == len(turns), "every question is asked once"
    test = {t.id for t in turns if t.split == "test"}
    assert 0.05 < len(test) / len(turns) < 0.15
    assert test == {t.id for t in build_turns(seed=0) if t.split == "test"}
    assert test != {t.id for t in build_turns(seed=1) if t.split == "test"}
    assert all(t.split == "train" for t in turns if t.topic == "courtesy")


@pytest.fixture()
def text_dir(tmp_path):
    """A data dir whose stage-3 tokenizer covers every symbol except 'θ' (three, thirty, Thursday...)."""
    turns = build_turns()
    fe = TextFrontend("en")
    phonemes = [o.phonemes for o in fe.process([t.user for t in turns] + [t.reply for t in turns])]
    tok = TextTokenizer.build([p.replace("θ", "") for p in phonemes], kind=fe.symbol_kind)
    (tmp_path / "text").mkdir()
    tok.save(tmp_path / "text" / "tokenizer.json")
    return tmp_path


def test_stage_writes_phonemized_turns_and_leaves_out_unknown_symbols(text_dir):
    report = run_chat_stage(text_dir)
    rows = {s: load_chat_turns(text_dir / "text" / f"chat_{s}.jsonl") for s in ("train", "test")}
    kept = rows["train"] + rows["test"]
    assert report.turns == {"train": len(rows["train"]), "test": len(rows["test"])}
    assert report.left_out == len(build_turns()) - len(kept) > 0 and report.unknown_symbols.get("θ", 0) > 0
    assert all("θ" not in r["user_phonemes"] + r["reply_phonemes"] for r in kept)
    assert {r["split"] for r in rows["test"]} == {"test"}
    assert run_chat_stage(text_dir).skipped_as_done


def test_missing_tokenizer_and_bad_lines_are_clear_errors(tmp_path):
    with pytest.raises(SpeechLMError, match="run the text stage"):
        run_chat_stage(tmp_path)
    bad = tmp_path / "chat_train.jsonl"
    bad.write_text(json.dumps({"id": "x", "user_phonemes": "a", "reply_phonemes": "b"}) + "\n{oops\n")
    with pytest.raises(SpeechLMError, match=r"chat_train.jsonl:2"):
        load_chat_turns(bad)

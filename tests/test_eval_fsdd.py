"""eval/eval_fsdd.py end to end on a fake FSDD layout with a tiny random-weight pipeline: every system
is scored on every test item, and the numbers it reports are the ones its rows say."""

from __future__ import annotations

import json

import numpy as np
import pytest

from speechlm.data.prepare import prepare
from speechlm.data.split import split_manifest
from tests.conftest import eval_script, voiced
from tests.test_pipeline import build_tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def test_nearest_digit_by_phoneme_edit_distance():
    nearest = eval_script("eval_fsdd").nearest
    refs = {"seven": "sˈɛvən", "one": "wˈʌn", "nine": "nˈaɪn"}
    assert nearest("sˈɛvən", refs) == "seven"
    assert nearest("sɛvn", refs) == "seven"  # two edits from seven, more from the others
    assert nearest("nˈaɪ", refs) == "nine"
    assert nearest("", refs) == ""  # nothing recognized is no digit


def test_eval_fsdd_scores_every_item_of_every_system(layouts, tmp_path):
    data = tmp_path / "fsdd"
    prepare("fsdd", layouts.fsdd(), data, progress=False)
    split_manifest(data / "cuts.jsonl.gz", data)
    pipe = build_tiny_pipeline()
    for name, f0 in (("jackson", 120.0), ("theo", 180.0)):
        pipe.add_voice(name, voiced(0.5, 8000, f0=f0), 8000, text="seven", speaker=name)
    pipe.defaults.max_seconds_per_token, pipe.defaults.slack_seconds = 0.02, 0.1  # a random LM babbles: keep it short
    pipe.save_pretrained(tmp_path / "pipe")
    out = tmp_path / "report"
    assert eval_script("eval_fsdd").main(["--model", str(tmp_path / "pipe"), "--data", str(data), "--out", str(out),
                              "--threads", "1"]) == 0
    report = json.loads((out / "fsdd_eval.json").read_text())
    rows = [json.loads(line) for line in (out / "utterances.jsonl").read_text().splitlines()]
    assert report["items"] == 4 and not report["failed"]  # FSDD's test split: take 0 of each (digit, speaker)
    for system in ("recording", "codec", "tts"):
        mine = [r for r in rows if r["system"] == system]
        assert len(mine) == 4
        s = report["summary"][system]
        assert s["pocketsphinx_accuracy"] == pytest.approx(np.mean([r["pocketsphinx"] == r["digit"] for r in mine]))
        assert all(r["pocketsphinx"] in {"", "zero", "one", "two", "three", "four", "five", "six", "seven",
                                         "eight", "nine"} for r in mine)
    assert report["summary"]["recording"]["duration_ratio_median"] == pytest.approx(1.0, abs=0.01)
    assert len(list((out / "wavs").glob("*.wav"))) == 4 and (out / "confusion.png").stat().st_size > 0
    assert "| our TTS" in (out / "fsdd_eval.md").read_text()

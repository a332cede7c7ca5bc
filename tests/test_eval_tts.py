"""eval/eval_tts.py end to end with a tiny random-weight pipeline on a fake two-voice test split: every
(sentence, voice) pair is synthesized and scored for all three systems, and the duration-only path
reports what the outputs' lengths say."""

from __future__ import annotations

import json
import shutil

import pytest
import soundfile as sf

from speechlm.data.prepare import prepare
from tests.conftest import eval_script, voiced
from tests.test_pipeline import SENTENCES, build_tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture
def corpus(tmp_path):
    """Two sentences, each spoken by both voices, laid out as the embedded corpus's test split."""
    root = tmp_path / "corpus"
    lines = []
    for s, text in enumerate(SENTENCES[:2]):
        for voice, f0 in (("alice", 210.0), ("bob", 110.0)):
            uid = f"{voice}_s{s}"
            (root / "wavs").mkdir(parents=True, exist_ok=True)
            sf.write(root / "wavs" / f"{uid}.wav", voiced(0.8 + 0.2 * s, 24000, f0=f0, seed=s), 24000)
            lines.append(f"{uid}|{voice}|{text}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = tmp_path / "data"
    prepare("generic", root, data, progress=False)
    shutil.copy(data / "cuts.jsonl.gz", data / "cuts_test.jsonl.gz")
    return data


@pytest.fixture
def pipeline_dir(tmp_path):
    pipe = build_tiny_pipeline()
    pipe.defaults.max_seconds_per_token, pipe.defaults.slack_seconds = 0.02, 0.1  # a random LM babbles
    return pipe.save_pretrained(tmp_path / "pipe")


def test_pick_deals_different_sentences_to_each_voice():
    class Cut:
        def __init__(self, voice, s):
            self.id = f"{voice}_{s}"
            self.supervisions = [type("S", (), {"speaker": voice})()]

    cuts = [Cut(v, f"s{i}") for i in range(4) for v in ("a", "b")]
    _, voices, picked = eval_script("eval_tts")._pick(cuts, None, per_voice=2)
    assert voices == ["a", "b"] and picked == [("s0", "a"), ("s2", "a"), ("s1", "b"), ("s3", "b")]
    assert len(eval_script("eval_tts")._pick(cuts, ["b"], None)[2]) == 4
    with pytest.raises(SystemExit, match="unknown voice"):
        eval_script("eval_tts")._pick(cuts, ["carol"], None)


def test_eval_tts_scores_every_pair_of_every_system(corpus, pipeline_dir, tmp_path):
    out = tmp_path / "report"
    assert eval_script("eval_tts").main(["--model", str(pipeline_dir), "--data", str(corpus), "--out", str(out),
                             "--threads", "1", "--batch-size", "2"]) == 0
    report = json.loads((out / "tts_eval.json").read_text())
    assert report["items"] == 4 and not report["failed"]
    assert set(report["summary"]) == {"speechlm", "engine", "codec"}
    assert set(report["per_voice"]) == {"alice", "bob"} and all(v["n"] == 2 for v in report["per_voice"].values())
    assert report["duration"]["n"] == 4
    # a random LM's output may hold no speech: it is named and left out of SIM, not a crash
    assert set(report["sim_no_speech"]) <= {f"{v}_s{i}" for v in ("alice", "bob") for i in (0, 1)}
    assert all(k in (out / "tts_eval.md").read_text() for k in report["sim_no_speech"])
    assert len(list((out / "wavs").glob("*.wav"))) == 4 and len(list((out / "wavs" / "codec").glob("*.wav"))) == 4
    for name in ("speechlm", "engine", "codec"):
        assert len((out / f"{name}.jsonl").read_text().splitlines()) == 4
    assert "speechlm" in (out / "tts_eval.md").read_text()


def test_durations_only_reports_each_pairs_ratio(corpus, pipeline_dir, tmp_path):
    out = tmp_path / "durations"
    assert eval_script("eval_tts").main(["--model", str(pipeline_dir), "--data", str(corpus), "--out", str(out),
                             "--threads", "1", "--durations-only"]) == 0
    report = json.loads((out / "durations.json").read_text())
    assert report["items"] == 4 and report["failed"] == 0
    ratios = []
    for s, ref_seconds in (("s0", 0.8), ("s1", 1.0)):
        for voice in ("alice", "bob"):
            info = sf.info(out / "wavs" / f"{voice}_{s}.wav")
            ratios.append(info.frames / info.samplerate / ref_seconds)
    assert report["min"] == pytest.approx(min(ratios), rel=0.01) and report["max"] == pytest.approx(max(ratios), rel=0.01)
    outside = [r for r in ratios if not 0.5 <= r <= 2.0]
    assert len(report["outside_0.5_2"]) == len(outside)
    assert f"{len(outside)} outside 0.5-2x" in (out / "durations.md").read_text()
    assert not (out / "tts_eval.json").exists()  # nothing scored


def test_missing_split_and_unknown_voice_are_named(corpus, pipeline_dir, tmp_path):
    with pytest.raises(SystemExit, match="cuts_dev.jsonl.gz"):
        eval_script("eval_tts").main(["--model", str(pipeline_dir), "--data", str(corpus), "--out", str(tmp_path / "o"),
                          "--split", "dev"])
    with pytest.raises(SystemExit, match="no preset for voice"):
        eval_script("eval_tts").main(["--model", str(pipeline_dir), "--data", str(corpus), "--out", str(tmp_path / "o"),
                          "--voices", "carol"])

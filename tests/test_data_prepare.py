"""Corpus preparation: every layout, every kind of bad input, atomic writes, idempotent and resumable stages."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlm.data.audio import AudioCheck
from speechlm.data.manifest import Utterance, iter_manifest, read_manifest
from speechlm.data.prepare import PrepareOptions, prepare
from speechlm.errors import BadInputError, Problem, SpeechLMError
from tests.conftest import write_wav


def _utts(out: Path) -> dict[str, Utterance]:
    return {c.id: Utterance.from_cut(c) for c in iter_manifest(out / "cuts.jsonl.gz")}


# ------------------------------------------------------------------------------------------ layouts

def test_ljspeech_layout(layouts, tmp_path):
    report = prepare("ljspeech", layouts.ljspeech(3), tmp_path / "out", progress=False)
    utts = _utts(tmp_path / "out")
    assert report.kept == 3 and sorted(utts) == ["LJ001-0000", "LJ001-0001", "LJ001-0002"]
    u = utts["LJ001-0001"]
    assert u.speaker == "LJ" and u.sample_rate == 22050 and u.language == "en"
    assert u.text == "Chapter 2, printed in 1198."  # the corpus's own text is kept as written
    assert "eighteen ninety-eight" in u.normalized_text  # normalization starts from LJSpeech's column 3
    assert math.isclose(u.duration, 0.6, abs_tol=1e-3) and Path(u.audio_path).is_absolute()


def test_librispeech_layout_keeps_subsets(layouts, tmp_path):
    prepare("librispeech", layouts.librispeech(), tmp_path / "out", progress=False)
    utts = _utts(tmp_path / "out")
    assert len(utts) == 6
    assert utts["19-198-0002"].text == "THE QUICK BROWN FOX NUMBER 2"
    assert utts["19-198-0002"].normalized_text == "THE QUICK BROWN FOX NUMBER two"
    assert utts["19-198-0000"].split == "train" and utts["84-121123-0000"].split == "dev"
    assert utts["84-121123-0000"].extra["subset"] == "dev-clean" and utts["84-121123-0000"].speaker == "84"


def test_libritts_layout_uses_sidecars(layouts, tmp_path):
    prepare("libritts", layouts.libritts(), tmp_path / "out", progress=False)
    utts = _utts(tmp_path / "out")
    assert len(utts) == 4
    u = utts["103_1241_000001_000001"]
    assert u.text == "Mr. Smith paid $3." and u.normalized_text == "Mister Smith paid three dollars."
    assert u.speaker == "103" and u.sample_rate == 24000 and u.split == "train"
    assert utts["1089_134686_000000_000000"].split == "test"


def test_vctk_layout_picks_microphone(layouts, tmp_path):
    root = layouts.vctk()
    prepare("vctk", root, tmp_path / "mic1", progress=False)
    prepare("vctk", root, tmp_path / "mic2", PrepareOptions(mic="mic2"), progress=False)
    a, b = _utts(tmp_path / "mic1"), _utts(tmp_path / "mic2")
    assert sorted(a) == ["p225_001", "p225_002", "p226_001", "p226_002"]
    assert a["p225_001"].audio_path.endswith("p225_001_mic1.flac")
    assert b["p225_001"].audio_path.endswith("p225_001_mic2.flac")
    assert a["p226_001"].extra["gender"] == "M" and a["p225_001"].sample_rate == 48000


def test_fsdd_layout_official_test_split(layouts, tmp_path):
    prepare("fsdd", layouts.fsdd(), tmp_path / "out", progress=False)
    utts = _utts(tmp_path / "out")
    assert len(utts) == 12 and utts["7_theo_5"].text == "seven" and utts["0_jackson_0"].text == "zero"
    assert {u.split for k, u in utts.items() if k.endswith("_0")} == {"test"}
    assert {u.split for k, u in utts.items() if not k.endswith("_0")} == {"train"}


def test_generic_table_and_sidecars(layouts, tmp_path):
    prepare("generic", layouts.generic_table(n=4), tmp_path / "t", progress=False)
    t = _utts(tmp_path / "t")
    assert t["utt3"].speaker == "spk1" and t["utt3"].text == "Sentence number 3."
    assert t["utt3"].normalized_text == "Sentence number three."
    prepare("generic", layouts.generic_sidecar(), tmp_path / "s", progress=False)
    s = _utts(tmp_path / "s")
    assert sorted(s) == ["alice_alice_0", "alice_alice_1", "bob_bob_0", "bob_bob_1"]
    assert s["bob_bob_1"].speaker == "bob" and s["bob_bob_1"].text == "Hello from bob, take 2."


def test_generic_table_with_header_and_csv_quoting(layouts, tmp_path):
    root = layouts.generic_table(lines=["file,text,speaker", 'a.wav,"Hello, world",x', 'b.wav,Bye.,y'])
    for name in ("a", "b"):
        write_wav(root / f"{name}.wav")
    prepare("generic", root, tmp_path / "out", progress=False)
    utts = _utts(tmp_path / "out")
    assert utts["a"].text == "Hello, world" and utts["b"].speaker == "y"


def test_manifest_round_trip_and_bad_line(layouts, tmp_path):
    prepare("generic", layouts.generic_table(n=2), tmp_path / "out", progress=False)
    cuts = read_manifest(tmp_path / "out" / "cuts.jsonl.gz")
    for cut in cuts:
        assert Utterance.from_cut(Utterance.from_cut(cut).to_cut()) == Utterance.from_cut(cut)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n', encoding="utf-8")
    with pytest.raises(SpeechLMError, match=r"bad.jsonl:1: not a valid manifest line"):
        list(iter_manifest(bad))
    with pytest.raises(SpeechLMError, match="manifest not found"):
        list(iter_manifest(tmp_path / "missing.jsonl.gz"))


# ------------------------------------------------------------------------------------------ bad input

def _break(root: Path, case: str) -> str:
    """Damage the 4-item generic corpus at ``root`` in one way; return a regex the error must match."""
    meta = root / "metadata.csv"
    wavs = root / "wavs"
    lines = meta.read_text(encoding="utf-8").splitlines()
    if case == "corrupt":
        (wavs / "utt1.wav").write_bytes(os.urandom(2000))
        return r"utt1\.wav: cannot decode audio"
    if case == "truncated_wav":
        data = (wavs / "utt1.wav").read_bytes()
        (wavs / "utt1.wav").write_bytes(data[: len(data) // 2])
        return r"utt1\.wav: truncated: WAV header promises \d+ frames"
    if case == "truncated_flac":
        (wavs / "utt1.wav").unlink()
        write_wav(wavs / "utt1.flac", seconds=2.0, fmt="FLAC")
        data = (wavs / "utt1.flac").read_bytes()
        (wavs / "utt1.flac").write_bytes(data[: len(data) // 2])
        return r"utt1\.flac: (corrupt or truncated|truncated)"
    if case == "missing_file":
        (wavs / "utt1.wav").unlink()
        return r"metadata\.csv:2 \[utt1\]: audio .*utt1\.wav: file does not exist"
    if case == "empty_transcript":
        lines[1] = "utt1|spk1|   "
    elif case == "zero_length":
        sf.write(wavs / "utt1.wav", np.zeros(0, np.float32), 16000)
        return r"utt1\.wav: zero-length audio"
    elif case == "silent":
        sf.write(wavs / "utt1.wav", np.zeros(16000, np.float32), 16000)
        return r"utt1\.wav: silent clip \(peak -inf dBFS"
    elif case == "nan":
        x = np.full(1600, 0.1, np.float32)
        x[100] = np.nan
        sf.write(wavs / "utt1.wav", x, 16000, subtype="FLOAT")
        return r"utt1\.wav: contains NaN"
    elif case == "too_long":
        write_wav(wavs / "utt1.wav", seconds=3.0)
        return r"utt1\.wav: too long: 3\.00 s > max_duration 2 s"
    elif case == "duplicate_id":
        lines[3] = lines[1].replace("Sentence", "Another sentence")
        meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return r"metadata\.csv:4 \[utt1\]: field 'id': duplicate id 'utt1' \(first seen at .*metadata\.csv:2\)"
    elif case == "non_utf8":
        raw = meta.read_bytes().splitlines()
        raw[1] = b"utt1|spk1|Caf\xe9 au lait."  # Latin-1, not UTF-8
        meta.write_bytes(b"\n".join(raw) + b"\n")
        return r"metadata\.csv:2: not valid UTF-8 \(byte 0xe9 at column 14\)"
    elif case == "malformed_line":
        lines[1] = "utt1 spk1 no separators here"
    elif case == "emoji_only":
        lines[1] = "utt1|spk1|\U0001F600\U0001F44D"
        meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return r"metadata\.csv:2 \[utt1\]: field 'text': transcript has nothing speakable"
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"empty_transcript": r"metadata\.csv:2 \[utt1\]: field 'text': empty transcript",
            "malformed_line": r"metadata\.csv:2: malformed line: expected 3 '\|'-separated fields"}[case]


BAD_CASES = ["corrupt", "truncated_wav", "truncated_flac", "missing_file", "empty_transcript", "zero_length",
             "silent", "nan", "too_long", "duplicate_id", "non_utf8", "malformed_line", "emoji_only"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_stops_before_writing(layouts, tmp_path, case):
    root = layouts.generic_table(n=4)
    expected = _break(root, case)
    out = tmp_path / "out"
    opts = PrepareOptions(check=AudioCheck(max_duration=2.0))
    with pytest.raises(BadInputError, match=expected) as err:
        prepare("generic", root, out, opts, progress=False)
    assert "nothing was written" in str(err.value) and len(err.value.problems) == 1
    assert not (out / "cuts.jsonl.gz").exists()


@pytest.mark.parametrize("case", BAD_CASES)
def test_skip_bad_writes_good_items_and_rejects(layouts, tmp_path, case):
    root = layouts.generic_table(n=4)
    expected = _break(root, case)
    out = tmp_path / "out"
    opts = PrepareOptions(check=AudioCheck(max_duration=2.0), skip_bad=True)
    report = prepare("generic", root, out, opts, progress=False)
    kept = _utts(out)
    assert report.rejected == 1 and report.kept == len(kept)
    assert "utt0" in kept and "utt2" in kept
    if case == "duplicate_id":
        assert kept["utt1"].text == "Sentence number 1."  # the first occurrence wins
    else:
        assert "utt1" not in kept
    rejects = (out / "rejects.tsv").read_text(encoding="utf-8").splitlines()
    assert rejects[0] == "source\tline\tid\tfield\tproblem" and len(rejects) == 2
    src, line, uid, field, problem = rejects[1].split("\t")
    row = Problem(source=src, problem=problem, line=int(line) if line else None, item_id=uid or None,
                  field=field or None)
    assert re.search(expected, str(row))


def test_audio_only_corpus_allows_empty_text(layouts, tmp_path):
    root = layouts.generic_table(lines=["a|s|", "b|s|"])
    with pytest.raises(BadInputError, match="empty transcript"):
        prepare("generic", root, tmp_path / "strict", progress=False)
    report = prepare("generic", root, tmp_path / "ok", PrepareOptions(require_text=False), progress=False)
    assert report.kept == 2 and _utts(tmp_path / "ok")["a"].text == ""


def test_unknown_corpus_and_missing_root(tmp_path):
    with pytest.raises(SpeechLMError, match="unknown corpus 'timit'"):
        prepare("timit", tmp_path, tmp_path / "out")
    with pytest.raises(SpeechLMError, match="LJSpeech root directory does not exist"):
        prepare("ljspeech", tmp_path / "nope", tmp_path / "out")


# ------------------------------------------------------------------------------------------ stages

def test_rerun_is_a_no_op_and_option_change_reruns(layouts, tmp_path):
    root, out = layouts.generic_table(n=3), tmp_path / "out"
    prepare("generic", root, out, progress=False)
    manifest = out / "cuts.jsonl.gz"
    mtime = manifest.stat().st_mtime_ns
    again = prepare("generic", root, out, progress=False)
    assert again.skipped_as_done and "already done" in again.summary()
    assert manifest.stat().st_mtime_ns == mtime
    changed = prepare("generic", root, out, PrepareOptions(language="en-gb"), progress=False)
    assert not changed.skipped_as_done and _utts(out)["utt0"].language == "en-gb"


def test_failed_write_keeps_previous_manifest_and_leaves_no_temp(layouts, tmp_path, monkeypatch):
    root, out = layouts.generic_table(n=3), tmp_path / "out"
    prepare("generic", root, out, progress=False)
    before = (out / "cuts.jsonl.gz").read_bytes()

    from lhotse import CutSet

    def crash(self, path):
        Path(path).write_bytes(b"half a manifest")
        raise OSError("disk full")

    monkeypatch.setattr(CutSet, "to_file", crash)
    with pytest.raises(OSError, match="disk full"):
        prepare("generic", root, out, PrepareOptions(force=True), progress=False)
    assert (out / "cuts.jsonl.gz").read_bytes() == before
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_interrupted_audio_check_resumes(layouts, tmp_path, monkeypatch):
    root, out = layouts.generic_table(n=8), tmp_path / "out"
    import speechlm.data.prepare as prep

    real, calls = prep.inspect_audio, []

    def flaky(path, check):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(path, check)

    monkeypatch.setattr(prep, "inspect_audio", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare("generic", root, out, PrepareOptions(workers=1), progress=False)
    assert not (out / "cuts.jsonl.gz").exists()
    calls.clear()
    monkeypatch.setattr(prep, "inspect_audio", lambda p, c: (calls.append(p), real(p, c))[1])
    report = prepare("generic", root, out, PrepareOptions(workers=1), progress=False)
    assert report.kept == 8 and len(calls) == 4  # the 4 files checked before the interruption are reused

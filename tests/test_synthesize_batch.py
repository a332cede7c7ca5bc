"""`speechlm say` and `speechlm synthesize`: WAVs, manifest, resuming, failures, 2-process exactly-once runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch

from speechlm.cli import main
from speechlm.errors import SpeechLMError
from speechlm.synthesis.batch import ShardedBatches, read_items, run_batch, wav_name
from tests.test_pipeline import build_tiny_pipeline

FAST = {"max_frames": 3}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(build_tiny_pipeline().save_pretrained(tmp_path_factory.mktemp("model") / "tiny"))


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_say_writes_a_readable_wav(model, tmp_path, capsys):
    out = tmp_path / "hello.wav"
    assert main(["say", "Hello there. How are you?", "-o", str(out), "--model", model, "--speaker", "bob",
                 "--max-frames", "4", "--seed", "3"]) == 0
    wav, sr = sf.read(out)
    assert sr == 24000 and 2 * 960 <= len(wav) <= 8 * 960 + 24000
    assert "2 piece(s)" in capsys.readouterr().out
    assert main(["say", "Hi.", "-o", str(tmp_path / "x.wav"), "--model", model, "--voice", "nope.wav"]) == 1
    assert "nope.wav: reference audio not found" in capsys.readouterr().err
    assert main(["say", "Hi.", "-o", str(tmp_path / "x.wav"), "--model", model, "--speaker", "carol"]) == 1
    assert "unknown voice preset 'carol'" in capsys.readouterr().err and not (tmp_path / "x.wav").exists()


def test_input_files_and_bad_lines(tmp_path):
    txt = tmp_path / "in.txt"
    txt.write_text("First line.\n\n  Third line.  \n", encoding="utf-8")
    assert [(i.id, i.text) for i in read_items(txt)] == [("1", "First line."), ("3", "Third line.")]
    src = _jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "One."}, "{oops", {"id": "a", "text": "Two."},
                                         {"text": ""}, {"id": "c", "text": "Three.", "seed": "x"}, ["list"]])
    items = read_items(src)
    problems = [i.problem for i in items if i.problem]
    assert problems == [f"{src}:2: invalid JSON (Expecting property name enclosed in double quotes, column 2)",
                        f"{src}:3: duplicate id 'a' (first on line 1)", f"{src}:4: field 'text' is missing or empty",
                        f"{src}:5: field 'seed' must be an integer", f"{src}:6: expected a JSON object, got list"]
    assert len({i.id for i in items}) == len(items)
    assert wav_name("a/b") != wav_name("a_b") and wav_name("ok-1") == "ok-1.wav"


def test_batch_survives_failures_and_resumes(model, tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl", [{"id": "u1", "text": "Hello there."}, {"id": "u2", "text": "🙂"},
                                         "{not json", {"id": "u4", "text": "The fox jumps.", "seed": 7},
                                         {"id": "u5", "text": "Good morning.", "voice": "carol"},
                                         {"id": "u6", "text": "Why not? Fine.", "voice": "alice"}])
    out = tmp_path / "out"
    s = run_batch(model, src, out, batch_size=2, options=FAST, progress=False)
    assert (s.total, s.ok, s.failed, s.done_before, s.repeated) == (6, 3, 3, 0, 0)
    assert f"{src}:3: invalid JSON" in capsys.readouterr().err
    recs = {r["id"]: r for r in _manifest(out)}
    assert list(recs) == ["u1", "u2", "line3", "u4", "u5", "u6"]  # input order
    assert {k for k, r in recs.items() if r["status"] == "ok"} == {"u1", "u4", "u6"}
    assert "nothing speakable" in recs["u2"]["error"] and "unknown voice preset 'carol'" in recs["u5"]["error"]
    assert recs["u4"]["seed"] == 7 and recs["u6"]["voice"] == "alice"
    for r in recs.values():
        if r["status"] == "ok":
            wav, sr = sf.read(out / r["path"])
            assert sr == 24000 and len(wav) / sr == pytest.approx(r["duration"], abs=1e-3)
    assert sorted(p.name for p in (out / "wavs").iterdir()) == ["u1.wav", "u4.wav", "u6.wav"]
    assert not (out / ".parts").exists()

    # lose one WAV, and fix one failed line: a re-run redoes exactly those two
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "wavs").iterdir()}
    (out / "wavs" / "u4.wav").unlink()
    _jsonl(src, [{"id": "u1", "text": "Hello there."}, {"id": "u2", "text": "🙂"}, "{not json",
                 {"id": "u4", "text": "The fox jumps.", "seed": 7}, {"id": "u5", "text": "Good morning.", "voice": "bob"},
                 {"id": "u6", "text": "Why not? Fine.", "voice": "alice"}])
    s = run_batch(model, src, out, batch_size=2, options=FAST, progress=False)
    assert (s.done_before, s.ok, s.failed) == (2, 2, 2)
    recs = {r["id"]: r for r in _manifest(out)}
    assert recs["u5"]["status"] == "ok" and recs["u4"]["status"] == "ok" and len(recs) == 6
    now = {p.name: p.stat().st_mtime_ns for p in (out / "wavs").iterdir()}
    assert now["u1.wav"] == mtimes["u1.wav"] and now["u6.wav"] == mtimes["u6.wav"]  # untouched
    assert set(now) == {"u1.wav", "u4.wav", "u5.wav", "u6.wav"}


def test_interrupted_run_parts_are_merged_on_resume(model, tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "Hello there."}, {"id": "b", "text": "Good morning."}])
    out = tmp_path / "out"
    run_batch(model, src, out, options=FAST, progress=False)
    # as if killed after writing b's WAV and record but before the merge: b's record only in a part file
    recs = _manifest(out)
    (out / "manifest.jsonl").write_text(json.dumps(recs[0]) + "\n")
    (out / ".parts").mkdir()
    (out / ".parts" / "rank0-1.jsonl").write_text(json.dumps(recs[1]) + "\n" + '{"id": "c", "tru')  # torn last line
    assert main(["synthesize", "--input", str(src), "--out-dir", str(out), "--model", model, "--max-frames", "3",
                 "--progress", "false"]) == 0  # the command, as a user runs it
    assert "2 item(s): 0 ok, 0 failed, 2 already done" in capsys.readouterr().out
    assert [r["id"] for r in _manifest(out)] == ["a", "b"] and not (out / ".parts").exists()


def test_unwritable_output_is_an_error_before_any_work(tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl", [{"text": "Hello."}])
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SpeechLMError, match="output folder is not writable"):
        run_batch(str(tmp_path / "no-model"), src, blocker / "out")  # the model is never looked at
    assert main(["synthesize", "--input", str(src), "--out-dir", str(blocker / "out"), "--model",
                 str(tmp_path / "no-model")]) == 1
    assert "output folder is not writable" in capsys.readouterr().err


def test_sharded_batches_partition_the_items():
    lengths = [5, 1, 9, 3, 3, 7, 2, 8, 6, 4, 0]
    for world in (1, 2, 3, 5):
        for bs in (1, 2, 4):
            shards = [ShardedBatches(lengths, bs, r, world) for r in range(world)]
            seen = [i for s in shards for b in s for i in b]
            assert sorted(seen) == list(range(len(lengths)))  # each index exactly once, none padded in
            assert all(len(b) <= bs for s in shards for b in s)


def test_two_processes_synthesize_every_input_exactly_once(model, tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", [{"id": f"s{i}", "text": f"Sentence {i} is short."} for i in range(7)])
    out = tmp_path / "out"
    s = run_batch(model, src, out, batch_size=2, devices=2, threads=1, options=FAST, progress=False)
    recs = _manifest(out)
    ids = [r["id"] for r in recs]
    assert ids == [f"s{i}" for i in range(7)] and s.repeated == 0 and (s.ok, s.failed) == (7, 0)
    assert {r["rank"] for r in recs} == {0, 1}  # both processes worked
    assert sorted(p.name for p in (out / "wavs").iterdir()) == sorted(f"s{i}.wav" for i in range(7))


def test_pipeline_build_assembles_trained_parts(tmp_path):
    from speechlm.inference import Pipeline
    from speechlm.lm.export import export_lm, lm_meta
    from tests.conftest import write_wav

    parts = build_tiny_pipeline()
    parts.codec.save_pretrained(tmp_path / "codec")
    parts.tokenizer.save(tmp_path / "tokenizer.json")
    export_lm(tmp_path / "lm", parts.lm, lm_meta("tiny", parts.lm, parts.layout, parts.codec.info, step=4),
              tokenizer=tmp_path / "tokenizer.json")
    write_wav(tmp_path / "refs" / "carol.wav", seconds=1.5, sr=22050, seed=3)
    _jsonl(tmp_path / "refs" / "voices.jsonl", [{"name": "carol", "audio": "carol.wav", "text": "Good morning.",
                                                 "speaker": "c"}])
    assert main(["pipeline", "build", "--codec", str(tmp_path / "codec"), "--lm", str(tmp_path / "lm"),
                 "--voices", str(tmp_path / "refs" / "voices.jsonl"),
                 "--default-voice", "carol", "--defaults", "{temperature: 0.7, cpu_quantize: null}",
                 "--out", str(tmp_path / "built")]) == 0
    built = Pipeline.from_pretrained(tmp_path / "built")
    assert sorted(built.voices) == ["carol"] and built.default_voice == "carol"
    assert built.defaults.temperature == 0.7 and built.defaults.cpu_quantize is None and built.quantize is None
    assert built.voices["carol"].codes.shape == (2, round(1.5 * 25)) and built.voices["carol"].speaker == "c"
    a = built.synthesize("Hello there.", seed=1, **FAST)  # the default voice
    b = parts.synthesize("Hello there.", built.voices["carol"], seed=1, **FAST)
    assert torch.equal(a.tokens, b.tokens) and a.voice.name == "carol"
    lm_json = json.loads((tmp_path / "built" / "lm" / "lm.json").read_text())
    assert (lm_json["size"], lm_json["step"], lm_json["codec"]) == ("tiny", 4, parts.codec.info.to_dict())
    other = parts.codec.info.to_dict() | {"name": "encodec_24khz"}
    export_lm(tmp_path / "lm2", parts.lm, lm_meta("tiny", parts.lm, parts.layout, None, 4) | {"codec": other},
              tokenizer=tmp_path / "tokenizer.json")
    assert main(["pipeline", "build", "--codec", str(tmp_path / "codec"), "--lm", str(tmp_path / "lm2"),
                 "--out", str(tmp_path / "built2")]) == 1
    assert main(["pipeline", "build", "--codec", str(tmp_path / "codec"), "--lm", str(tmp_path / "lm"),
                 "--defaults", "{temprature: 0.7}", "--out", str(tmp_path / "built3")]) == 1

"""The `speechlm` command and the data recipe scripts, run the way a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from speechlm.cli import main, normalize_argv
from speechlm.data.manifest import iter_manifest
from speechlm.text.tokenizer import TextTokenizer

REPO = Path(__file__).resolve().parents[1]
SPEECHLM = [sys.executable, "-m", "speechlm"]


def test_normalize_argv_accepts_dashes_and_bare_booleans():
    assert normalize_argv(["data", "prepare", "--skip-bad", "--check.max-duration", "3"]) == \
        ["data", "prepare", "--skip_bad", "true", "--check.max_duration", "3"]
    assert normalize_argv(["--skip-bad", "false", "--force"]) == ["--skip_bad", "false", "--force", "true"]
    assert normalize_argv(["--out=/a-b", "-c", "x-y.yaml"]) == ["--out=/a-b", "-c", "x-y.yaml"]


def test_prepare_skip_bad_reports_count(layouts, tmp_path, capsys):
    root = layouts.generic_table(lines=["a|s|One.", "b|s|", "c|s|Three."])
    assert main(["data", "prepare", "generic", "--root", str(root), "--out", str(tmp_path / "o"), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "2 utterances" in out and "skipped 1 bad item(s) or line(s)" in out
    assert (tmp_path / "o" / "rejects.tsv").exists()


def test_bad_input_is_a_message_not_a_traceback(layouts, tmp_path):
    root = layouts.generic_table(lines=["a|s|One.", "b|s|"])
    r = subprocess.run([*SPEECHLM, "data", "prepare", "generic", "--root", str(root), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1
    assert "\nerror: 1 problem(s)" in "\n" + r.stderr and "metadata.csv:2 [b]: field 'text': empty transcript" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o" / "cuts.jsonl.gz").exists()


def test_console_script_version():
    exe = Path(sys.executable).with_name("speechlm")
    r = subprocess.run([str(exe) if exe.exists() else "speechlm", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("speechlm ")


def test_stats_command(layouts, tmp_path, capsys):
    main(["data", "prepare", "generic", "--root", str(layouts.generic_table(n=3)), "--out", str(tmp_path)])
    capsys.readouterr()
    assert main(["data", "stats", str(tmp_path / "cuts.jsonl.gz")]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["all"]["utterances"] == 3 and stats["all"]["speakers"] == 2


def _recipe(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPEECHLM": f"{sys.executable} -m speechlm"}
    return subprocess.run(["bash", str(REPO / "data_recipes" / "run.sh"), *args], capture_output=True, text=True,
                          cwd=cwd, env=env)


def test_recipe_runs_all_stages_and_rerun_is_a_no_op(layouts, tmp_path):
    lines = [f"u{i}{s}|{s}|The {w} number {i} is here." for i, w in enumerate(
        ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"])
        for s in ("a", "b")]
    root, out = layouts.generic_table(lines=lines), tmp_path / "exp"
    r = _recipe("generic", str(root), str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for stage in ("stage 1", "stage 2", "stage 3"):
        assert stage in r.stdout
    tok = TextTokenizer.load(out / "text" / "tokenizer.json")
    train = list(iter_manifest(out / "text" / "cuts_train.jsonl.gz"))
    assert train and all(c.supervisions[0].custom["phonemes"] for c in train)
    assert tok.kind == "phoneme" and tok.unknown_symbols(c.supervisions[0].custom["phonemes"] for c in train) == {}
    again = _recipe("generic", str(root), str(out), cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count("already done") == 2  # prepare + text; split prints stats
    assert '"skipped_as_done": true' in again.stdout


def test_recipe_stage_selection_and_unknown_option(layouts, tmp_path):
    root, out = layouts.generic_table(n=4), tmp_path / "exp"
    r = _recipe("generic", str(root), str(out), "--stop-stage", "1", cwd=tmp_path)
    assert r.returncode == 0 and (out / "cuts.jsonl.gz").exists() and not (out / "cuts_train.jsonl.gz").exists()
    bad = _recipe("generic", str(root), str(out), "--bogus", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown option: --bogus" in bad.stderr


def test_main_job_recipe_on_tiny_synthetic_corpus(tmp_path):
    """`make run` at SIZE=tiny: build the corpus, prepare, split by sentence, phonemize."""
    corpus, out = tmp_path / "synth", tmp_path / "exp"
    r = _recipe("synthetic", str(corpus), str(out), "--size", "tiny", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    splits = {s: list(iter_manifest(out / "text" / f"cuts_{s}.jsonl.gz")) for s in ("train", "dev", "test")}
    texts = {s: {c.supervisions[0].text for c in cuts} for s, cuts in splits.items()}
    assert all(splits.values()) and not texts["train"] & texts["test"] and not texts["train"] & texts["dev"]
    voices = {c.supervisions[0].speaker for cuts in splits.values() for c in cuts}
    assert len(voices) == 4 and {c.supervisions[0].speaker for c in splits["test"]} == voices
    assert {c.recording.sampling_rate for cuts in splits.values() for c in cuts} == {24000}
    assert TextTokenizer.load(out / "text" / "tokenizer.json").num_symbols > 30


def test_eval_command_scores_a_manifest(tmp_path, capsys):
    from tests.conftest import write_wav

    write_wav(tmp_path / "ref.wav", seconds=1.0, seed=1)
    write_wav(tmp_path / "out.wav", seconds=1.2, seed=1)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "u1", "audio": "out.wav", "reference_audio": "ref.wav"}) + "\n")
    assert main(["eval", "--manifest", str(manifest), "--out", str(tmp_path / "r"), "--metrics",
                 "duration,fidelity", "--plots", "false"]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert "1.2" in json.dumps(report)  # duration ratio 1.2 s / 1.0 s
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "u1"}\n{not json\n')
    assert main(["eval", "--manifest", str(bad), "--out", str(tmp_path / "r2")]) == 1
    assert "bad.jsonl" in capsys.readouterr().err

"""Eval aggregation and reporting: CI math on known data, report files, comparison table, manifest errors, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from jsonargparse import ActionConfigFile, ArgumentParser

from speechlm.errors import BadInputError, SpeechLMError
from speechlm.eval.cli import add_eval_arguments, run_eval_command
from speechlm.eval.report import EvalReport, UtteranceResult, compare_reports
from speechlm.eval.runner import Evaluator, parse_metrics, read_eval_manifest, run_eval
from speechlm.eval.stats import mean_ci, ratio_ci
from tests.conftest import voiced, write_wav

SR = 16000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- confidence intervals


def test_t_interval_matches_hand_computation():
    e = mean_ci([1, 2, 3, 4, 5, math.nan])
    # mean 3, s = sqrt(2.5), t(0.975, 4) = 2.7764: half-width 2.7764 * 1.5811 / sqrt(5) = 1.9632
    assert (e.value, e.n, e.n_missing, e.method) == (3.0, 5, 1, "t")
    assert e.half_width == pytest.approx(1.9632, abs=1e-4) and e.low == pytest.approx(3 - 1.9632, abs=1e-4)
    assert mean_ci([1, 2, 3, 4, 5], confidence=0.99).half_width > e.half_width
    one = mean_ci([0.7])
    assert one.value == 0.7 and math.isnan(one.low) and one.format() == "0.700"
    assert math.isnan(mean_ci([]).value) and mean_ci([]).format() == "n/a"


def test_t_interval_covers_the_true_mean_at_its_nominal_rate():
    rng = np.random.default_rng(1)
    draws = [rng.normal(3.0, 0.5, 20) for _ in range(400)]
    hits = [(e := mean_ci(d)).low <= 3.0 <= e.high for d in draws]
    assert 0.92 <= np.mean(hits) <= 0.98


def test_bootstrap_corpus_wer_is_a_ratio_of_sums_with_an_interval_around_it():
    errors, words = [1, 3, 0, 2], [10, 10, 5, 25]
    e = ratio_ci(errors, words)
    assert e.value == pytest.approx(6 / 50) and e.method == "bootstrap" and e.n == 4
    assert e.low <= e.value <= e.high and e.low >= 0
    assert ratio_ci(errors, words) == e  # fixed seed: a report is reproducible
    rng = np.random.default_rng(0)
    lens = rng.integers(5, 30, 400)
    errs = rng.binomial(lens, 0.2)
    big = ratio_ci(errs, lens)
    assert big.low < 0.2 < big.high and big.half_width < e.half_width  # more data, narrower interval
    assert math.isnan(ratio_ci([1], [4]).low) and ratio_ci([1], [4]).value == 0.25
    with pytest.raises(ValueError, match="differ in length"):
        ratio_ci([1, 2], [3])


# ---------------------------------------------------------------- aggregation and report files


def _row(system: str, i: int, wer_counts: tuple[int, int], sim: float, pesq: float | None = None) -> UtteranceResult:
    errors, words = wer_counts
    metrics = {"wer": errors / words, "cer": errors / words, "sim": sim}
    notes = {}
    if pesq is not None:
        metrics["pesq_wb"] = pesq
        if math.isnan(pesq):
            notes["pesq_wb"] = "BufferTooShortError: too short"
    return UtteranceResult(id=f"u{i}", system=system, audio=f"/x/{system}/u{i}.wav", duration=1.0 + i,
                           metrics=metrics, notes=notes, text="a b", hypothesis="a b",
                           counts={"word_errors": errors, "ref_words": words, "char_errors": errors,
                                   "ref_chars": words})


def _report() -> EvalReport:
    rows = [_row("base", 0, (1, 10), 0.80, 3.0), _row("base", 1, (3, 10), 0.70, math.nan),
            _row("base", 2, (0, 20), 0.75, 3.4),
            _row("new", 0, (0, 10), 0.90, 3.8), _row("new", 1, (1, 10), 0.85, 3.6), _row("new", 2, (1, 20), 0.88, 3.7)]
    return EvalReport(rows, ["sim", "wer", "cer", "pesq_wb"], meta={"asr": "pocketsphinx"})


def test_aggregates_per_system():
    rep = _report()
    assert rep.metrics == ["wer", "cer", "sim", "pesq_wb"]  # canonical order, whatever order was asked
    base, new = rep.summary("base"), rep.summary("new")
    assert base.metrics["wer"].value == pytest.approx(4 / 40)  # corpus WER, not the mean of 0.1, 0.3, 0
    assert new.metrics["wer"].value == pytest.approx(2 / 40)
    assert base.metrics["sim"].value == pytest.approx(0.75) and base.metrics["sim"].method == "t"
    assert base.metrics["pesq_wb"].n == 2 and base.metrics["pesq_wb"].n_missing == 1
    with pytest.raises(KeyError, match="have: base, new"):
        rep.summary("other")


def test_comparison_table_puts_systems_side_by_side_and_marks_the_best():
    table = _report().comparison_table()
    lines = table.splitlines()
    assert lines[0].startswith("| system | n | WER % ↓ | CER % ↓ | SIM ↑ | PESQ-WB ↑")
    base, new = lines[2].split(" | "), lines[3].split(" | ")
    assert base[0] == "| base" and new[0] == "| new"
    assert base[2].startswith("10.00 [") and new[2].startswith("**5.00 [")  # lower WER is better
    assert new[4].startswith("**0.877 ±") and not base[4].startswith("**")  # higher SIM is better
    assert "(1 n/a)" in base[5]


def test_report_files_round_trip(tmp_path):
    rep = _report()
    paths = rep.write(tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["systems"]["base"]["metrics"]["wer"]["value"] == pytest.approx(0.1)
    assert data["utterances"][1]["metrics"]["pesq_wb"] is None  # NaN is written as null, valid JSON
    md = paths["markdown"].read_text()
    assert rep.comparison_table() in md and "BufferTooShortError" in md and "![wer](plots/wer.png)" in md
    for m in rep.metrics:
        png = tmp_path / "out" / "plots" / f"{m}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tsv = paths["tsv"].read_text().splitlines()
    assert tsv[0].split("\t")[:8] == ["system", "id", "audio", "duration", "wer", "cer", "sim", "pesq_wb"]
    assert len(tsv) == 7
    back = EvalReport.load(paths["json"])
    assert back.comparison_table() == rep.comparison_table()


def test_compare_saved_reports(tmp_path):
    rep = _report()
    a = EvalReport([r for r in rep.rows if r.system == "base"], rep.metrics, {"manifests": ["a.jsonl"]})
    b = EvalReport([r for r in rep.rows if r.system == "new"], ["sim"], {"manifests": ["b.jsonl"]})
    a.write(tmp_path / "a", plots=False)
    b.write(tmp_path / "b", plots=False)
    merged = compare_reports([tmp_path / "a" / "report.json", tmp_path / "b" / "report.json"])
    assert merged.systems == ["base", "new"] and merged.metrics == rep.metrics
    assert merged.summary("new").metrics["wer"].value == pytest.approx(0.05)
    with pytest.raises(SpeechLMError, match="'base' is in both"):
        compare_reports([tmp_path / "a" / "report.json", tmp_path / "a" / "report.json"])
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(SpeechLMError, match="junk.json: not a readable speechlm eval report"):
        compare_reports([tmp_path / "junk.json"])


# ---------------------------------------------------------------- manifests


def _clips(root: Path, n: int = 2, seconds: float = 0.6) -> list[Path]:
    return [write_wav(root / f"c{i}.wav", seconds=seconds, seed=i) for i in range(n)]


def test_manifest_formats_and_relative_paths(tmp_path):
    _clips(tmp_path / "wavs")
    (tmp_path / "m.jsonl").write_text(
        '{"id": "c0", "audio": "wavs/c0.wav", "text": "Hello 2 you.", "reference_audio": "wavs/c1.wav"}\n\n'
        '{"id": 7, "audio": "wavs/c1.wav", "system": "other", "speaker": "extra fields are fine"}\n')
    items, problems = read_eval_manifest(tmp_path / "m.jsonl")
    assert not problems and [i.id for i in items] == ["c0", "7"]
    assert items[0].audio == (tmp_path / "wavs" / "c0.wav").resolve() and items[0].system == "m"
    assert items[0].reference_audio.name == "c1.wav" and items[1].system == "other" and items[1].text is None
    (tmp_path / "m.tsv").write_text("id\taudio\ttext\nc0\twavs/c0.wav\t\nc1\twavs/c1.wav\tHi there\n")
    items, problems = read_eval_manifest(tmp_path / "m.tsv", default_system="sys")
    assert not problems and items[0].text is None and items[1].text == "Hi there" and items[1].system == "sys"


def test_bad_manifest_rows_name_file_line_and_field(tmp_path):
    _clips(tmp_path / "wavs")
    lines = [
        '{"id": "ok", "audio": "wavs/c0.wav", "text": "fine"}',
        '{"id": "nofile", "audio": "wavs/missing.wav"}',
        "{not json",
        '{"audio": "wavs/c0.wav"}',
        '{"id": "typo", "audio": "wavs/c0.wav", "referance_audio": "wavs/c1.wav"}',
        '{"id": "ok", "audio": "wavs/c1.wav"}',
        '{"id": "punct", "audio": "wavs/c1.wav", "text": "..."}',
        '["a list"]',
    ]
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInputError) as err:
        run_eval([tmp_path / "bad.jsonl"], tmp_path / "out", metrics="wer", progress=False)
    msg = str(err.value)
    m = str(tmp_path / "bad.jsonl")
    assert f"{m}:2 [nofile]: field 'audio': audio file not found: {tmp_path / 'wavs' / 'missing.wav'}" in msg
    assert f"{m}:3: not valid JSON" in msg
    assert f"{m}:4: field 'id': missing or empty id" in msg
    assert f"{m}:5 [typo]: field 'referance_audio': unknown field (did you mean 'reference_audio'?)" in msg
    assert f"{m}:6 [ok]: field 'id': duplicate id in system 'bad' (first at {m}:1)" in msg
    assert f"{m}:7 [punct]: field 'text': transcript has no words" in msg
    assert f"{m}:8: expected a JSON object per line" in msg
    assert f"{m}:6 [ok]: field 'text': metric 'wer' needs 'text'" in msg
    assert len(err.value.problems) == 8 and not (tmp_path / "out").exists()


def test_requested_metric_needs_its_field_and_csv_shape_is_checked(tmp_path):
    _clips(tmp_path)
    (tmp_path / "m.csv").write_text("id,audio\nc0,c0.wav\nc1,c1.wav,extra\n")
    with pytest.raises(BadInputError) as err:
        run_eval([tmp_path / "m.csv"], tmp_path / "out", metrics="wer,fidelity", progress=False)
    msg = str(err.value)
    assert "m.csv:2 [c0]: field 'text': metric 'wer' needs 'text'" in msg
    assert "m.csv:2 [c0]: field 'reference_audio': metric 'fidelity' needs 'reference_audio'" in msg
    assert "m.csv:3: 3 fields, but the header has 2" in msg
    (tmp_path / "nohead.csv").write_text("c0,c0.wav\n")
    assert "lacks the column(s)" in str(read_eval_manifest(tmp_path / "nohead.csv")[1][0])
    (tmp_path / "empty.jsonl").write_text("\n")
    assert read_eval_manifest(tmp_path / "empty.jsonl")[1][0].problem == "manifest has no rows"
    with pytest.raises(SpeechLMError, match="unknown manifest type '.txt'"):
        (tmp_path / "m.txt").write_text("x")
        read_eval_manifest(tmp_path / "m.txt")
    with pytest.raises(SpeechLMError, match="unknown metric"):
        parse_metrics("wer,mos")
    assert parse_metrics("WER, sim,wer") == ["wer", "sim"] and parse_metrics("all") is None


# ---------------------------------------------------------------- end to end


def _codec_manifests(root: Path) -> list[Path]:
    """Two "codecs": one returns its input unchanged, one adds noise at 10 dB SNR and runs 0.2 s long."""
    rng = np.random.default_rng(0)
    rows = {"identity": [], "noisy": []}
    for i in range(3):
        ref = voiced(1.5, seed=i)
        (root / "ref").mkdir(exist_ok=True)
        sf.write(root / "ref" / f"u{i}.wav", ref, SR)
        noise = rng.standard_normal(ref.size).astype(np.float32) * np.sqrt(np.mean(ref**2) / 10)
        outs = {"identity": ref, "noisy": np.concatenate([ref + noise, voiced(0.2, seed=9)])}
        for system, wav in outs.items():
            (root / system).mkdir(exist_ok=True)
            sf.write(root / system / f"u{i}.wav", wav, SR)
            rows[system].append(json.dumps({"id": f"u{i}", "audio": f"{system}/u{i}.wav",
                                            "reference_audio": f"ref/u{i}.wav"}))
    paths = []
    for system, lines in rows.items():
        paths.append(root / f"{system}.jsonl")
        paths[-1].write_text("\n".join(lines) + "\n")
    return paths


def test_run_eval_ranks_a_degraded_codec_below_an_identity_codec(tmp_path):
    manifests = _codec_manifests(tmp_path)
    rep = run_eval(manifests, tmp_path / "out", metrics=["fidelity", "duration"], progress=False)
    ident, noisy = rep.summary("identity").metrics, rep.summary("noisy").metrics
    assert ident["pesq_wb"].value == pytest.approx(4.644, abs=0.01) and ident["si_sdr"].value > 80
    assert noisy["si_sdr"].value == pytest.approx(10, abs=0.5) and noisy["pesq_wb"].value < 4.0
    assert ident["duration_ratio"].value == pytest.approx(1.0)
    assert noisy["duration_ratio"].value == pytest.approx(1.7 / 1.5, abs=1e-3)
    assert (tmp_path / "out" / "report.md").exists() and (tmp_path / "out" / "plots" / "si_sdr.png").exists()
    assert rep.meta["metric_groups"] == ["fidelity", "duration"] and rep.meta["asr"] is None


def test_skip_bad_rows_and_unreadable_audio_are_listed_not_fatal(tmp_path):
    _clips(tmp_path, n=1, seconds=1.0)
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (tmp_path / "m.jsonl").write_text('{"id": "a", "audio": "c0.wav", "reference_audio": "c0.wav"}\n'
                                      '{"id": "b", "audio": "gone.wav"}\n'
                                      '{"id": "c", "audio": "broken.wav"}\n')
    rep = run_eval([tmp_path / "m.jsonl"], tmp_path / "out", metrics="duration", skip_bad=True, progress=False)
    assert [r.id for r in rep.rows] == ["a"] and rep.summary("m").metrics["duration_ratio"].value == 1.0
    assert sorted(p.item_id for p in rep.rejected) == ["b", "c"]
    assert "Rejected input rows (2)" in (tmp_path / "out" / "report.md").read_text()


def test_evaluator_all_metrics_on_one_clip(tmp_path):
    """The path training hooks use: in-memory audio, every metric group, NaN-with-reason where due."""
    ev = Evaluator(["wer", "sim", "dnsmos", "duration", "fidelity"])
    x = voiced(4.6)
    r = ev.evaluate(x, SR, text="Hello world.", reference=x, reference_rate=SR, reference_key="x", id="u", system="s")
    assert set(r.metrics) == {"wer", "cer", "sim", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808",
                              "duration_ratio", "pesq_wb", "stoi", "mel_distance", "si_sdr"}
    assert r.metrics["sim"] == pytest.approx(1.0, abs=1e-5) and r.metrics["duration_ratio"] == 1.0
    assert r.counts["ref_words"] == 2 and isinstance(r.hypothesis, str)
    assert 1.0 <= r.metrics["dnsmos_ovrl"] <= 5.0 and not r.notes
    short = ev.evaluate(np.zeros(800, np.float32), SR, reference=x, reference_rate=SR, reference_key="x")
    assert "shorter than" in short.notes["dnsmos_ovrl"] and "silent" in short.notes["sim"]
    assert short.notes["pesq_wb"] == "degraded audio is silent" and "wer" not in short.metrics


def _cli() -> ArgumentParser:
    parser = ArgumentParser(prog="speechlm eval")
    parser.add_argument("-c", "--config", action=ActionConfigFile)
    return add_eval_arguments(parser)


def test_cli_runs_compares_and_reports_errors(tmp_path, capsys):
    manifests = _codec_manifests(tmp_path)
    args = _cli().parse_args(["--manifest", str(manifests[0]), "--manifest", str(manifests[1]), "--system", "A",
                              "--system", "B", "--out", str(tmp_path / "out"), "--metrics", "fidelity",
                              "--plots", "false"])
    assert run_eval_command(args) == 0
    out = capsys.readouterr().out
    assert "| A | 3 |" in out and "| B | 3 |" in out and "report.md" in out
    assert not (tmp_path / "out" / "plots").exists()
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"compare: [{tmp_path / 'out' / 'report.json'}]\nout: {tmp_path / 'cmp'}\n")
    assert run_eval_command(_cli().parse_args(["-c", str(cfg)])) == 0
    assert (tmp_path / "cmp" / "report.md").exists() and "| A | 3 |" in capsys.readouterr().out
    (tmp_path / "bad.jsonl").write_text('{"id": "x", "audio": "nowhere.wav"}\n')
    assert run_eval_command(_cli().parse_args(["--manifest", str(tmp_path / "bad.jsonl"),
                                               "--out", str(tmp_path / "o2")])) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 1 problem(s)") and "nowhere.wav" in err and "Traceback" not in err
    assert run_eval_command(_cli().parse_args(["--out", str(tmp_path / "o3")])) == 1
    assert "either --manifest" in capsys.readouterr().err

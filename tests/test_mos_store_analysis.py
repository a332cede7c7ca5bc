"""MOS storage and report: SQLite WAL uniqueness under threads, rater screening, MOS/CMOS/MUSHRA/A-B numbers, CLI."""

from __future__ import annotations

import csv
import json
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from speechlm.mos import cli, design
from speechlm.mos.analysis import analyze, write_report
from speechlm.mos.session import CreateOptions, Session, add_raters, create_session, load_session
from speechlm.mos.store import AlreadyRated, Store
from tests.test_mos_design import make_systems


def display_value(test_type: str, trial: design.Trial, shown: list[str], canonical):
    """The answer a rater gives on screen for a canonical answer (inverse of ``design.canonical_value``)."""
    if test_type == "acr" or test_type == "mushra":
        return canonical
    if test_type == "cmos":
        return canonical if shown == trial.stimuli else -canonical
    return "A" if shown[0] == trial.stimuli[canonical] else "B"


def simulate(session: Session, policy, raters=None, limit=None) -> None:
    """Store answers for raters as ``policy(rater_idx, trial, k) -> canonical answer`` (k counts per condition)."""
    store = session.store()
    for r in store.raters():
        if raters is not None and r.idx not in raters:
            continue
        store.mark_started(r.idx)
        store.record_check(r.idx, True)
        seen: dict = {}
        for entry in r.order[:limit]:
            trial = session.plan.trials[entry["item"]]
            k = seen[trial.condition] = seen.get(trial.condition, -1) + 1
            value = display_value(session.test_type, trial, entry["shown"], policy(r.idx, trial, k))
            store.add_rating(r.idx, trial.item_id, entry["shown"], value, 9.0, 8.0, len(r.order))


def make_session(root: Path, test: str, names, n_utts: int, raters: int, reference: str | None = None) -> Session:
    specs = make_systems(root / "in", names=names, n_utts=n_utts, seconds=0.4, rates=(16000,))
    session, _ = create_session(specs, root / "session", CreateOptions(test_type=test, reference=reference,
                                                                      raters=raters, seed=1))
    return session


def good_answer(trial: design.Trial):
    return trial.expected[0] if trial.expected else None


def test_store_wal_unique_and_concurrent(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    store.init("sess1")
    with pytest.raises(Exception, match="another session"):
        Store(tmp_path / "db.sqlite").init("sess2")
    tokens = store.add_raters(3, lambda i: (i % 2, [{"item": f"it{j}", "shown": ["a"]} for j in range(40)]))
    assert len(set(tokens)) == 3 and [r.list_idx for r in store.raters()] == [0, 1, 0]
    con = sqlite3.connect(tmp_path / "db.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()

    # 3 raters x 40 items, each submitted by 4 threads at once: exactly one of each lands.
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(12)

    def worker(rater: int, copy: int) -> None:
        barrier.wait()
        for j in range(40):
            try:
                store.add_rating(rater, f"it{j}", ["a"], copy + 1, 1.0, None, 40)
                outcome = "ok"
            except AlreadyRated:
                outcome = "dup"
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=worker, args=(r, c)) for r in range(3) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 120 and results.count("dup") == 360
    reopened = Store(tmp_path / "db.sqlite")  # a new process would see the same: everything was committed
    ratings = reopened.ratings()
    assert len(ratings) == 120 and len({(r.rater, r.item_id) for r in ratings}) == 120
    assert all(r.finished is not None for r in reopened.raters())


def test_acr_report_numbers_and_screening(tmp_path):
    session = make_session(tmp_path, "acr", ["sysA", "sysB"], n_utts=7, raters=5, reference="sysA")

    def policy(rater, trial, k):
        if trial.kind in ("gold", "trap"):
            return 1 if rater == 3 else good_answer(trial)  # rater 3 misses the trap and gold
        if trial.kind == "training":
            return 3
        if rater == 3:
            return 1 if trial.condition == "sysA" else 5
        return {"sysA": 4 if rater == 2 else 5, "sysB": 1 if rater == 2 else 2}[trial.condition]

    simulate(session, policy, raters={0, 1, 2, 3})
    simulate(session, policy, raters={4}, limit=5)  # stops half-way
    report = analyze(session)
    assert report.included == [0, 1, 2]
    by = {c.condition: c for c in report.conditions}
    a, b = by["sysA"], by["sysB"]
    assert (a.n, a.raters, b.n, b.raters) == (9, 3, 9, 3)
    assert a.mean == pytest.approx(42 / 9) and a.std == pytest.approx(0.5)
    assert a.ci95 == pytest.approx(2.306 * 0.5 / 3, abs=1e-3)  # t(0.975, 8) * s / sqrt(n)
    assert b.mean == pytest.approx(15 / 9)
    reasons = {r.rater: r.reasons for r in report.raters}
    assert any("trapping" in x for x in reasons[3]) and any("gold" in x for x in reasons[3])
    assert any("incomplete" in x for x in reasons[4])
    assert analyze(session, min_completion=0.3).included == [0, 1, 2, 4]

    out = write_report(session, tmp_path / "report")
    md = (out_md := (tmp_path / "report" / "report.md")).read_text()
    assert "| sysA | 4.67 | 0.38 |" in md and "| sysB | 1.67 |" in md, out_md
    js = json.loads((tmp_path / "report" / "report.json").read_text())
    assert js["included_raters"] == [0, 1, 2] and js["conditions"][0]["condition"] == "sysA"
    rows = list(csv.DictReader(open(tmp_path / "report" / "ratings.csv")))
    assert len(rows) == len(session.store().ratings()) == 4 * 13 + 5
    assert {r["source_system"] for r in rows if r["kind"] == "test"} == {"sysA", "sysB"}
    assert (tmp_path / "report" / "scores.png").read_bytes()[:4] == b"\x89PNG"
    assert out.included == report.included


def test_cmos_significance(tmp_path):
    session = make_session(tmp_path, "cmos", ["ref", "better", "same"], n_utts=7, raters=4, reference="ref")

    def policy(rater, trial, k):
        if trial.kind in ("gold", "trap"):
            return good_answer(trial)
        if trial.kind == "training":
            return -1
        return 2 if trial.condition == "better" else [1, -1, 0][k % 3]

    simulate(session, policy)
    by = {c.condition: c for c in analyze(session).conditions}
    assert by["better"].mean == 2.0 and by["better"].n == 12 and by["better"].significant
    assert by["better"].p_value < 0.001  # exact Wilcoxon, 12 positive differences: 2 / 2**12
    assert by["same"].mean == pytest.approx(0.0) and not by["same"].significant and by["same"].p_value > 0.5


def test_mushra_post_screening(tmp_path):
    session = make_session(tmp_path, "mushra", ["ref", "codec"], n_utts=5, raters=3, reference="ref")
    scores = {"codec": 60, "hidden_reference": 100, "anchor_3.5k": 20, "anchor_7k": 40}

    def policy(rater, trial, k):
        out = {n: scores[session.plan.stimuli[n].condition] for n in trial.stimuli}
        if rater == 2:  # cannot hear the reference: post-screening must drop this rater
            out = {n: 50 for n in trial.stimuli}
        return out

    simulate(session, policy)
    report = analyze(session)
    assert report.included == [0, 1]
    assert "hidden reference below 90 in 4 of 4" in report.raters[2].reasons[0]
    by = {c.condition: c for c in report.conditions}
    assert {k: by[k].mean for k in scores} == scores and by["codec"].n == 8


def test_ab_preference(tmp_path):
    session = make_session(tmp_path, "ab", ["ref", "new"], n_utts=9, raters=2, reference="ref")
    simulate(session, lambda r, t, k: good_answer(t) if t.kind in ("gold", "trap") else 1)
    c = analyze(session).conditions[0]
    assert (c.condition, c.n, c.mean) == ("new", 16, 1.0)
    assert c.p_value == pytest.approx(2 * 0.5 ** 16) and c.significant


def test_cli_create_status_report(tmp_path, capsys):
    specs = make_systems(tmp_path / "in", names=["one", "two"], n_utts=4, seconds=0.4, rates=(16000,))
    out = tmp_path / "sess"
    assert cli.main(["mos", "create", *specs, "--out", str(out), "--raters", "3",
                     "--base_url", "http://127.0.0.1:9999"]) == 0
    text = capsys.readouterr().out
    links = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("rater ")]
    assert len(links) == 3 and all(link.startswith("http://127.0.0.1:9999/r/") for link in links)
    session = load_session(out)
    add_raters(session, 2)
    assert cli.main(["mos", "status", str(out)]) == 0
    status = capsys.readouterr().out
    assert status.count("not started") == 5 and "0 ratings" in status
    simulate(session, lambda r, t, k: good_answer(t) or (5 if t.condition == "one" else 2), raters={0, 1})
    assert cli.main(["mos", "report", str(out)]) == 0
    md = capsys.readouterr().out
    assert "| one | 5.00 |" in md and "| two | 2.00 |" in md and "**2 included**" in md
    assert (out / "report" / "report.json").exists()
    assert cli.main(["mos", "create", *specs, "--out", str(out)]) == 1  # refuses to overwrite
    assert "not empty" in capsys.readouterr().err
    assert np.isfinite(json.loads((out / "report" / "report.json").read_text())["conditions"][0]["mean"])

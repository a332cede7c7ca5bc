"""Listening-test report: rater screening (P.808 gold/trap, BS.1534 post-screening), statistics, plots, CSV."""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from speechlm.io import atomic_open, atomic_path, write_json, write_text
from speechlm.mos import design
from speechlm.mos.session import MAX_CHECK_ATTEMPTS, Session

HIDDEN_REF_MIN, HIDDEN_REF_MAX_SHARE = 90.0, 0.15  # BS.1534-3 §9.2 post-screening


@dataclass
class Record:
    """One score in canonical form: ACR score, CMOS of the system vs the baseline, A/B 1 if the system won."""

    rater: int
    item_id: str
    kind: str  # test | gold | trap | training
    utt: str | None
    condition: str | None
    stimulus: str
    value: float
    correct: bool | None  # gold / trap: answer within the expected ones
    listen_s: float


@dataclass
class RaterSummary:
    rater: int
    list_idx: int
    rated: int
    total: int
    passed_check: bool
    included: bool
    reasons: list[str] = field(default_factory=list)  # why excluded
    flags: list[str] = field(default_factory=list)  # worth a look, not excluded


@dataclass
class ConditionStats:
    condition: str
    n: int
    raters: int
    mean: float
    std: float
    ci95: float  # half-width of the 95% t-interval of the mean
    p_value: float | None = None  # CMOS: Wilcoxon signed-rank vs 0; A/B: binomial vs 50%
    p_ttest: float | None = None  # CMOS: one-sample t-test vs 0
    significant: bool | None = None


@dataclass
class Report:
    session_id: str
    test_type: str
    systems: list[str]
    reference: str | None
    raters: list[RaterSummary]
    conditions: list[ConditionStats]
    min_completion: float
    notes: list[str]

    @property
    def included(self) -> list[int]:
        return [r.rater for r in self.raters if r.included]

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "included_raters": self.included}


def _records(session: Session) -> tuple[list[Record], dict[int, int]]:
    """Every stored rating in canonical form, plus how many items each rater has rated."""
    t = session.test_type
    out, rated = [], {}
    for rating in session.store().ratings():
        trial = session.plan.trials[rating.item_id]
        rated[rating.rater] = rated.get(rating.rater, 0) + 1
        value = design.canonical_value(t, trial, rating.shown, rating.value)
        base = dict(rater=rating.rater, item_id=rating.item_id, kind=trial.kind, utt=trial.utt,
                    listen_s=rating.listen_s)
        if t == "mushra":
            out += [Record(condition=session.plan.stimuli[n].condition, stimulus=n, value=v, correct=None, **base)
                    for n, v in value.items()]
            continue
        correct = None if trial.expected is None else value in trial.expected
        if t == "ab":
            value = float(value == 1)  # 1: the system under test (canonical position 1) was preferred
        out.append(Record(condition=trial.condition, stimulus=trial.stimuli[-1], value=float(value),
                          correct=correct, **base))
    return out, rated


def _screen(session: Session, records: list[Record], rated: dict[int, int],
            min_completion: float) -> list[RaterSummary]:
    summaries = []
    for r in session.store().raters():
        mine = [x for x in records if x.rater == r.idx]
        s = RaterSummary(r.idx, r.list_idx, rated.get(r.idx, 0), len(r.order), r.check_passed is not None, False)
        if s.rated < min_completion * s.total or s.rated == 0:
            s.reasons.append(f"incomplete: rated {s.rated} of {s.total} items")
        for kind in ("trap", "gold"):
            wrong = [x for x in mine if x.kind == kind and x.correct is False]
            if wrong:
                s.reasons.append(f"failed {len(wrong)} {'trapping' if kind == 'trap' else 'gold'} question(s)")
        test = [x for x in mine if x.kind == "test"]
        if session.test_type == "mushra":
            hidden = [x.value for x in test if x.condition == "hidden_reference"]
            low = sum(v < HIDDEN_REF_MIN for v in hidden)
            if hidden and low > HIDDEN_REF_MAX_SHARE * len(hidden):
                s.reasons.append(f"rated the hidden reference below {HIDDEN_REF_MIN:g} in {low} of {len(hidden)} "
                                 f"trials (> {HIDDEN_REF_MAX_SHARE:.0%})")
        elif len(test) >= 3 and session.test_type != "ab" and len({x.value for x in test}) == 1:
            s.flags.append(f"gave every test item the same answer ({test[0].value:g})")
        s.included = not s.reasons
        summaries.append(s)
    return summaries


def _stats(condition: str, values: list[float], raters: set[int], test_type: str) -> ConditionStats:
    a = np.asarray(values, dtype=float)
    n = a.size
    std = float(a.std(ddof=1)) if n > 1 else float("nan")
    ci = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else float("nan")
    s = ConditionStats(condition, n, len(raters), float(a.mean()), std, ci)
    if test_type == "cmos" and n:
        if np.all(a == 0):
            s.p_value = s.p_ttest = 1.0
        else:
            s.p_value = float(stats.wilcoxon(a, zero_method="wilcox").pvalue)
            s.p_ttest = float(stats.ttest_1samp(a, 0.0).pvalue) if n > 1 and std > 0 else (0.0 if n > 1 else None)
        s.significant = s.p_value < 0.05
    elif test_type == "ab" and n:
        s.p_value = float(stats.binomtest(int(a.sum()), n, 0.5).pvalue)
        s.significant = s.p_value < 0.05
    return s


def analyze(session: Session, min_completion: float = 1.0) -> Report:
    """Screen raters and compute per-condition statistics over the test items of the included raters.

    ``min_completion``: share of their items a rater must have rated to count (P.808 keeps only
    complete submissions: 1.0).
    """
    records, rated = _records(session)
    raters = _screen(session, records, rated, min_completion)
    keep = {r.rater for r in raters if r.included}
    by_cond: dict[str, list[Record]] = {}
    for x in records:
        if x.kind == "test" and x.rater in keep:
            by_cond.setdefault(x.condition, []).append(x)
    order = [s for s in session.systems if s in by_cond] + sorted(c for c in by_cond if c not in session.systems)
    conditions = [_stats(c, [x.value for x in by_cond[c]], {x.rater for x in by_cond[c]}, session.test_type)
                  for c in order]
    return Report(session.session_id, session.test_type, session.systems, session.reference, raters, conditions,
                  min_completion, list(session.notes))


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def to_markdown(report: Report) -> str:
    t = report.test_type
    title = {"acr": "ACR MOS (ITU-T P.800)", "cmos": "CMOS / CCR (ITU-T P.800)", "mushra": "MUSHRA (ITU-R BS.1534)",
             "ab": "A/B preference"}[t]
    inc = report.included
    lines = [f"# Listening test report: {title}", "",
             f"Session `{report.session_id}`. Raters: {len(report.raters)} invited, "
             f"{sum(r.passed_check for r in report.raters)} passed the listening check, "
             f"{sum(r.rated >= r.total for r in report.raters)} completed, **{len(inc)} included**.", ""]
    if t in ("acr", "mushra"):
        name = "MOS" if t == "acr" else "mean score"
        lines += [f"| condition | {name} | ±95% CI | std | ratings | raters |", "|---|---|---|---|---|---|"]
        lines += [f"| {c.condition} | {_fmt(c.mean)} | {_fmt(c.ci95)} | {_fmt(c.std)} | {c.n} | {c.raters} |"
                  for c in report.conditions]
    elif t == "cmos":
        lines += [f"CMOS of each system relative to `{report.reference}` (positive: better than it).", "",
                  "| system | CMOS | ±95% CI | ratings | raters | Wilcoxon p | t-test p | significant (p<0.05) |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {c.condition} | {c.mean:+.2f} | {_fmt(c.ci95)} | {c.n} | {c.raters} | {_fmt(c.p_value, 4)} | "
                  f"{_fmt(c.p_ttest, 4)} | {'yes' if c.significant else 'no'} |" for c in report.conditions]
    else:
        lines += [f"Share of trials in which each system was preferred over `{report.reference}`.", "",
                  "| system | preferred | ±95% CI | trials | raters | binomial p | significant (p<0.05) |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {c.condition} | {c.mean:.1%} | {_fmt(c.ci95 * 100, 1)} pp | {c.n} | {c.raters} | "
                  f"{_fmt(c.p_value, 4)} | {'yes' if c.significant else 'no'} |" for c in report.conditions]
    if not report.conditions:
        lines += ["", "No ratings from included raters yet."]
    lines += ["", "## Raters", "", "| rater | list | rated | included | reasons / flags |", "|---|---|---|---|---|"]
    lines += [f"| {r.rater} | {r.list_idx} | {r.rated}/{r.total} | {'yes' if r.included else 'no'} | "
              f"{'; '.join(r.reasons + r.flags) or '-'} |" for r in report.raters]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def _plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # set by the caller that draws, never at import: library modules stay side-effect free
    import matplotlib.pyplot as plt

    cs = report.conditions
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(cs) + 2), 3.6))
    x = np.arange(len(cs))
    ax.bar(x, [c.mean for c in cs], yerr=[0 if math.isnan(c.ci95) else c.ci95 for c in cs], capsize=4,
           color="#4c78a8")
    ax.set_xticks(x, [c.condition for c in cs], rotation=20, ha="right")
    ylabel, ylim = {"acr": ("MOS", (1, 5)), "mushra": ("score", (0, 100)), "cmos": ("CMOS vs reference", (-3, 3)),
                    "ab": ("share preferred", (0, 1))}[report.test_type]
    ax.set_ylabel(ylabel)
    ax.set_ylim(*ylim)
    if report.test_type in ("cmos", "ab"):
        ax.axhline(0 if report.test_type == "cmos" else 0.5, color="gray", lw=0.8)
    ax.set_title(f"{report.test_type.upper()}: {len(report.included)} raters, mean ± 95% CI")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_csv(session: Session, report: Report, path: Path) -> None:
    """Every stored answer, de-blinded, one row per score (MUSHRA: per clip), with the screening outcome."""
    records, _ = _records(session)
    included = set(report.included)
    with atomic_open(path, "w") as f:
        w = csv.writer(f)
        w.writerow(["rater", "item_id", "kind", "utt", "condition", "source_system", "process", "stimulus",
                    "value", "correct", "listen_s", "rater_included"])
        for x in records:
            st = session.plan.stimuli[x.stimulus]
            w.writerow([x.rater, x.item_id, x.kind, x.utt, x.condition, st.source, st.process, x.stimulus,
                        f"{x.value:g}", "" if x.correct is None else int(x.correct), f"{x.listen_s:.2f}",
                        int(x.rater in included)])


def write_report(session: Session, out_dir: str | Path, min_completion: float = 1.0) -> Report:
    """Write report.md, report.json, ratings.csv and scores.png into ``out_dir``; returns the report."""
    out_dir = Path(out_dir)
    report = analyze(session, min_completion)
    write_json(out_dir / "report.json", report.to_json())
    write_text(out_dir / "report.md", to_markdown(report))
    write_csv(session, report, out_dir / "ratings.csv")
    if report.conditions:
        _plot(report, out_dir / "scores.png")
    return report


def status(session: Session) -> dict:
    """Progress of every rater, for ``speechlm mos status``; reads only the database."""
    store = session.store()
    rows = []
    for r in store.raters():
        done = len(store.rated_items(r.idx))
        phase = ("not started" if r.started is None else
                 ("locked" if r.check_attempts >= MAX_CHECK_ATTEMPTS else "check") if r.check_passed is None else
                 "done" if done >= len(r.order) else "rating")
        rows.append({"rater": r.idx, "list": r.list_idx, "phase": phase, "rated": done, "total": len(r.order),
                     "check_attempts": r.check_attempts, "token": r.token})
    per_list = [sum(1 for x in rows if x["list"] == i and x["phase"] == "done") for i in range(len(session.plan.lists))]
    return {"session_id": session.session_id, "test_type": session.test_type, "raters": rows,
            "ratings": sum(x["rated"] for x in rows), "completed_per_list": per_list}

"""Evaluation results: per-utterance rows -> per-system aggregates with CIs -> JSON, Markdown, TSV and plots."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

from speechlm.errors import Problem, SpeechLMError
from speechlm.eval.stats import Estimate, mean_ci, ratio_ci
from speechlm.io import atomic_open, atomic_path, write_json, write_text

REPORT_VERSION = 1


@dataclass(frozen=True)
class MetricInfo:
    label: str
    higher_is_better: bool | None  # None: neither (a duration ratio is best at 1)
    description: str
    digits: int = 3
    scale: float = 1.0  # shown value = stored value * scale (WER is stored as a fraction, shown in %)


METRICS: dict[str, MetricInfo] = {
    "wer": MetricInfo("WER %", False, "corpus word error rate of the ASR transcript, total errors / total "
                      "reference words; bootstrap interval over utterances", 2, 100.0),
    "cer": MetricInfo("CER %", False, "corpus character error rate, as WER but on characters", 2, 100.0),
    "sim": MetricInfo("SIM", True, "cosine similarity of resemblyzer speaker embeddings, output vs reference"),
    "dnsmos_ovrl": MetricInfo("DNSMOS OVRL", True, "DNSMOS P.835 overall quality (1-5)", 2),
    "dnsmos_sig": MetricInfo("DNSMOS SIG", True, "DNSMOS P.835 speech signal quality (1-5)", 2),
    "dnsmos_bak": MetricInfo("DNSMOS BAK", True, "DNSMOS P.835 background noise, 5 = none (1-5)", 2),
    "dnsmos_p808": MetricInfo("DNSMOS P.808", True, "DNSMOS P.808 overall MOS (1-5)", 2),
    "duration_ratio": MetricInfo("dur. ratio", None, "output duration / reference duration", 3),
    "pesq_wb": MetricInfo("PESQ-WB", True, "PESQ wide-band (P.862.2) vs reference at 16 kHz (1.04-4.64)", 2),
    "stoi": MetricInfo("STOI", True, "short-time objective intelligibility vs reference (0-1)"),
    "mel_distance": MetricInfo("mel dist.", False, "mean |log mel difference| vs reference, 80 bands", 3),
    "si_sdr": MetricInfo("SI-SDR dB", True, "scale-invariant signal-to-distortion ratio vs reference", 1),
}
# What a user asks for (--metrics) -> the metrics it produces.
METRIC_GROUPS: dict[str, tuple[str, ...]] = {
    "wer": ("wer", "cer"),
    "sim": ("sim",),
    "dnsmos": ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"),
    "duration": ("duration_ratio",),
    "fidelity": ("pesq_wb", "stoi", "mel_distance", "si_sdr"),
}
# Aggregated as a ratio of sums (numerator field, denominator field) rather than a mean of rates.
RATIO_METRICS = {"wer": ("word_errors", "ref_words"), "cer": ("char_errors", "ref_chars")}


@dataclass
class UtteranceResult:
    """Everything measured on one output clip. ``metrics`` holds NaN where ``notes`` says why."""

    id: str
    system: str
    audio: str
    duration: float  # seconds of output audio
    metrics: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # metric -> reason it is NaN
    text: str | None = None
    reference_audio: str | None = None
    hypothesis: str | None = None  # raw ASR output
    counts: dict[str, int] = field(default_factory=dict)  # word_errors, ref_words, char_errors, ref_chars

    def to_dict(self) -> dict:
        d = asdict(self)
        d["metrics"] = {k: _json_float(v) for k, v in self.metrics.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UtteranceResult":
        d = dict(d)
        d["metrics"] = {k: math.nan if v is None else float(v) for k, v in d.get("metrics", {}).items()}
        return cls(**d)


@dataclass
class SystemSummary:
    system: str
    n_utterances: int
    metrics: dict[str, Estimate]


def _json_float(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def ordered_metrics(names: Iterable[str]) -> list[str]:
    names = set(names)
    return [m for m in METRICS if m in names]


def aggregate(rows: Sequence[UtteranceResult], metrics: Sequence[str], confidence: float = 0.95) -> list[SystemSummary]:
    """One summary per system, in order of first appearance; every metric gets an :class:`Estimate`."""
    systems: dict[str, list[UtteranceResult]] = {}
    for r in rows:
        systems.setdefault(r.system, []).append(r)
    out = []
    for name, rs in systems.items():
        est: dict[str, Estimate] = {}
        for m in metrics:
            if m in RATIO_METRICS:
                num_key, den_key = RATIO_METRICS[m]
                scored = [r for r in rs if num_key in r.counts]
                ratio = ratio_ci([r.counts[num_key] for r in scored], [r.counts[den_key] for r in scored], confidence)
                est[m] = replace(ratio, n_missing=sum(1 for r in rs if m in r.notes))
            else:
                est[m] = mean_ci([r.metrics[m] for r in rs if m in r.metrics], confidence)
        out.append(SystemSummary(name, len(rs), est))
    return out


@dataclass
class EvalReport:
    """Rows, their per-system aggregates, and how they were made. ``write`` puts it all in a folder."""

    rows: list[UtteranceResult]
    metrics: list[str]
    meta: dict = field(default_factory=dict)
    rejected: list[Problem] = field(default_factory=list)
    confidence: float = 0.95
    summaries: list[SystemSummary] = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = ordered_metrics(self.metrics)
        self.summaries = aggregate(self.rows, self.metrics, self.confidence)

    @property
    def systems(self) -> list[str]:
        return [s.system for s in self.summaries]

    def summary(self, system: str) -> SystemSummary:
        for s in self.summaries:
            if s.system == system:
                return s
        raise KeyError(f"no system {system!r} in this report (have: {', '.join(self.systems)})")

    # ------------------------------------------------------------ serialization

    def to_dict(self) -> dict:
        return {
            "version": REPORT_VERSION,
            "meta": self.meta,
            "confidence": self.confidence,
            "metrics": self.metrics,
            "systems": {s.system: {"n_utterances": s.n_utterances,
                                   "metrics": {m: {k: _json_float(v) if isinstance(v, float) else v
                                                   for k, v in e.to_dict().items()} for m, e in s.metrics.items()}}
                        for s in self.summaries},
            "rejected": [p.to_dict() for p in self.rejected],
            "utterances": [r.to_dict() for r in self.rows],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "EvalReport":
        if d.get("version") != REPORT_VERSION:
            raise ValueError(f"report version {d.get('version')!r} is not {REPORT_VERSION}; re-run speechlm eval")
        return cls(rows=[UtteranceResult.from_dict(r) for r in d["utterances"]], metrics=d["metrics"],
                   meta=d.get("meta", {}), rejected=[Problem(**p) for p in d.get("rejected", [])],
                   confidence=d.get("confidence", 0.95))

    @classmethod
    def load(cls, path: str | Path) -> "EvalReport":
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise SpeechLMError(f"{path}: not a readable speechlm eval report ({e})") from None

    # ------------------------------------------------------------ Markdown

    def comparison_table(self) -> str:
        """Systems side by side, one row each; the best value of each metric in bold."""
        best: dict[str, float] = {}
        for m in self.metrics:
            hib = METRICS[m].higher_is_better
            vals = [s.metrics[m].value for s in self.summaries if math.isfinite(s.metrics[m].value)]
            if hib is not None and len(set(vals)) > 1:  # nothing to single out when all are equal
                best[m] = max(vals) if hib else min(vals)
        arrow = {True: " ↑", False: " ↓", None: ""}
        head = ["system", "n"] + [METRICS[m].label + arrow[METRICS[m].higher_is_better] for m in self.metrics]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in self.summaries:
            cells = [s.system, str(s.n_utterances)]
            for m in self.metrics:
                e, info = s.metrics[m], METRICS[m]
                cell = e.format(info.digits, info.scale)
                if e.n_missing:
                    cell += f" ({e.n_missing} n/a)"
                cells.append(f"**{cell}**" if m in best and e.value == best[m] else cell)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines)

    def to_markdown(self, plots: Sequence[str] = ()) -> str:
        meta = self.meta
        pct = f"{self.confidence:.0%}"
        out = ["# speechlm eval report", ""]
        for key in ("created", "asr", "language", "manifests", "command"):
            if meta.get(key):
                val = ", ".join(f"`{v}`" for v in meta[key]) if isinstance(meta[key], list) else f"`{meta[key]}`"
                out.append(f"- {key}: {val}")
        out += ["", "## Systems", "",
                f"Means ± {pct} Student-t half-width; WER/CER are corpus rates with a {pct} bootstrap interval "
                "[low, high] over utterances. \"n/a\": utterances where the metric could not be computed "
                "(see below).", "", self.comparison_table(), "", "## Metrics", ""]
        out += [f"- **{METRICS[m].label}**: {METRICS[m].description}" for m in self.metrics]
        worst = [r for r in self.rows if "wer" in r.metrics and math.isfinite(r.metrics["wer"])]
        if worst:
            out += ["", "## Highest-WER utterances", "", "| system | id | WER % | reference | ASR output |",
                    "|---|---|---|---|---|"]
            for system in self.systems:
                mine = sorted((r for r in worst if r.system == system), key=lambda r: -r.metrics["wer"])[:5]
                out += [f"| {r.system} | {r.id} | {100 * r.metrics['wer']:.1f} | {_cell(r.text)} | "
                        f"{_cell(r.hypothesis)} |" for r in mine]
        notes = [(r, m, why) for r in self.rows for m, why in r.notes.items()]
        if notes:
            out += ["", f"## Not computed ({len(notes)})", "", "| system | id | metric | reason |", "|---|---|---|---|"]
            out += [f"| {r.system} | {r.id} | {m} | {_cell(why)} |" for r, m, why in notes[:100]]
            if len(notes) > 100:
                out.append(f"\n... and {len(notes) - 100} more in report.json")
        if self.rejected:
            out += ["", f"## Rejected input rows ({len(self.rejected)})", ""] + [f"- {p}" for p in self.rejected]
        if plots:
            out += ["", "## Distributions", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
        return "\n".join(out) + "\n"

    # ------------------------------------------------------------ files

    def write(self, out_dir: str | Path, plots: bool = True) -> dict[str, Path]:
        """Write ``report.json``, ``report.md``, ``utterances.tsv`` and ``plots/*.png``; return their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "report.json", "markdown": out / "report.md", "tsv": out / "utterances.tsv"}
        pngs = plot_distributions(self, out / "plots") if plots else []
        write_json(paths["json"], self.to_dict())
        write_text(paths["markdown"], self.to_markdown([str(p.relative_to(out)) for p in pngs]))
        with atomic_open(paths["tsv"]) as f:
            f.write(self.utterances_tsv())
        paths.update({f"plot_{p.stem}": p for p in pngs})
        return paths

    def utterances_tsv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, delimiter="\t", lineterminator="\n")
        w.writerow(["system", "id", "audio", "duration", *self.metrics, "hypothesis", "notes"])
        for r in self.rows:
            vals = [f"{r.metrics[m]:.6g}" if m in r.metrics else "" for m in self.metrics]
            notes = "; ".join(f"{k}: {v}" for k, v in r.notes.items())
            w.writerow([r.system, r.id, r.audio, f"{r.duration:.3f}", *vals, r.hypothesis or "", notes])
        return buf.getvalue()


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def plot_distributions(report: EvalReport, out_dir: str | Path) -> list[Path]:
    """One PNG per metric: a box per system (median, quartiles), its mean as a diamond, every utterance a dot."""
    import matplotlib

    matplotlib.use("Agg")  # headless: eval runs on servers and in CI
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in report.metrics:
        info = METRICS[m]
        data = [np.array([r.metrics[m] * info.scale for r in report.rows if r.system == s and m in r.metrics
                          and math.isfinite(r.metrics[m])]) for s in report.systems]
        if not any(d.size for d in data):
            continue
        fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(data), 3.6))
        pos = np.arange(1, len(data) + 1)
        keep = [i for i, d in enumerate(data) if d.size]
        ax.boxplot([data[i] for i in keep], positions=pos[keep], widths=0.5, showfliers=False)
        rng = np.random.default_rng(0)  # fixed jitter: re-running a report gives the same picture
        for i in keep:
            ax.scatter(pos[i] + rng.uniform(-0.15, 0.15, data[i].size), data[i], s=8, alpha=0.5, color="C0")
            ax.scatter([pos[i]], [data[i].mean()], marker="D", color="C3", zorder=3)
        ax.set_xticks(pos, report.systems, rotation=20 if len(data) > 3 else 0)
        ax.set_ylabel(info.label)
        direction = {True: " (higher is better)", False: " (lower is better)", None: ""}[info.higher_is_better]
        ax.set_title(f"{info.label}{direction}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"{m}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def compare_reports(paths: Sequence[str | Path]) -> EvalReport:
    """Merge saved ``report.json`` files into one report, so runs made at different times share a table."""
    reports = [EvalReport.load(p) for p in paths]
    seen: dict[str, str] = {}
    for path, rep in zip(paths, reports):
        for s in rep.systems:
            if s in seen:
                raise SpeechLMError(f"system {s!r} is in both {seen[s]} and {path}; rename one (the 'system' "
                                    "field or --system when evaluating)")
            seen[s] = str(path)
    metrics = ordered_metrics(m for r in reports for m in r.metrics)
    meta = {"created": reports[-1].meta.get("created"), "compared": [str(p) for p in paths],
            "manifests": [m for r in reports for m in r.meta.get("manifests", [])]}
    confidence = {r.confidence for r in reports}
    if len(confidence) > 1:
        raise SpeechLMError(f"reports use different confidence levels {sorted(confidence)}; re-run with one")
    return EvalReport([row for r in reports for row in r.rows], metrics, meta,
                      [p for r in reports for p in r.rejected], confidence.pop())

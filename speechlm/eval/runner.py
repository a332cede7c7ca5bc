"""``speechlm eval`` as a library call: read eval manifests, score every clip, write the report."""

from __future__ import annotations

import csv
import datetime as _dt
import difflib
import functools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import soundfile as sf

from speechlm import __version__
from speechlm.data.audio import AudioError, load_audio
from speechlm.errors import BadInputError, Problem, SpeechLMError
from speechlm.eval.report import METRIC_GROUPS, EvalReport, UtteranceResult
from speechlm.eval.wer import normalize_for_scoring, score_text

EVAL_SAMPLE_RATE = 16000  # every metric here (pocketsphinx, resemblyzer, DNSMOS, PESQ-WB) works at 16 kHz
MANIFEST_FIELDS = ("id", "audio", "text", "reference_audio", "system")
# Which manifest field a metric group cannot do without.
REQUIRES = {"wer": "text", "sim": "reference_audio", "duration": "reference_audio",
            "fidelity": "reference_audio", "dnsmos": None}


@dataclass(frozen=True)
class EvalItem:
    """One manifest row: an output clip to score, and what to score it against."""

    id: str
    audio: Path
    system: str
    source: str  # manifest file
    line: int
    text: str | None = None
    reference_audio: Path | None = None

    def problem(self, what: str, field: str | None = None) -> Problem:
        return Problem(source=self.source, line=self.line, item_id=self.id, problem=what, field=field)


def parse_metrics(spec: str | Sequence[str] | None) -> list[str] | None:
    """``"wer,sim"`` or ``["wer", "sim"]`` -> ``["wer", "sim"]``; None (or "all"/"") means "whatever applies"."""
    if spec is None:
        return None
    names = [n.strip().lower() for part in ([spec] if isinstance(spec, str) else spec) for n in part.split(",")]
    names = [n for n in names if n]
    if not names or names == ["all"]:
        return None
    unknown = [n for n in names if n not in METRIC_GROUPS]
    if unknown:
        raise SpeechLMError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRIC_GROUPS)}")
    return list(dict.fromkeys(names))


def _rows(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, row, error) for each data line of a JSONL, CSV or TSV manifest."""
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8-sig")  # Excel writes a BOM in front of CSV headers
    if suffix in (".jsonl", ".ndjson", ".json"):
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield lineno, None, f"not valid JSON ({e.msg} at column {e.colno})"
                continue
            yield (lineno, row, None) if isinstance(row, dict) else (lineno, None, "expected a JSON object per line")
    elif suffix in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [f for f in ("id", "audio") if f not in header]
        if missing:
            yield 1, None, f"header {header} lacks the column(s) {missing} (expected: {', '.join(MANIFEST_FIELDS)})"
            return
        reader.fieldnames = header
        for row in reader:
            lineno = reader.line_num
            if None in row:
                yield lineno, None, f"{len(header) + len(row[None])} fields, but the header has {len(header)}"
            elif not any((v or "").strip() for v in row.values()):
                continue
            else:
                # A CSV cannot tell "" from absent, so an empty cell means "not given".
                yield lineno, {k: v.strip() for k, v in row.items() if v is not None and v.strip()}, None
    else:
        raise SpeechLMError(f"{path}: unknown manifest type {suffix!r}; use .jsonl, .csv or .tsv")


def _resolve(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _check_audio(path: Path) -> str | None:
    if not path.exists():
        return f"audio file not found: {path}"
    if path.is_dir():
        return f"is a directory, not an audio file: {path}"
    try:
        sf.info(str(path))  # header only: catches non-audio and corrupt files before the long loop starts
    except (sf.LibsndfileError, RuntimeError) as e:
        return f"cannot read audio {path}: {e}"
    return None


def read_eval_manifest(path: str | Path, default_system: str | None = None,
                       language: str = "en") -> tuple[list[EvalItem], list[Problem]]:
    """Parse one manifest; return its items and every problem found (file + line + field + reason).

    Relative paths are resolved against the manifest's folder, so a manifest travels with its audio.
    """
    path = Path(path)
    if not path.is_file():
        raise SpeechLMError(f"{path}: eval manifest not found")
    system_default = default_system or path.stem
    items: list[EvalItem] = []
    problems: list[Problem] = []
    src = str(path)
    for lineno, row, error in _rows(path):
        if error:
            problems.append(Problem(src, error, line=lineno))
            continue
        uid = row.get("id")
        uid = str(uid) if isinstance(uid, (str, int)) and not isinstance(uid, bool) else ""
        found = len(problems)

        def bad(what: str, field: str | None = None) -> None:
            problems.append(Problem(src, what, line=lineno, item_id=uid or None, field=field))

        for key in row:
            close = difflib.get_close_matches(key, MANIFEST_FIELDS, n=1, cutoff=0.8)
            if key not in MANIFEST_FIELDS and close:
                bad(f"unknown field (did you mean '{close[0]}'?)", key)
        if not uid.strip():
            bad("missing or empty id", "id")
        for key in ("audio", "text", "reference_audio", "system"):
            if row.get(key) is not None and not isinstance(row[key], str):
                bad(f"expected a string, got {type(row[key]).__name__}", key)
        if len(problems) > found:
            continue
        paths: dict[str, Path | None] = {}
        for key in ("audio", "reference_audio"):
            value = (row.get(key) or "").strip()
            paths[key] = _resolve(value, path.parent) if value else None
            why = _check_audio(paths[key]) if value else ("missing audio path" if key == "audio" else None)
            if why:
                bad(why, key)
        text = (row.get("text") or "").strip() or None
        if text is not None and not normalize_for_scoring(text, language):
            bad("transcript has no words left after normalization", "text")
        if len(problems) == found:
            items.append(EvalItem(uid, paths["audio"], (row.get("system") or "").strip() or system_default, src,
                                  lineno, text, paths["reference_audio"]))
    if not items and not problems:
        problems.append(Problem(src, "manifest has no rows"))
    return items, problems


class Evaluator:
    """Scores single clips for the requested metric groups; backends are built once, on construction.

    Training hooks use it directly on in-memory audio: ``Evaluator(["wer", "sim"]).evaluate(wav, sr, text=...)``.
    """

    def __init__(self, groups: Sequence[str] = tuple(METRIC_GROUPS), asr: str = "pocketsphinx",
                 whisper_model: str | None = None, language: str = "en", device: str = "cpu"):
        unknown = set(groups) - set(METRIC_GROUPS)
        if unknown:
            raise SpeechLMError(f"unknown metric(s) {sorted(unknown)}; choose from {', '.join(METRIC_GROUPS)}")
        self.groups, self.language = list(groups), language
        self.seconds = {g: 0.0 for g in self.groups}  # time spent per group, for the report
        self._embeddings: dict[str, np.ndarray | str] = {}  # reference key -> embedding, or why it failed
        self.asr = self.speaker = self.dnsmos = None
        if "wer" in self.groups:
            from speechlm.eval.asr import get_asr

            self.asr = get_asr(asr, whisper_model, language)
        if "sim" in self.groups:
            from speechlm.eval.speaker import get_speaker_encoder

            self.speaker = get_speaker_encoder(device)
        if "dnsmos" in self.groups:
            from speechlm.eval.dnsmos import get_dnsmos

            self.dnsmos = get_dnsmos()

    def _reference_embedding(self, ref: np.ndarray, sr: int, key: str | None) -> np.ndarray:
        if key is None:
            return self.speaker.embed(ref, sr)
        if key not in self._embeddings:  # one voice prompt is usually shared by many outputs
            try:
                self._embeddings[key] = self.speaker.embed(ref, sr)
            except ValueError as e:
                self._embeddings[key] = str(e)
        got = self._embeddings[key]
        if isinstance(got, str):
            raise ValueError(f"reference: {got}")
        return got

    def evaluate(self, wav: np.ndarray, sample_rate: int, *, text: str | None = None,
                 reference: np.ndarray | None = None, reference_rate: int | None = None,
                 reference_key: str | None = None, id: str = "", system: str = "", audio: str = "") -> UtteranceResult:
        """Every requested metric that the given inputs allow; a metric that fails is NaN with a reason."""
        wav = np.asarray(wav, dtype=np.float32)
        r = UtteranceResult(id=id, system=system, audio=audio, duration=wav.size / sample_rate, text=text)
        ref_rate = reference_rate or sample_rate
        for group in self.groups:
            need = REQUIRES[group]
            if (need == "text" and text is None) or (need == "reference_audio" and reference is None):
                continue
            start = time.perf_counter()
            if group == "wer":
                r.hypothesis = self.asr.transcribe(wav, sample_rate)
                counts = score_text(text, r.hypothesis, self.language)
                r.metrics.update(wer=counts.wer, cer=counts.cer)
                r.counts = {"word_errors": counts.word_errors, "ref_words": counts.ref_words,
                            "char_errors": counts.char_errors, "ref_chars": counts.ref_chars}
            elif group == "sim":
                try:
                    ref_emb = self._reference_embedding(reference, ref_rate, reference_key)
                    r.metrics["sim"] = float(self.speaker.embed(wav, sample_rate) @ ref_emb)
                except ValueError as e:
                    r.metrics["sim"], r.notes["sim"] = math.nan, str(e)
            elif group == "dnsmos":
                from speechlm.eval.dnsmos import DNSMOSScores

                try:
                    scores = self.dnsmos(wav, sample_rate)
                except ValueError as e:
                    scores = DNSMOSScores.nan()
                    r.notes.update({f"dnsmos_{k}": str(e) for k in scores.to_dict()})
                r.metrics.update({f"dnsmos_{k}": v for k, v in scores.to_dict().items()})
            elif group == "duration":
                ref_seconds = len(reference) / ref_rate
                r.metrics["duration_ratio"] = r.duration / ref_seconds if ref_seconds > 0 else math.nan
                if ref_seconds <= 0:
                    r.notes["duration_ratio"] = "reference audio is empty"
            elif group == "fidelity":
                from speechlm.eval.fidelity import fidelity

                scores = fidelity(reference, ref_rate, wav, sample_rate)
                r.metrics.update(scores.metrics())
                r.notes.update(scores.reasons)
            self.seconds[group] += time.perf_counter() - start
        return r


def _default_systems(manifests: Sequence[Path]) -> list[str]:
    """The file stem names a system; where stems collide (``a/out.jsonl``, ``b/out.jsonl``) the folder joins in."""
    stems = [m.stem for m in manifests]
    return [f"{m.parent.name}/{m.stem}" if stems.count(m.stem) > 1 else m.stem for m in manifests]


def run_eval(manifests: Sequence[str | Path], out_dir: str | Path, metrics: str | Sequence[str] | None = None,
             systems: Sequence[str] | None = None, *, asr: str = "pocketsphinx", whisper_model: str | None = None,
             language: str = "en", skip_bad: bool = False, confidence: float = 0.95, plots: bool = True,
             progress: bool = True) -> EvalReport:
    """Score every row of ``manifests`` and write ``report.{json,md}``, ``utterances.tsv``, ``plots/`` to ``out_dir``.

    ``systems[i]`` names the system of ``manifests[i]`` for rows without a ``system`` field (default: the
    manifest's file name). ``metrics`` picks groups from :data:`METRIC_GROUPS`; None computes every group
    the rows allow, while a group asked for by name is required of every row. Bad rows raise
    :class:`BadInputError` before any audio is scored, unless ``skip_bad`` lists them in the report instead.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    groups = parse_metrics(metrics)
    paths = [Path(m) for m in manifests]
    if not paths:
        raise SpeechLMError("give at least one manifest to evaluate")
    if systems and len(systems) != len(paths):
        raise SpeechLMError(f"{len(systems)} system name(s) for {len(paths)} manifest(s); give one per manifest")
    names = list(systems) if systems else _default_systems(paths)
    items: list[EvalItem] = []
    problems: list[Problem] = []
    for path, name in zip(paths, names):
        got, bad = read_eval_manifest(path, name, language)
        items += got
        problems += bad
    seen: dict[tuple[str, str], EvalItem] = {}
    for it in items:
        first = seen.setdefault((it.system, it.id), it)
        if first is not it:
            problems.append(it.problem(f"duplicate id in system '{it.system}' (first at {first.source}:{first.line})",
                                       "id"))
    for g in groups or ():
        need = REQUIRES[g]
        problems += [it.problem(f"metric '{g}' needs '{need}'", need) for it in items if need and
                     getattr(it, need) is None]
    if problems and not skip_bad:
        raise BadInputError(problems, what="eval manifest(s)")
    bad_lines = {(p.source, p.line) for p in problems}
    items = [it for it in items if (it.source, it.line) not in bad_lines]
    if not items:
        raise SpeechLMError("no usable rows to evaluate" + (f" ({len(problems)} rejected)" if problems else ""))
    groups = groups or [g for g in METRIC_GROUPS if REQUIRES[g] is None or any(getattr(it, REQUIRES[g]) for it in items)]
    evaluator = Evaluator(groups, asr, whisper_model, language)
    load_reference = functools.lru_cache(maxsize=16)(lambda p: load_audio(p, EVAL_SAMPLE_RATE))
    rows: list[UtteranceResult] = []
    rejected = list(problems)
    for it in tqdm(items, desc="speechlm eval", unit="utt", disable=not progress):
        try:
            wav, sr = load_audio(it.audio, EVAL_SAMPLE_RATE)
            ref, ref_sr = load_reference(it.reference_audio) if it.reference_audio else (None, None)
        except AudioError as e:
            p = it.problem(str(e), "audio" if e.path == str(it.audio) else "reference_audio")
            if not skip_bad:
                raise BadInputError([p], what="eval audio") from None
            rejected.append(p)
            continue
        rows.append(evaluator.evaluate(wav, sr, text=it.text, reference=ref, reference_rate=ref_sr,
                                       reference_key=str(it.reference_audio) if ref is not None else None,
                                       id=it.id, system=it.system, audio=str(it.audio)))
    if not rows:
        raise SpeechLMError(f"every row was rejected ({len(rejected)}); nothing to report")
    meta = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "speechlm": __version__,
        "manifests": [str(p.resolve()) for p in paths],
        "metric_groups": groups,
        "asr": evaluator.asr.describe() if evaluator.asr else None,
        "language": language,
        "seconds": {**{g: round(s, 2) for g, s in evaluator.seconds.items()},
                    "total": round(time.perf_counter() - started, 2)},
    }
    metric_names = [m for g in groups for m in METRIC_GROUPS[g]]
    report = EvalReport(rows, metric_names, meta, rejected, confidence)
    report.write(out_dir, plots=plots)
    return report

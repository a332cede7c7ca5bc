"""Stage 1 of every data recipe: scan a corpus, check every transcript and audio file, write the manifest.

By default any problem stops the stage before anything is written, with a list naming each file,
line and problem. With ``skip_bad`` the good items are written, the bad ones go to ``rejects.tsv``,
and the count is reported. Audio checks (a full decode of every file) are the slow part: they run in
parallel and are cached in ``<out>/.cache/audio_check.jsonl`` so an interrupted run resumes.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from speechlm.data.audio import AudioCheck, AudioError, AudioInfo, inspect_audio
from speechlm.data.corpora import SCANNERS, Candidate
from speechlm.data.manifest import Utterance, manifest_stats, write_manifest
from speechlm.data.stages import fingerprint, load_stamp, write_stamp
from speechlm.errors import BadInputError, Problem, SpeechLMError
from speechlm.io import atomic_open
from speechlm.text.normalize import normalize_with_report

MANIFEST_NAME = "cuts.jsonl.gz"
REJECTS_NAME = "rejects.tsv"


@dataclass
class PrepareOptions:
    """Options of ``speechlm data prepare``; also settable from ``configs/data/prepare/*.yaml``."""

    language: str = "en"
    require_text: bool = True  # False for audio-only corpora (codec/vocoder training data)
    skip_bad: bool = False
    check: AudioCheck = field(default_factory=AudioCheck)
    workers: int | None = None  # audio-check processes; None = all cores
    force: bool = False  # re-run even if the stage stamp says it is done
    # Layout options, used by the scanners that understand them:
    metadata: str | None = None  # generic: metadata file name inside root
    columns: str | None = None  # generic: column names for a header-less table, e.g. "id,speaker,text"
    default_speaker: str | None = None  # generic: speaker when the table has none
    mic: str = "mic1"  # vctk 0.92: which microphone's recordings to use


@dataclass
class PrepareReport:
    corpus: str
    root: str
    manifest: str
    listed: int
    kept: int
    rejected: int
    hours: float
    speakers: int
    seconds: float
    rejects: str | None = None
    skipped_as_done: bool = False
    stats: dict = field(default_factory=dict)

    def summary(self) -> str:
        if self.skipped_as_done:
            return f"[prepare] {self.corpus}: already done ({self.manifest}); nothing to do (use --force to redo)"
        lines = [f"[prepare] {self.corpus}: {self.kept} utterances, {self.hours:.2f} h, "
                 f"{self.speakers} speakers -> {self.manifest} ({self.seconds:.1f} s)"]
        if self.rejected:
            lines.append(f"[prepare] skipped {self.rejected} bad item(s) or line(s); see {self.rejects}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------- audio checks

def _check_one(args: tuple[str, AudioCheck]) -> tuple[str, dict | str]:
    path, check = args
    try:
        return path, asdict(inspect_audio(path, check))
    except AudioError as e:
        return path, e.problem


def _file_key(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None  # missing files are never cached: they may appear before the next run
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def check_audio_files(paths: list[Path], check: AudioCheck, cache_file: Path | None,
                      workers: int | None, progress: bool = True) -> dict[Path, AudioInfo | str]:
    """Decode and check every file; returns ``{path: AudioInfo or problem string}``.

    Results are appended to ``cache_file`` as they arrive (keyed by path, size, mtime and the check
    limits), so a re-run after an interruption only decodes the files not checked yet. A torn last
    line from a killed run is ignored.
    """
    check_key = json.dumps(asdict(check), sort_keys=True)
    cached: dict[str, dict | str] = {}
    if cache_file is not None and cache_file.exists():
        for line in cache_file.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("check") == check_key:
                cached[row["key"]] = row["result"]

    results: dict[Path, AudioInfo | str] = {}
    todo: list[Path] = []
    for p in dict.fromkeys(paths):
        key = _file_key(p)
        if key is not None and key in cached:
            r = cached[key]
            results[p] = AudioInfo(**r) if isinstance(r, dict) else r
        else:
            todo.append(p)

    workers = workers or os.cpu_count() or 1
    cache = None
    if cache_file is not None and todo:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache = open(cache_file, "a", encoding="utf-8")
    try:
        jobs = [(str(p), check) for p in todo]
        if workers > 1 and len(jobs) >= 64:  # a process pool costs ~0.5 s to start: only worth it for many files
            pool = ProcessPoolExecutor(max_workers=workers)
            it = pool.map(_check_one, jobs, chunksize=16)
        else:
            pool, it = None, map(_check_one, jobs)
        for path_str, r in tqdm(it, total=len(jobs), desc="checking audio", unit="file",
                                disable=not progress or not jobs):
            p = Path(path_str)
            results[p] = AudioInfo(**r) if isinstance(r, dict) else r
            key = _file_key(p)
            if cache is not None and key is not None:
                cache.write(json.dumps({"key": key, "check": check_key, "result": r}) + "\n")
                cache.flush()
        if pool is not None:
            pool.shutdown()
    finally:
        if cache is not None:
            cache.close()
    return results


# ---------------------------------------------------------------------------------------- the stage

def _normalize(cand: Candidate, language: str) -> tuple[str, list[str]]:
    result = normalize_with_report(cand.corpus_normalized or cand.text, language=language)
    return result.text, result.dropped


def prepare(corpus: str, root: str | os.PathLike, out: str | os.PathLike,
            options: PrepareOptions | None = None, progress: bool = True) -> PrepareReport:
    """Turn the corpus at ``root`` into ``<out>/cuts.jsonl.gz``. See the module docstring."""
    opts = options or PrepareOptions()
    if corpus not in SCANNERS:
        raise SpeechLMError(f"unknown corpus '{corpus}'; known: {', '.join(sorted(SCANNERS))}")
    root, out = Path(root).resolve(), Path(out)
    manifest, rejects = out / MANIFEST_NAME, out / REJECTS_NAME
    params = {"corpus": corpus, "root": str(root),
              **{k: v for k, v in asdict(opts).items() if k not in ("workers", "force")}}
    fp = fingerprint(params)
    if not opts.force and (done := load_stamp(out, "prepare", fp, [manifest])) is not None:
        return PrepareReport(**{**done, "skipped_as_done": True})

    t0 = time.time()
    scan = SCANNERS[corpus](root, metadata=opts.metadata, columns=opts.columns,
                            default_speaker=opts.default_speaker, mic=opts.mic)
    problems: list[Problem] = list(scan.problems)
    bad: set[int] = set()  # indices of candidates with a problem

    first_seen: dict[str, Candidate] = {}
    normalized: dict[int, str] = {}
    for i, cand in enumerate(scan.candidates):
        if cand.id in first_seen:
            prev = first_seen[cand.id]
            where = f"{prev.source}:{prev.line}" if prev.line else prev.source
            problems.append(cand.problem(f"duplicate id '{cand.id}' (first seen at {where})", field="id"))
            bad.add(i)
            continue
        first_seen[cand.id] = cand
        if not cand.text.strip():
            if opts.require_text:
                problems.append(cand.problem("empty transcript", field="text"))
                bad.add(i)
            normalized[i] = ""
            continue
        text, dropped = _normalize(cand, cand.language or opts.language)
        if not text.strip():
            shown = "".join(dropped) or cand.text
            problems.append(cand.problem(f"transcript has nothing speakable after normalization ({shown!r})",
                                         field="text"))
            bad.add(i)
            continue
        normalized[i] = text

    to_check = [c.audio_path for i, c in enumerate(scan.candidates) if i not in bad]
    infos = check_audio_files(to_check, opts.check, out / ".cache" / "audio_check.jsonl",
                              opts.workers, progress)
    utterances: list[Utterance] = []
    for i, cand in enumerate(scan.candidates):
        if i in bad:
            continue
        info = infos[cand.audio_path]
        if isinstance(info, str):
            if cand.source == str(cand.audio_path):
                problems.append(cand.problem(info))
            else:  # name both the metadata line that listed the file and the file itself
                problems.append(cand.problem(f"audio {cand.audio_path}: {info}"))
            continue
        utterances.append(Utterance(
            id=cand.id, audio_path=str(Path(cand.audio_path).resolve()), sample_rate=info.sample_rate,
            num_samples=info.num_samples, duration=info.duration, text=cand.text,
            normalized_text=normalized[i], speaker=cand.speaker, language=cand.language or opts.language,
            corpus=corpus, split=cand.split, extra=cand.extra))

    if problems and not opts.skip_bad:
        raise BadInputError(problems, what=f"{corpus} corpus at {root}")
    if not utterances:
        raise SpeechLMError(f"{root}: no usable utterances found for corpus '{corpus}'")

    cuts = [u.to_cut() for u in utterances]
    write_manifest(cuts, manifest)
    rejects_path = None
    if opts.skip_bad:
        with atomic_open(rejects) as f:
            f.write("source\tline\tid\tfield\tproblem\n")
            for p in problems:
                f.write(f"{p.source}\t{p.line or ''}\t{p.item_id or ''}\t{p.field or ''}\t{p.problem}\n")
        rejects_path = str(rejects)
    stats = manifest_stats(cuts)
    report = PrepareReport(
        corpus=corpus, root=str(root), manifest=str(manifest), listed=len(scan.candidates),
        kept=len(utterances), rejected=len(problems), hours=sum(u.duration for u in utterances) / 3600,
        speakers=len({u.speaker for u in utterances}), seconds=time.time() - t0, rejects=rejects_path,
        stats=stats)
    write_stamp(out, "prepare", fp, asdict(report))
    return report

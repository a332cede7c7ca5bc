"""Generic folders: audio files plus a metadata table (CSV/TSV/pipe) or sidecar ``.txt``/``.lab`` transcripts.

Table mode (a metadata file exists): a header row naming the columns is used when present (``id``
or ``file``/``path``, ``text``, optional ``speaker``, ``language``, ``split``); without a header,
``columns`` names them, and by default 2 fields mean ``id,text`` and 3 mean ``id,speaker,text``.
The audio for an id is ``<id>`` itself when it has an audio extension, else ``wavs/<id>.*`` or ``<id>.*``.

Sidecar mode (no metadata file): every audio file under ``root``; its transcript is the ``.txt`` or
``.lab`` file with the same stem; its speaker is the first folder under ``root`` (or ``default_speaker``).
"""

from __future__ import annotations

from pathlib import Path

from speechlm.data.corpora.base import (
    AUDIO_EXTENSIONS, Candidate, ScanResult, find_audio, read_lines, read_table, register, require_dir,
)
from speechlm.errors import Problem, SpeechLMError

# Header names people use, mapped to the schema's names.
_SYNONYMS = {
    "id": "id", "utt_id": "id", "utterance_id": "id", "name": "id",
    "file": "file", "path": "file", "audio": "file", "audio_path": "file", "filename": "file", "wav": "file",
    "text": "text", "transcript": "text", "transcription": "text", "sentence": "text",
    "speaker": "speaker", "speaker_id": "speaker", "spk": "speaker",
    "language": "language", "lang": "language", "split": "split",
}
_METADATA_NAMES = ("metadata.csv", "metadata.tsv", "metadata.txt", "transcripts.csv", "transcripts.tsv")


def _delimiter(path: Path, first_line: str) -> str:
    if path.suffix == ".tsv":
        return "\t"
    for d in ("|", "\t"):
        if d in first_line:
            return d
    return ","


def _resolve_audio(root: Path, ref: str) -> Path:
    if Path(ref).suffix.lower() in AUDIO_EXTENSIONS:
        return root / ref
    return find_audio(root / "wavs", ref) or find_audio(root, ref) or root / "wavs" / f"{ref}.wav"


def _scan_table(root: Path, meta: Path, columns: list[str] | None, default_speaker: str) -> ScanResult:
    result = ScanResult()
    first = next(read_lines(meta, []), None)
    if first is None:
        result.problems.append(Problem(str(meta), "metadata file is empty"))
        return result
    first_no, first_line = first
    delim = _delimiter(meta, first_line)
    header = [f.strip().lower() for f in first_line.split(delim)]
    if all(h in _SYNONYMS for h in header) and any(_SYNONYMS[h] == "text" for h in header):
        columns, skip_line = [_SYNONYMS[h] for h in header], first_no
    else:
        skip_line = None
        if columns is None:
            n = len(first_line.split(delim))
            if n not in (2, 3):
                raise SpeechLMError(f"{meta}:{first_no}: {n} columns and no header row; say which they "
                                    "are with --columns (e.g. --columns id,speaker,text)")
            columns = ["id", "text"] if n == 2 else ["id", "speaker", "text"]
    if "id" not in columns and "file" not in columns:
        raise SpeechLMError(f"{meta}: no id or file column among {columns}")
    for lineno, row in read_table(meta, columns, delim, result.problems,
                                  last_column_takes_rest=columns[-1] == "text"):
        if lineno == skip_line:
            continue
        ref = row.get("file") or row.get("id", "")
        if not ref:
            result.problems.append(Problem(str(meta), "empty id", line=lineno, field="id"))
            continue
        utt_id = row.get("id") or Path(ref).stem
        result.candidates.append(Candidate(
            id=utt_id, audio_path=_resolve_audio(meta.parent, ref), text=row.get("text", ""),
            speaker=row.get("speaker") or default_speaker, source=str(meta), line=lineno,
            language=row.get("language") or None, split=row.get("split") or None))
    return result


def _scan_sidecars(root: Path, default_speaker: str | None) -> ScanResult:
    result = ScanResult()
    audio = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not audio:
        result.problems.append(Problem(str(root), "no metadata file and no audio files found"))
    for wav in audio:
        rel = wav.relative_to(root)
        speaker = default_speaker or (rel.parts[0] if len(rel.parts) > 1 else root.name)
        sidecar = next((s for s in (wav.with_suffix(".txt"), wav.with_suffix(".lab")) if s.exists()), None)
        text = " ".join(t for _, t in read_lines(sidecar, result.problems)).strip() if sidecar else ""
        utt_id = "_".join(rel.with_suffix("").parts)
        result.candidates.append(Candidate(id=utt_id, audio_path=wav, text=text, speaker=speaker,
                                           source=str(sidecar or wav)))
    return result


@register("generic")
def scan_generic(root: Path, metadata: str | None = None, columns: str | None = None,
                 default_speaker: str | None = None, **_) -> ScanResult:
    root = require_dir(root, "corpus")
    if metadata is not None:
        meta = root / metadata
        if not meta.exists():
            raise SpeechLMError(f"{meta}: metadata file not found")
    else:
        meta = next((root / n for n in _METADATA_NAMES if (root / n).exists()), None)
    cols = [c.strip() for c in columns.split(",")] if columns else None
    if meta is None:
        return _scan_sidecars(root, default_speaker)
    return _scan_table(root, meta, cols, default_speaker or root.name)


@register("synthetic")
def scan_synthetic(root: Path, **_) -> ScanResult:
    """The embedded corpus built by ``speechlm data synth`` (``metadata.csv`` with ``id|speaker|split|text``)."""
    root = require_dir(root, "synthetic corpus")
    if not (root / "metadata.csv").exists():
        raise SpeechLMError(f"{root}: no metadata.csv; build the corpus first with "
                            f"'speechlm data synth --size tiny|default --out {root}'")
    return _scan_table(root, root / "metadata.csv", None, "unknown")

"""LJSpeech 1.1 layout: ``metadata.csv`` (``id|transcription|normalized_transcription``) + ``wavs/<id>.wav``."""

from __future__ import annotations

from pathlib import Path

from speechlm.data.corpora.base import Candidate, ScanResult, read_lines, register, require_dir
from speechlm.errors import Problem


@register("ljspeech")
def scan_ljspeech(root: Path, metadata: str | None = None, default_speaker: str | None = None, **_) -> ScanResult:
    """Single-speaker corpora in LJSpeech's format (also the format of many LJSpeech-style datasets,
    which may omit the third column)."""
    root = require_dir(root, "LJSpeech")
    meta = root / (metadata or "metadata.csv")
    speaker = default_speaker or "LJ"
    result = ScanResult()
    if not meta.exists():
        result.problems.append(Problem(str(meta), "metadata file not found (expected LJSpeech layout: "
                                                  "metadata.csv + wavs/)"))
        return result
    for lineno, line in read_lines(meta, result.problems):
        fields = line.split("|")
        if len(fields) not in (2, 3) or not fields[0].strip():
            result.problems.append(Problem(
                str(meta), line=lineno,
                problem=f"malformed line: expected 'id|transcription|normalized_transcription', got "
                        f"{len(fields)} field(s)"))
            continue
        utt_id = fields[0].strip()
        result.candidates.append(Candidate(
            id=utt_id, audio_path=root / "wavs" / f"{utt_id}.wav", text=fields[1].strip(),
            corpus_normalized=fields[2].strip() if len(fields) == 3 and fields[2].strip() else None,
            speaker=speaker, source=str(meta), line=lineno))
    return result

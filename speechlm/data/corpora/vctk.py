"""VCTK layouts: 0.92 (``wav48_silence_trimmed/<spk>/<utt>_mic1.flac``) and 0.80 (``wav48/<spk>/<utt>.wav``)."""

from __future__ import annotations

from pathlib import Path

from speechlm.data.corpora.base import Candidate, ScanResult, read_lines, register, require_dir
from speechlm.errors import Problem


def _speaker_info(root: Path) -> dict[str, dict[str, str]]:
    """Gender/accent per speaker from ``speaker-info.txt`` (whitespace columns: ID AGE GENDER ACCENTS...)."""
    info: dict[str, dict[str, str]] = {}
    path = root / "speaker-info.txt"
    if path.exists():
        for _, line in read_lines(path, []):
            cols = line.split()
            if len(cols) >= 3 and cols[0] != "ID":
                spk = cols[0] if cols[0].startswith(("p", "s")) else f"p{cols[0]}"
                info[spk] = {"gender": cols[2], "accent": cols[3] if len(cols) > 3 else ""}
    return info


@register("vctk")
def scan_vctk(root: Path, mic: str | None = None, **_) -> ScanResult:
    """Transcripts in ``txt/<spk>/<spk>_<n>.txt``; speakers without transcripts (p315) are not listed."""
    root = require_dir(root, "VCTK")
    mic = mic or "mic1"
    result = ScanResult()
    txt_root = root / "txt"
    if not txt_root.is_dir():
        result.problems.append(Problem(str(txt_root), "transcript folder not found (expected VCTK layout "
                                                      "txt/<speaker>/<utt>.txt + wav48*/)"))
        return result
    info = _speaker_info(root)
    for txt in sorted(txt_root.rglob("*.txt")):
        spk, utt_id = txt.parent.name, txt.stem
        lines = [t for _, t in read_lines(txt, result.problems)]
        candidates = [root / "wav48_silence_trimmed" / spk / f"{utt_id}_{mic}.flac",
                      root / "wav48" / spk / f"{utt_id}.wav"]
        audio = next((p for p in candidates if p.exists()), candidates[0])
        result.candidates.append(Candidate(
            id=utt_id, audio_path=audio, text=" ".join(lines).strip(), speaker=spk,
            source=str(txt), line=None, extra=info.get(spk, {})))
    return result

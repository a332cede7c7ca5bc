"""LibriSpeech and LibriTTS / LibriTTS-R layouts: ``<subset>/<speaker>/<chapter>/`` folders."""

from __future__ import annotations

import re
from pathlib import Path

from speechlm.data.corpora.base import Candidate, ScanResult, find_audio, read_lines, register, require_dir
from speechlm.errors import Problem

_SUBSET = re.compile(r"^(train|dev|test)-(clean|other)(-\d+)?$")


def _subset_of(path: Path, root: Path) -> tuple[str | None, str | None]:
    """The LibriSpeech/LibriTTS subset a file belongs to (e.g. 'train-clean-100') and its split."""
    for part in path.relative_to(root).parts[:-1][::-1]:
        m = _SUBSET.match(part)
        if m:
            return part, m.group(1)
    m = _SUBSET.match(root.name)  # root may be the subset folder itself
    return (root.name, m.group(1)) if m else (None, None)


@register("librispeech")
def scan_librispeech(root: Path, **_) -> ScanResult:
    """``<spk>/<chapter>/<spk>-<chapter>.trans.txt`` lines ``UTTID WORDS...`` + ``UTTID.flac``."""
    root = require_dir(root, "LibriSpeech")
    result = ScanResult()
    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        result.problems.append(Problem(str(root), "no *.trans.txt files found (expected LibriSpeech layout "
                                                  "<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt)"))
    for trans in transcripts:
        for lineno, line in read_lines(trans, result.problems):
            utt_id, _, text = line.partition(" ")
            audio = find_audio(trans.parent, utt_id, (".flac", ".wav")) or trans.parent / f"{utt_id}.flac"
            subset, split = _subset_of(trans, root)
            result.candidates.append(Candidate(
                id=utt_id, audio_path=audio, text=text.strip(), speaker=utt_id.split("-")[0],
                source=str(trans), line=lineno, split=split,
                extra={"subset": subset} if subset else {}))
    return result


@register("libritts")
def scan_libritts(root: Path, **_) -> ScanResult:
    """``<spk>/<chapter>/<utt>.wav`` with ``<utt>.original.txt`` / ``<utt>.normalized.txt`` sidecars.

    LibriTTS-R has the same layout, so the same scanner serves both.
    """
    root = require_dir(root, "LibriTTS")
    result = ScanResult()
    wavs = sorted(root.rglob("*.wav"))
    if not wavs:
        result.problems.append(Problem(str(root), "no .wav files found (expected LibriTTS layout "
                                                  "<subset>/<speaker>/<chapter>/<utt>.wav)"))
    for wav in wavs:
        utt_id = wav.stem
        original = wav.with_name(f"{utt_id}.original.txt")
        normalized = wav.with_name(f"{utt_id}.normalized.txt")
        texts = {}
        for kind, sidecar in (("original", original), ("normalized", normalized)):
            if sidecar.exists():
                lines = [t for _, t in read_lines(sidecar, result.problems)]
                texts[kind] = " ".join(lines).strip()
        if not texts:
            result.problems.append(Problem(str(wav), "no transcript sidecar (.original.txt or "
                                                     ".normalized.txt) next to the audio", item_id=utt_id))
            continue
        subset, split = _subset_of(wav, root)
        result.candidates.append(Candidate(
            id=utt_id, audio_path=wav, text=texts.get("original", texts.get("normalized", "")),
            corpus_normalized=texts.get("normalized"), speaker=utt_id.split("_")[0],
            source=str(original if original.exists() else normalized), line=None, split=split,
            extra={"subset": subset} if subset else {}))
    return result

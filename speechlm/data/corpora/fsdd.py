"""Free Spoken Digit Dataset: ``{digit}_{speaker}_{index}.wav``, the transcript is the digit's word."""

from __future__ import annotations

import re
from pathlib import Path

from speechlm.data.corpora.base import Candidate, ScanResult, register, require_dir
from speechlm.errors import Problem

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)$")


@register("fsdd")
def scan_fsdd(root: Path, **_) -> ScanResult:
    """Recordings with index 0-4 form FSDD's official test set; the rest are training data."""
    root = require_dir(root, "FSDD")
    result = ScanResult()
    wavs = sorted(root.rglob("*.wav"))
    if not wavs:
        result.problems.append(Problem(str(root), "no .wav files found (expected FSDD recordings/*.wav)"))
    for wav in wavs:
        m = _NAME.match(wav.stem)
        if not m:
            result.problems.append(Problem(str(wav), "file name does not match {digit}_{speaker}_{index}.wav",
                                           item_id=wav.stem))
            continue
        digit, speaker, index = int(m.group(1)), m.group(2), int(m.group(3))
        result.candidates.append(Candidate(
            id=wav.stem, audio_path=wav, text=DIGIT_WORDS[digit], speaker=speaker, source=str(wav),
            split="test" if index < 5 else "train"))
    return result

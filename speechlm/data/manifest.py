"""The one manifest schema: lhotse ``CutSet`` JSONL (gzipped), one mono cut per utterance.

Every corpus preparer writes this, every later stage reads it. A line is a lhotse ``MonoCut``::

    cut.id                                    utterance id, unique within the manifest
    cut.start, cut.duration                   offset and duration in seconds within the recording
    cut.recording.sources[0].source           absolute path of the audio file
    cut.recording.sampling_rate               the file's native sample rate (Hz)
    cut.supervisions[0].text                  transcript as the corpus wrote it ("" for audio-only corpora)
    cut.supervisions[0].custom["normalized_text"]   output of ``speechlm.text`` normalization
    cut.supervisions[0].custom["phonemes"]    added by the text stage (``speechlm data text``)
    cut.supervisions[0].speaker, .language    speaker label, ISO language code ("en", "zh")
    cut.custom["corpus"]                      preparer name ("ljspeech", "synthetic", ...)
    cut.custom["split"]                       "train" | "dev" | "test" when the corpus defines one

Why lhotse rather than a private format: engineers in this field already read and write it, lhotse
itself converts Kaldi/ESPnet/NeMo data dirs to it in one call, and its cuts carry anything later
stages attach (tokens, features). :class:`Utterance` is a flat view for code that just needs the
fields. (Batching is our own: see ``sampler.py`` for why.)
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from lhotse import CutSet, MonoCut, Recording, SupervisionSegment
from lhotse.audio import AudioSource

from speechlm.errors import SpeechLMError
from speechlm.io import atomic_path

MANIFEST_SUFFIX = ".jsonl.gz"


@dataclass
class Utterance:
    """One row of a manifest, flat. ``duration`` is the utterance length, not the file's."""

    id: str
    audio_path: str
    sample_rate: int
    num_samples: int  # samples in the whole audio file
    duration: float
    text: str
    normalized_text: str
    speaker: str
    language: str
    offset: float = 0.0
    corpus: str = ""
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # corpus-specific fields (gender, subset, ...)

    def to_cut(self) -> MonoCut:
        rec = Recording(
            id=self.id,
            sources=[AudioSource(type="file", channels=[0], source=self.audio_path)],
            sampling_rate=self.sample_rate,
            num_samples=self.num_samples,
            duration=self.num_samples / self.sample_rate,
        )
        sup_custom = {"normalized_text": self.normalized_text, **self.extra}
        sup = SupervisionSegment(
            id=self.id, recording_id=self.id, start=0.0, duration=self.duration, channel=0,
            text=self.text, speaker=self.speaker, language=self.language, custom=sup_custom,
        )
        custom = {"corpus": self.corpus}
        if self.split is not None:
            custom["split"] = self.split
        return MonoCut(id=self.id, start=self.offset, duration=self.duration, channel=0,
                       recording=rec, supervisions=[sup], custom=custom)

    @classmethod
    def from_cut(cls, cut: MonoCut) -> "Utterance":
        sup = cut.supervisions[0]
        sup_custom = dict(sup.custom or {})
        normalized = sup_custom.pop("normalized_text", "")
        custom = cut.custom or {}
        return cls(
            id=cut.id, audio_path=cut.recording.sources[0].source,
            sample_rate=cut.recording.sampling_rate, num_samples=cut.recording.num_samples,
            duration=cut.duration, text=sup.text or "", normalized_text=normalized,
            speaker=sup.speaker or "", language=sup.language or "", offset=cut.start,
            corpus=custom.get("corpus", ""), split=custom.get("split"), extra=sup_custom,
        )


def write_manifest(cuts: Iterable[MonoCut], path: str | os.PathLike) -> Path:
    """Write cuts to ``path`` (``*.jsonl.gz``) atomically: readers see the old file or the whole new one."""
    path = Path(path)
    if not path.name.endswith(MANIFEST_SUFFIX):
        raise SpeechLMError(f"{path}: manifest files must end in {MANIFEST_SUFFIX}")
    with atomic_path(path) as tmp:
        CutSet.from_cuts(cuts).to_file(tmp)
    return path


def iter_manifest(path: str | os.PathLike) -> Iterator[MonoCut]:
    """Yield cuts one by one; a bad line raises an error naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise SpeechLMError(f"{path}: manifest not found (run the stage that writes it first)")
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                    cut = MonoCut.from_dict(data)
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                    raise SpeechLMError(f"{path}:{lineno}: not a valid manifest line ({e})") from None
                if not cut.supervisions or cut.recording is None:
                    raise SpeechLMError(f"{path}:{lineno}: cut '{cut.id}' has no recording or supervision")
                yield cut
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise SpeechLMError(f"{path}: cannot read manifest ({e})") from None


def read_manifest(path: str | os.PathLike) -> CutSet:
    """Load a whole manifest into memory (validated line by line)."""
    return CutSet.from_cuts(iter_manifest(path))


def manifest_stats(cuts: Iterable[MonoCut]) -> dict[str, Any]:
    """Counts a person wants before training: utterances, hours, speakers, duration range per split."""
    by_split: dict[str, dict[str, Any]] = {}
    for cut in cuts:
        s = by_split.setdefault((cut.custom or {}).get("split") or "all",
                                {"utterances": 0, "seconds": 0.0, "speakers": set(),
                                 "min_s": float("inf"), "max_s": 0.0})
        s["utterances"] += 1
        s["seconds"] += cut.duration
        s["speakers"].add(cut.supervisions[0].speaker)
        s["min_s"] = min(s["min_s"], cut.duration)
        s["max_s"] = max(s["max_s"], cut.duration)
    return {
        split: {"utterances": s["utterances"], "hours": round(s["seconds"] / 3600, 4),
                "speakers": len(s["speakers"]), "min_s": round(s["min_s"], 3), "max_s": round(s["max_s"], 3)}
        for split, s in sorted(by_split.items())
    }

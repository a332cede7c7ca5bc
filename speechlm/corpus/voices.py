"""The offline Debian voices the corpus is spoken by, and thin wrappers around flite, festival and espeak-ng."""

from __future__ import annotations

import re
import shutil
from abc import ABC, abstractmethod
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from speechlm.errors import SpeechLMError


@dataclass(frozen=True)
class Voice:
    name: str  # corpus speaker name; no "_" so "<voice>_<sentence_id>" splits unambiguously
    engine: str  # key of ENGINES
    engine_voice: str  # the engine's own name for the voice
    package: str  # Debian package that ships the voice


# Intelligibility measured with pocketsphinx on this kind of machine (docs/design.md) is noted so the
# default mix can favour clear voices while keeping engine and speaker variety.
VOICES: dict[str, Voice] = {v.name: v for v in (
    Voice("flite-rms", "flite", "rms", "flite"),  # US male, WER 7%
    Voice("flite-kal16", "flite", "kal16", "flite"),  # US male diphone, 9%
    Voice("flite-awb", "flite", "awb", "flite"),  # Scottish male, 13%
    Voice("flite-slt", "flite", "slt", "flite"),  # US female, 18%
    Voice("flite-kal", "flite", "kal", "flite"),  # 8 kHz diphone, 33%: catalogued, not in the presets
    Voice("festival-slt-hts", "festival", "cmu_us_slt_arctic_hts", "festvox-us-slt-hts"),  # US female, 13%
    Voice("festival-kal", "festival", "kal_diphone", "festvox-kallpc16k"),  # US male, 16%
    Voice("festival-ked", "festival", "ked_diphone", "festvox-kdlpc16k"),  # US male
    # espeak-ng's formant voices are hard for ASR (86% WER) but add timbres no other engine has.
    # A variant only applies to a voice *file* name: "en-gb+m7" silently speaks plain en-gb, so the
    # British voice is "en" (the file gmw/en) plus the variant.
    Voice("espeak-en-us-f3", "espeak-ng", "en-us+f3", "espeak-ng"),
    Voice("espeak-en-us-m3", "espeak-ng", "en-us+m3", "espeak-ng"),
    Voice("espeak-en-gb-m7", "espeak-ng", "en+m7", "espeak-ng"),
)}


def get_voice(name: str) -> Voice:
    try:
        return VOICES[name]
    except KeyError:
        raise SpeechLMError(f"unknown corpus voice '{name}'; known voices: {', '.join(VOICES)}") from None


@dataclass
class Synthesized:
    """One engine output: mono float32 audio at the engine's own rate, or the reason there is none."""

    audio: np.ndarray | None
    sample_rate: int
    error: str | None = None


def _read(path: Path, stderr: str, failed: bool = False) -> Synthesized:
    if failed or not path.exists() or path.stat().st_size <= 44:  # a bare WAV header: nothing was spoken
        return Synthesized(None, 0, stderr.strip() or "the engine wrote no audio")
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    return Synthesized(audio.mean(axis=1), sr)


def _run(cmd: list[str], timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(cmd, -1, "", f"timed out after {timeout:.0f} s: {e.stderr or ''}")


class Engine(ABC):
    """A speech engine reached through its command-line program."""

    name = ""
    binary = ""  # the program looked up on PATH
    package = ""  # the Debian package that ships the program

    @abstractmethod
    def installed_voices(self) -> set[str]:
        """The engine's own names of the voices installed on this machine."""

    @abstractmethod
    def synthesize(self, voice: Voice, texts: list[str], workdir: Path) -> list[Synthesized]:
        """One result per text, in order; a failed item carries the engine's stderr."""


class Flite(Engine):
    name, binary, package = "flite", "flite", "flite"

    def installed_voices(self) -> set[str]:
        # flite silently falls back to its default voice for an unknown name, so ask for the list.
        out = _run([self.binary, "-lv"], timeout=30).stdout
        return set(out.split(":", 1)[-1].split())

    def synthesize(self, voice: Voice, texts: list[str], workdir: Path) -> list[Synthesized]:
        results = []
        for i, text in enumerate(texts):
            wav = workdir / f"{i}.wav"
            proc = _run([self.binary, "-voice", voice.engine_voice, "-t", text, "-o", str(wav)], timeout=120)
            results.append(_read(wav, proc.stderr, failed=proc.returncode != 0))
        return results


class Espeak(Engine):
    name, binary, package = "espeak-ng", "espeak-ng", "espeak-ng"

    def installed_voices(self) -> set[str]:
        # A voice "en-us+f3" is a voice file plus a variant.  espeak-ng silently ignores an unknown
        # variant, or any variant after a bare language name, so only file names are accepted.
        rows = [line.split() for line in _run([self.binary, "--voices"], 30).stdout.splitlines()[1:]]
        files = {row[4].rsplit("/", 1)[-1].lower() for row in rows if len(row) > 4}
        variants = set(re.findall(r"!v/(\S+)", _run([self.binary, "--voices=variant"], 30).stdout))
        return {f"{f}+{v}" for f in files for v in variants} | files

    def synthesize(self, voice: Voice, texts: list[str], workdir: Path) -> list[Synthesized]:
        results = []
        for i, text in enumerate(texts):
            wav = workdir / f"{i}.wav"
            proc = _run([self.binary, "-v", voice.engine_voice, "-w", str(wav), text], timeout=120)
            results.append(_read(wav, proc.stderr, failed=proc.returncode != 0))
        return results


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Festival(Engine):
    name, binary, package = "festival", "festival", "festival"
    _FAILED = "SPEECHLM-FAILED"

    def installed_voices(self) -> set[str]:
        out = _run([self.binary, "--batch", "(print (voice.list))"], timeout=60).stdout
        return set(out.replace("(", " ").replace(")", " ").split())

    def synthesize(self, voice: Voice, texts: list[str], workdir: Path) -> list[Synthesized]:
        # Festival takes ~0.7 s to start, so one process speaks the whole chunk.  Without
        # unwind-protect one bad utterance would abort the batch; with it festival prints a marker
        # for the failed item and carries on.
        lines = [f"(voice_{voice.engine_voice})"]
        for i, text in enumerate(texts):
            lines.append(
                f'(unwind-protect (utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)})) "{i}.wav" '
                f"'riff) (format t \"{self._FAILED} {i}\\n\"))"
            )
        script = workdir / "batch.scm"
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        proc = _run([self.binary, "--batch", script.name], timeout=60 + 10 * len(texts), cwd=workdir)
        failed = {int(i) for i in re.findall(rf"{self._FAILED} (\d+)", proc.stdout)}
        # Items saved before a crash are whole (each is written in one call), so only items with a
        # failure marker or without a file are errors.
        stderr = proc.stderr.strip() or f"festival exited with status {proc.returncode}"
        return [_read(workdir / f"{i}.wav", stderr, failed=i in failed) for i in range(len(texts))]


ENGINES: dict[str, Engine] = {e.name: e for e in (Flite(), Festival(), Espeak())}


def check_voices(voices: list[Voice]) -> None:
    """Raise a ``SpeechLMError`` naming the Debian package to install for every missing engine or voice."""
    problems = []
    for engine_name in sorted({v.engine for v in voices}):
        engine = ENGINES[engine_name]
        users = [v for v in voices if v.engine == engine_name]
        if shutil.which(engine.binary) is None:
            problems.append(
                f"voice(s) {', '.join(v.name for v in users)} need the '{engine.binary}' program, which is not "
                f"installed: install the Debian package '{engine.package}' (apt-get install {engine.package})"
            )
            continue
        installed = engine.installed_voices()
        for v in users:
            if v.engine_voice not in installed:
                problems.append(
                    f"voice {v.name} needs {engine.name} voice '{v.engine_voice}', which {engine.name} does not list: "
                    f"install the Debian package '{v.package}' (apt-get install {v.package}) or fix the voice name"
                )
    if problems:
        raise SpeechLMError("cannot synthesize the corpus:\n  - " + "\n  - ".join(problems))


def synthesize(voice: Voice, texts: list[str], workdir: str | Path) -> list[Synthesized]:
    """Speak ``texts`` with ``voice``; one result per text, in order, at the engine's own sample rate."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    return ENGINES[voice.engine].synthesize(voice, texts, workdir)

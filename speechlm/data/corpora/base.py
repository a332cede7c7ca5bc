"""What every corpus preparer shares: the candidate row, the scan result, and a strict metadata reader."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from speechlm.errors import Problem, SpeechLMError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au")


@dataclass
class Candidate:
    """An utterance as the corpus lists it, before its audio and text are checked."""

    id: str
    audio_path: Path
    text: str
    speaker: str
    source: str  # the file that listed it (metadata file, or the sidecar transcript)
    # The corpus's own normalized transcript (LJSpeech column 3, LibriTTS .normalized.txt): when
    # present it is what our normalizer starts from, since its authors checked it by hand.
    corpus_normalized: str | None = None
    line: int | None = None
    language: str | None = None  # None: the language given to ``prepare``
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def problem(self, what: str, field: str | None = None) -> Problem:
        return Problem(source=self.source, line=self.line, item_id=self.id, problem=what, field=field)


@dataclass
class ScanResult:
    candidates: list[Candidate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


Scanner = Callable[..., ScanResult]

#: corpus name -> scanner ``(root: Path, **options) -> ScanResult``; filled by ``register``.
SCANNERS: dict[str, Scanner] = {}


def register(name: str) -> Callable[[Scanner], Scanner]:
    def wrap(fn: Scanner) -> Scanner:
        SCANNERS[name] = fn
        return fn

    return wrap


def require_dir(root: Path, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise SpeechLMError(f"{root}: {what} root directory does not exist")
    return root


def read_lines(path: Path, problems: list[Problem]) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-empty line, decoding each line as UTF-8 on its own.

    A line that is not UTF-8 becomes a problem naming the line and byte offset; the other lines still
    load, so one bad byte does not hide every other error in the file.
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SpeechLMError(f"{path}: cannot read metadata file ({e.strerror})") from None
    if raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark written by some spreadsheet tools
        raw = raw[3:]
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        line = line.rstrip(b"\r")
        if not line.strip():
            continue
        try:
            yield lineno, line.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(Problem(
                source=str(path), line=lineno,
                problem=f"not valid UTF-8 (byte 0x{line[e.start]:02x} at column {e.start + 1}); "
                        "re-save the file as UTF-8",
            ))


def split_fields(line: str, delimiter: str) -> list[str]:
    """Split one metadata line. Pipe/tab files are unquoted (LJSpeech has bare quotes in its text);
    comma files follow CSV quoting so a comma inside a quoted transcript stays in the text."""
    if delimiter == ",":
        return next(csv.reader(io.StringIO(line)))
    return line.split(delimiter)


def read_table(path: Path, columns: list[str], delimiter: str, problems: list[Problem],
               last_column_takes_rest: bool = True) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, {column: value})`` for each well-formed row of a delimited file.

    A row with too few or too many fields becomes a problem naming the file, line and expectation.
    ``last_column_takes_rest`` lets a transcript contain the delimiter (only when it is the last column).
    """
    shown = "|" if delimiter == "|" else ("TAB" if delimiter == "\t" else delimiter)
    for lineno, line in read_lines(path, problems):
        try:
            fields = split_fields(line, delimiter)
        except (csv.Error, StopIteration) as e:
            problems.append(Problem(str(path), f"malformed CSV line ({e})", line=lineno))
            continue
        if last_column_takes_rest and len(fields) > len(columns) and delimiter != ",":
            fields = fields[: len(columns) - 1] + [delimiter.join(fields[len(columns) - 1:])]
        if len(fields) != len(columns):
            problems.append(Problem(
                str(path), line=lineno,
                problem=f"malformed line: expected {len(columns)} '{shown}'-separated fields "
                        f"({shown.join(columns)}), got {len(fields)}",
            ))
            continue
        yield lineno, {c: v.strip() for c, v in zip(columns, fields)}


def find_audio(folder: Path, stem: str, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> Path | None:
    for ext in extensions:
        p = folder / f"{stem}{ext}"
        if p.exists():
            return p
    return None

"""Errors for bad user input: each names the file (and line, field) and says what is wrong."""

from __future__ import annotations

from dataclasses import asdict, dataclass


class SpeechLMError(Exception):
    """Base class for errors a user can act on; the CLI prints them without a traceback."""


@dataclass(frozen=True)
class Problem:
    """One rejected input item: where it came from and why it was rejected."""

    source: str  # file the problem is in (metadata file, or the audio file itself)
    problem: str  # human-readable reason, e.g. "empty transcript"
    line: int | None = None  # 1-based line in ``source`` when it is a text file
    item_id: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.source + (f":{self.line}" if self.line is not None else "")
        what = f" [{self.item_id}]" if self.item_id else ""
        field = f" field '{self.field}':" if self.field else ""
        return f"{where}{what}:{field} {self.problem}"

    def to_dict(self) -> dict:
        return asdict(self)


class BadInputError(SpeechLMError):
    """Raised when input data has problems and the caller did not ask to skip them."""

    def __init__(self, problems: list[Problem], what: str = "input", max_listed: int = 20):
        self.problems = list(problems)
        listed = "\n".join(f"  - {p}" for p in self.problems[:max_listed])
        more = len(self.problems) - max_listed
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(
            f"{len(self.problems)} problem(s) in {what}; nothing was written.\n{listed}{tail}\n"
            "Fix them, or pass --skip-bad to skip these items and write a rejects report."
        )

"""The project's own chat turns: closed-domain question -> answer pairs for the LM's ``chat`` task.

A small LM trained on a few hours of speech cannot hold an open conversation, but it can learn a
closed domain whose answers follow from the question: small-number arithmetic, counting, the order
of days, months and letters, comparisons, and everyday courtesies. Every answer is computed here, so
the set is exact, and a held-out part (by question, never by answer template alone) measures whether
the model learned the rule rather than the pairs. Numbers are spelled out, as in the sentence corpus.
"""

from __future__ import annotations

import random
import string
from dataclasses import asdict, dataclass
from pathlib import Path

from num2words import num2words

from speechlm.io import atomic_open

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
COURTESIES = (
    ("Hello!", "Hello! How can I help you?"),
    ("Hi there.", "Hi! What would you like to know?"),
    ("Good morning.", "Good morning to you too."),
    ("Good evening.", "Good evening! How was your day?"),
    ("How are you?", "I am fine, thank you."),
    ("What is your name?", "I am a small speech language model."),
    ("Who made you?", "I was trained by the speech L M project."),
    ("Thank you.", "You are welcome."),
    ("Thanks a lot!", "Glad I could help."),
    ("Goodbye.", "Goodbye, and have a nice day."),
    ("See you later.", "See you later!"),
    ("Can you help me?", "Yes, ask me about numbers, days, months or letters."),
    ("What can you do?", "I can count, add, subtract and multiply small numbers."),
    ("Do you like music?", "I only know about speech, but it sounds nice."),
)
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Turn:
    """One user turn and the answer the assistant should give."""

    id: str
    topic: str
    user: str
    reply: str
    split: str = "train"


def _n(x: int) -> str:
    return num2words(x)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _arithmetic() -> list[tuple[str, str, str]]:
    out = []
    for a in range(21):
        for b in range(21):
            out.append(("plus", f"What is {_n(a)} plus {_n(b)}?", f"{_n(a)} plus {_n(b)} is {_n(a + b)}."))
            if a >= b:
                out.append(("minus", f"What is {_n(a)} minus {_n(b)}?", f"{_n(a)} minus {_n(b)} is {_n(a - b)}."))
            if a <= 10 and b <= 10:
                out.append(("times", f"What is {_n(a)} times {_n(b)}?", f"{_n(a)} times {_n(b)} is {_n(a * b)}."))
            if a != b and a < b:
                big, small = max(a, b), min(a, b)
                out.append(("compare", f"Which is bigger, {_n(a)} or {_n(b)}?", f"{_n(big)} is bigger than {_n(small)}."))
    return out


def _sequences() -> list[tuple[str, str, str]]:
    out = []
    for n in range(100):
        out.append(("after", f"What number comes after {_n(n)}?", f"After {_n(n)} comes {_n(n + 1)}."))
        if n > 0:
            out.append(("before", f"What number comes before {_n(n)}?", f"Before {_n(n)} comes {_n(n - 1)}."))
    for names, what in ((DAYS, "day"), (MONTHS, "month")):
        for i, name in enumerate(names):
            nxt, prev = names[(i + 1) % len(names)], names[i - 1]
            out.append((what, f"What {what} comes after {name}?", f"The {what} after {name} is {nxt}."))
            out.append((what, f"What {what} comes before {name}?", f"The {what} before {name} is {prev}."))
    letters = string.ascii_uppercase
    for i, ch in enumerate(letters[:-1]):
        out.append(("letter", f"What letter comes after {ch}?", f"After {ch} comes {letters[i + 1]}."))
    return out


def build_turns(seed: int = 0, test_fraction: float = 0.1) -> list[Turn]:
    """Every turn of the domain, each assigned to train or test by a seeded draw (courtesies: train)."""
    rng = random.Random(seed)
    turns = [Turn(f"chat-courtesy-{i:03d}", "courtesy", u, r) for i, (u, r) in enumerate(COURTESIES)]
    for i, (topic, user, reply) in enumerate(_arithmetic() + _sequences()):
        split = "test" if rng.random() < test_fraction else "train"
        turns.append(Turn(f"chat-{topic}-{i:05d}", topic, user, _cap(reply), split))
    return turns


def write_turns(turns: list[Turn], path: str | Path) -> Path:
    """One JSON object per line (id, topic, user, reply, split), written atomically."""
    import json

    path = Path(path)
    with atomic_open(path, "w", encoding="utf-8") as f:
        for t in turns:
            f.write(json.dumps(asdict(t), ensure_ascii=False) + "\n")
    return path

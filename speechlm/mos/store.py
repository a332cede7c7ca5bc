"""Rating storage: SQLite in WAL mode, one row per rater per item, every write its own short transaction."""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from speechlm.errors import SpeechLMError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raters (
    idx INTEGER PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    list_idx INTEGER NOT NULL,
    item_order TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    check_passed REAL,
    check_attempts INTEGER NOT NULL DEFAULT 0,
    pending_check TEXT,
    finished REAL
);
CREATE TABLE IF NOT EXISTS served (
    rater INTEGER NOT NULL REFERENCES raters(idx),
    name TEXT NOT NULL,
    first_at REAL NOT NULL,
    PRIMARY KEY (rater, name)
);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY,
    rater INTEGER NOT NULL REFERENCES raters(idx),
    item_id TEXT NOT NULL,
    shown TEXT NOT NULL,
    value TEXT NOT NULL,
    listen_s REAL NOT NULL,
    client_s REAL,
    created REAL NOT NULL,
    UNIQUE (rater, item_id)
);
"""


_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _write_lock(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path.resolve(), threading.Lock())


class AlreadyRated(SpeechLMError):
    """A second rating of the same item by the same rater; the first one stands."""


@dataclass
class Rater:
    idx: int
    token: str
    list_idx: int
    order: list[dict]  # [{"item": id, "shown": [names in display order]}], see design.rater_order
    created: float
    started: float | None
    check_passed: float | None
    check_attempts: int
    pending_check: list[str] | None
    finished: float | None


@dataclass
class Rating:
    rater: int
    item_id: str
    shown: list[str]
    value: Any  # the answer as the rater gave it (relative to ``shown``)
    listen_s: float  # server-measured time from first audio request to the rating
    client_s: float | None  # playback time the page reported
    created: float


def _rater(row: sqlite3.Row) -> Rater:
    return Rater(row["idx"], row["token"], row["list_idx"], json.loads(row["item_order"]), row["created"],
                 row["started"], row["check_passed"], row["check_attempts"],
                 json.loads(row["pending_check"]) if row["pending_check"] else None, row["finished"])


class Store:
    """All reads and writes of a session's ``ratings.sqlite``; safe to use from many threads and processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        # One connection per thread, kept open: no connection is shared between threads, and closing the
        # last one would checkpoint the WAL into the database file (an fsync) after every request.
        con = getattr(self._local, "con", None)
        if con is None:
            if not self.path.exists():
                raise SpeechLMError(f"{self.path}: ratings database missing")
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA foreign_keys=ON")
            self._local.con = con
        return con

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        yield self._connection()

    @contextlib.contextmanager
    def _tx(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction; IMMEDIATE takes the write lock up front so check-then-write cannot race.

        Writers of this process queue on a lock first: SQLite's own busy handler backs off by sleeping
        up to 100 ms, which under a burst of ratings costs far more than waiting in line.
        """
        con = self._connection()
        # In WAL mode NORMAL already survives a killed process; FULL also fsyncs every commit, so an
        # acknowledged rating survives a power cut too. Bookkeeping writes skip that cost.
        con.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        with _write_lock(self.path):
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (others close when their threads and this store go away)."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def init(self, session_id: str) -> None:
        con = sqlite3.connect(self.path, timeout=30.0)
        try:
            con.execute("PRAGMA journal_mode=WAL")  # persistent: readers never block the writer
            con.executescript(SCHEMA)
            con.execute("INSERT OR IGNORE INTO meta VALUES ('session_id', ?)", (session_id,))
            con.commit()
            stored = con.execute("SELECT value FROM meta WHERE key='session_id'").fetchone()[0]
        finally:
            con.close()
        if stored != session_id:
            raise SpeechLMError(f"{self.path} belongs to another session ({stored})")

    def session_id(self) -> str:
        with self._read() as con:
            return con.execute("SELECT value FROM meta WHERE key='session_id'").fetchone()[0]

    def add_raters(self, count: int, order_fn: Callable[[int], tuple[int, list[dict]]]) -> list[str]:
        """Add ``count`` raters with the next indices; ``order_fn(idx) -> (list_idx, order)``. Returns tokens."""
        tokens = []
        with self._tx(durable=True) as con:
            start = con.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM raters").fetchone()[0]
            for idx in range(start, start + count):
                list_idx, order = order_fn(idx)
                token = secrets.token_urlsafe(18)
                con.execute("INSERT INTO raters (idx, token, list_idx, item_order, created) VALUES (?, ?, ?, ?, ?)",
                            (idx, token, list_idx, json.dumps(order), time.time()))
                tokens.append(token)
        return tokens

    def rater(self, token: str) -> Rater | None:
        with self._read() as con:
            row = con.execute("SELECT * FROM raters WHERE token = ?", (token,)).fetchone()
        return _rater(row) if row else None

    def raters(self) -> list[Rater]:
        with self._read() as con:
            return [_rater(r) for r in con.execute("SELECT * FROM raters ORDER BY idx")]

    def mark_started(self, idx: int) -> None:
        with self._tx() as con:
            con.execute("UPDATE raters SET started = COALESCE(started, ?) WHERE idx = ?", (time.time(), idx))

    def set_pending_check(self, idx: int, names: list[str]) -> None:
        with self._tx() as con:
            con.execute("UPDATE raters SET pending_check = ? WHERE idx = ?", (json.dumps(names), idx))

    def record_check(self, idx: int, passed: bool) -> int:
        """Count an attempt at the listening check and clear it; returns the attempts made so far."""
        with self._tx() as con:
            con.execute("UPDATE raters SET check_attempts = check_attempts + 1, pending_check = NULL, "
                        "check_passed = CASE WHEN ? THEN ? ELSE check_passed END WHERE idx = ?",
                        (passed, time.time(), idx))
            return con.execute("SELECT check_attempts FROM raters WHERE idx = ?", (idx,)).fetchone()[0]

    def mark_served(self, idx: int, name: str) -> None:
        """Remember when a rater first fetched a clip: the earliest moment they could have started listening."""
        with self._read() as con:
            if con.execute("SELECT 1 FROM served WHERE rater = ? AND name = ?", (idx, name)).fetchone():
                return  # browsers re-request audio in byte ranges; only the first fetch matters
        with self._tx() as con:
            con.execute("INSERT OR IGNORE INTO served VALUES (?, ?, ?)", (idx, name, time.time()))

    def served(self, idx: int, names: list[str]) -> dict[str, float]:
        with self._read() as con:
            rows = con.execute(f"SELECT name, first_at FROM served WHERE rater = ? AND name IN "
                               f"({','.join('?' * len(names))})", (idx, *names)).fetchall()
        return {r["name"]: r["first_at"] for r in rows}

    def add_rating(self, idx: int, item_id: str, shown: list[str], value: Any, listen_s: float,
                   client_s: float | None, total: int) -> int:
        """Store one rating atomically; raises :class:`AlreadyRated` for a repeat. Returns items now rated."""
        try:
            with self._tx(durable=True) as con:
                con.execute("INSERT INTO ratings (rater, item_id, shown, value, listen_s, client_s, created) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (idx, item_id, json.dumps(shown), json.dumps(value), listen_s, client_s, time.time()))
                done = con.execute("SELECT COUNT(*) FROM ratings WHERE rater = ?", (idx,)).fetchone()[0]
                if done >= total:
                    con.execute("UPDATE raters SET finished = COALESCE(finished, ?) WHERE idx = ?",
                                (time.time(), idx))
        except sqlite3.IntegrityError:
            raise AlreadyRated(f"item {item_id} is already rated; a rating cannot be changed") from None
        return done

    def rated_items(self, idx: int) -> set[str]:
        with self._read() as con:
            return {r[0] for r in con.execute("SELECT item_id FROM ratings WHERE rater = ?", (idx,))}

    def ratings(self) -> list[Rating]:
        with self._read() as con:
            rows = con.execute("SELECT * FROM ratings ORDER BY id").fetchall()
        return [Rating(r["rater"], r["item_id"], json.loads(r["shown"]), json.loads(r["value"]), r["listen_s"],
                       r["client_s"], r["created"]) for r in rows]

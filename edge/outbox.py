"""The store-and-forward outbox: every reading is written here (SQLite, WAL, synchronous=FULL) before anything
tries to send it, and is deleted only when the platform acknowledged its id.

Each reading gets a per-point ``seq`` (persisted, so it keeps increasing across restarts) and a uuid4 ``id``
(the platform's idempotency key). Readings are read back in insertion order, which is seq order per point.
Two lanes: *live* holds the readings written within the last ``live_window`` seconds, *backlog* everything
older; the uplink serves both so a long backlog never delays fresh data. The outbox is capped; the policy
drops either the oldest reading or the new one, and every drop is counted in a persisted counter.
A dropped reading still used its seq, so the platform sees the gap exactly where the data is missing."""
from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .points import Reading

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    n INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order, never reused (so ordering survives deletes)
    id TEXT NOT NULL UNIQUE,
    point TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts TEXT NOT NULL,
    value TEXT NOT NULL,
    quality TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_created ON readings (created);
CREATE TABLE IF NOT EXISTS seqs (point TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Stored:
    """A reading as it sits in the outbox."""

    n: int
    id: str
    point: str
    seq: int
    ts: str
    value: bool | int | float | None
    quality: str

    def message(self, historical: bool) -> dict:
        """The reading as the platform contract spells it."""
        return {"id": self.id, "point": self.point, "seq": self.seq, "ts": self.ts, "value": self.value,
                "quality": self.quality, "historical": historical}


class Outbox:
    """A capped, durable, ordered queue of readings. Not thread-safe: one owner (the daemon's event loop)."""

    def __init__(self, path: str | Path, cap: int = 1_000_000, policy: str = "drop_oldest",
                 live_window: float = 60.0, clock=time.time):
        if policy not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"unknown outbox policy {policy!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.cap, self.policy, self.live_window, self.clock = cap, policy, live_window, clock
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a reading the sensor will never repeat must survive a power cut once add() has returned.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self._seqs = dict(self.db.execute("SELECT point, last FROM seqs"))
        self._count = self.db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
        self._dropped = self._counter("dropped")
        self._live_from = 0  # readings with n >= this are in the live lane; only ever moves up
        self.listeners: list = []  # callables told (without arguments) that readings were added

    def _counter(self, name: str) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def __len__(self) -> int:
        return self._count

    @property
    def dropped(self) -> int:
        """Readings dropped by the cap since the outbox was created (persisted)."""
        return self._dropped

    def last_seq(self, point: str) -> int:
        """The seq given to the point's latest reading (0 before the first)."""
        return self._seqs.get(point, 0)

    def add(self, readings: Iterable[Reading]) -> list[Stored]:
        """Store readings in one durable transaction, giving each its seq and id; returns what was stored."""
        readings = list(readings)
        if not readings:
            return []
        seqs = dict(self._seqs)
        count, dropped = self._count, 0
        now = self.clock()
        stored: list[Stored] = []
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for r in readings:
                seq = seqs.get(r.point, 0) + 1
                seqs[r.point] = seq
                if count >= self.cap and self.policy == "drop_newest":
                    dropped += 1
                    continue
                rid = str(uuid.uuid4())
                cur.execute("INSERT INTO readings (id, point, seq, ts, value, quality, created) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", (rid, r.point, seq, r.ts, json.dumps(r.value),
                                                             r.quality, now))
                stored.append(Stored(cur.lastrowid, rid, r.point, seq, r.ts, r.value, r.quality))
                count += 1
                if count > self.cap:  # drop_oldest
                    cur.execute("DELETE FROM readings WHERE n = (SELECT MIN(n) FROM readings)")
                    count -= 1
                    dropped += 1
            cur.executemany("INSERT INTO seqs (point, last) VALUES (?, ?) "
                            "ON CONFLICT (point) DO UPDATE SET last = excluded.last",
                            [(p, s) for p, s in seqs.items() if self._seqs.get(p) != s])
            if dropped:
                cur.execute("INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", (dropped,))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self._seqs, self._count, self._dropped = seqs, count, self._dropped + dropped
        for listener in self.listeners:
            listener()
        return stored

    def _boundary(self) -> int:
        cutoff = self.clock() - self.live_window
        row = self.db.execute("SELECT MIN(n) FROM readings WHERE created >= ?", (cutoff,)).fetchone()
        if row[0] is None:
            top = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
            candidate = (top[0] if top else 0) + 1
        else:
            candidate = row[0]
        # Monotonic, so a point's readings never move back from the backlog lane to the live lane.
        self._live_from = max(self._live_from, candidate)
        return self._live_from

    def batch(self, historical: bool, limit: int) -> list[Stored]:
        """The next ``limit`` readings of one lane (backlog when ``historical``), oldest first."""
        boundary = self._boundary()
        where = "n < ?" if historical else "n >= ?"
        rows = self.db.execute(f"SELECT n, id, point, seq, ts, value, quality FROM readings WHERE {where} "  # noqa: S608
                               "ORDER BY n LIMIT ?", (boundary, limit))
        return [Stored(n, i, p, s, ts, json.loads(v), q) for n, i, p, s, ts, v, q in rows]

    def ack(self, ids: Sequence[str]) -> int:
        """Delete the acknowledged readings; returns how many were still here."""
        if not ids:
            return 0
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            deleted = 0
            for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
                chunk = list(ids[start:start + 500])
                cur.execute(f"DELETE FROM readings WHERE id IN ({','.join('?' * len(chunk))})", chunk)  # noqa: S608
                deleted += cur.rowcount
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self._count -= deleted
        return deleted

    def oldest(self) -> tuple[str, float] | None:
        """(ts, created) of the oldest stored reading, or None when empty."""
        row = self.db.execute("SELECT ts, created FROM readings ORDER BY n LIMIT 1").fetchone()
        return (row[0], row[1]) if row else None

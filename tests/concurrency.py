"""Helpers for the PostgreSQL concurrency tests: run calls in threads, and see who waits for a lock."""
from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import text

from tests.engine.helpers import poll


def in_threads(*calls: Callable[[], object], together: bool = False, timeout: float = 60.0) -> list[object]:
    """Run the calls in threads (``together``: released at the same moment); each result is the call's value
    or the exception it raised."""
    barrier = threading.Barrier(len(calls)) if together else None
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        if barrier is not None:
            barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    return results


def lock_waiters(db) -> int:
    """Backends of this database waiting for a lock."""
    with db.session() as s:
        return s.scalar(text("SELECT count(*) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND wait_event_type = 'Lock'"))


def release_when_waiting(db, release: threading.Event) -> None:
    """Set ``release`` once a backend of this database waits for a lock (at the latest after 30 s, so a test that
    went wrong still ends)."""
    try:
        poll(lambda: lock_waiters(db) >= 1, timeout=30)
    finally:
        release.set()

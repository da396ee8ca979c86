"""The gateway's own health: link state, backlog size and age, readings per minute, drops and per-device
status, as a dict, as the platform's status block, and as a JSON file written next to the outbox."""
from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .points import utc_now

if TYPE_CHECKING:
    from .collector import Collector
    from .outbox import Outbox


class RateMeter:
    """Counts events over a sliding window (one bucket per second)."""

    def __init__(self, window: float = 60.0, clock=time.monotonic):
        self.window, self.clock = window, clock
        self.buckets: deque[list] = deque()

    def add(self, count: int = 1) -> None:
        """Record ``count`` events now."""
        second = int(self.clock())
        if self.buckets and self.buckets[-1][0] == second:
            self.buckets[-1][1] += count
        else:
            self.buckets.append([second, count])
        self._trim(second)

    def _trim(self, now: float) -> None:
        while self.buckets and self.buckets[0][0] <= now - self.window:
            self.buckets.popleft()

    def per_minute(self) -> float:
        """Events in the last window, scaled to one minute."""
        self._trim(self.clock())
        return round(sum(c for _, c in self.buckets) * 60.0 / self.window, 1)


@dataclass
class Link:
    """The uplink's state as the health report shows it."""

    transport: str
    state: str = "starting"  # starting | up | down | unauthorized
    last_success: str | None = None
    last_error: str | None = None
    failures: int = 0  # consecutive
    sent: int = 0  # readings acknowledged since start


def status_block(outbox: Outbox, collector: Collector) -> dict:
    """The ``status`` object sent to the platform with every batch."""
    oldest = outbox.oldest()
    return {"devices": collector.statuses(), "dropped": outbox.dropped, "backlog": len(outbox),
            "oldest_backlog_ts": oldest[0] if oldest else None,
            "readings_per_minute": collector.rate.per_minute()}


def snapshot(gateway: str, outbox: Outbox, collector: Collector, link: Link) -> dict:
    """Everything the gateway knows about itself, as a JSON-ready dict."""
    status = status_block(outbox, collector)
    oldest = outbox.oldest()
    return {
        "gateway": gateway, "time": utc_now(),
        "link": {"transport": link.transport, "state": link.state, "last_success": link.last_success,
                 "last_error": link.last_error, "consecutive_failures": link.failures, "sent": link.sent},
        "backlog": status["backlog"], "oldest_backlog_ts": status["oldest_backlog_ts"],
        "backlog_age_seconds": round(max(0.0, time.time() - oldest[1]), 1) if oldest else None,
        "readings_per_minute": status["readings_per_minute"], "dropped": status["dropped"],
        "devices": {name: {"status": s.status, "since": s.since, "errors": s.errors, "last_error": s.last_error,
                           "subscription_rebuilds": s.rebuilds}
                    for name, s in collector.devices.items()},
    }


def write(path: Path, health: dict) -> None:
    """Write the health JSON atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(health, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)

"""Between the sources and the outbox: turns samples into readings (report on change beyond the deadband, or
when the heartbeat is due), keeps each device's online/offline state, and counts errors."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from .config import DeviceConfig, PointConfig
from .health import RateMeter
from .outbox import Outbox
from .points import Reading, Reporter, utc_now

log = logging.getLogger(__name__)


@dataclass
class DeviceState:
    """What the gateway knows about one device's connection."""

    status: str = "unknown"  # until the first success or failure
    since: str | None = None
    errors: int = 0
    last_error: str | None = None
    rebuilds: int = 0  # OPC UA subscriptions rebuilt by the watchdog


class Collector:
    """Receives samples from every source and writes the ones worth reporting into the outbox."""

    def __init__(self, outbox: Outbox, clock=time.monotonic):
        self.outbox = outbox
        self.clock = clock
        self.reporters: dict[str, Reporter] = {}
        self.last: dict[str, tuple[object, str]] = {}
        self.devices: dict[str, DeviceState] = {}
        self.rate = RateMeter()

    def _reporter(self, point: PointConfig) -> Reporter:
        reporter = self.reporters.get(point.tag)
        if reporter is None:
            reporter = self.reporters[point.tag] = Reporter(deadband=point.deadband, heartbeat=point.heartbeat)
        return reporter

    def offer(self, samples: Iterable[tuple[PointConfig, object, str, str | None]]) -> int:
        """Offer (point, value, quality, ts or None) samples; returns how many became readings."""
        now = self.clock()
        readings = []
        for point, value, quality, ts in samples:
            self.last[point.tag] = (value, quality)
            if self._reporter(point).should_report(value, quality, now):
                readings.append(Reading(point.tag, ts or utc_now(), value, quality))
        if readings:
            self.outbox.add(readings)
            self.rate.add(len(readings))
        return len(readings)

    def heartbeat(self, points: Iterable[PointConfig]) -> int:
        """Repeat the last value of points whose heartbeat is due (for sources that only report changes)."""
        now = self.clock()
        due = []
        for point in points:
            last = self.last.get(point.tag)
            if last is not None and last[1] != "offline" and self._reporter(point).due(now):
                due.append((point, last[0], last[1], None))
        return self.offer(due)

    def state(self, device: str) -> DeviceState:
        """The device's state (created on first use)."""
        return self.devices.setdefault(device, DeviceState())

    def device_ok(self, device: DeviceConfig) -> None:
        """The device answered."""
        state = self.state(device.name)
        if state.status != "online":
            if state.status == "offline":
                log.warning("device %s is online again", device.name)
            state.status, state.since = "online", utc_now()

    def device_failed(self, device: DeviceConfig, error: BaseException, failures: int) -> None:
        """The device did not answer (``failures`` in a row); offline once ``device.offline_after`` is reached."""
        state = self.state(device.name)
        state.errors += 1
        state.last_error = f"{type(error).__name__}: {error}"
        if failures >= device.offline_after and state.status != "offline":
            log.error("device %s is offline after %d failed attempts: %s", device.name, failures, state.last_error)
            state.status, state.since = "offline", utc_now()
            self.offer((p, None, "offline", None) for p in device.points)

    def statuses(self) -> dict[str, str]:
        """device -> online/offline (unknown counts as offline: nothing has been read from it yet)."""
        return {name: "online" if s.status == "online" else "offline" for name, s in self.devices.items()}

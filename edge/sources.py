"""What every source shares: the back-off between failed attempts, the polling schedule, and the factory
that builds one source per configured device."""
from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Protocol

from .config import Config, PointConfig

if TYPE_CHECKING:
    from .collector import Collector


class Source(Protocol):
    """A device reader: ``run()`` loops until cancelled and never raises anything else."""

    async def run(self) -> None: ...


class Backoff:
    """Exponential back-off with a cap and a little jitter (so many gateways do not retry in lockstep)."""

    def __init__(self, initial: float, maximum: float, jitter: float = 0.1):
        self.initial, self.maximum, self.jitter = initial, maximum, jitter
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next attempt; each call doubles it up to the cap."""
        delay = min(self.maximum, self.initial * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return delay * (1 + random.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        """Start again from the initial delay (after a success)."""
        self.attempt = 0


class Schedule:
    """When each point is next due for polling (monotonic seconds)."""

    def __init__(self, points: tuple[PointConfig, ...], clock=time.monotonic):
        self.clock = clock
        self.points = points
        self.next = {p.tag: 0.0 for p in points}

    def due(self) -> list[PointConfig]:
        """The points due now."""
        now = self.clock()
        return [p for p in self.points if self.next[p.tag] <= now]

    def done(self, points: list[PointConfig]) -> None:
        """Mark points polled; a point that fell behind skips ahead instead of bursting to catch up."""
        now = self.clock()
        for p in points:
            planned = self.next[p.tag] + p.poll_interval
            self.next[p.tag] = planned if planned > now else now + p.poll_interval

    def wait(self) -> float:
        """Seconds until the next point is due."""
        return max(0.0, min(self.next.values()) - self.clock())


def make_sources(config: Config, collector: Collector) -> list[Source]:
    """One source per device; Modbus devices on the same TCP endpoint or serial line share one client."""
    from .modbus import ModbusBus, ModbusSource
    from .opcua import OpcUaSource

    buses: dict[tuple, ModbusBus] = {}
    sources: list[Source] = []
    for device in config.devices:
        if device.protocol == "opcua":
            sources.append(OpcUaSource(device, collector))
            continue
        key = ("tcp", device.host, device.port) if device.protocol == "modbus_tcp" else ("rtu", device.serial_port)
        bus = buses.get(key)
        if bus is None:
            bus = buses[key] = ModbusBus(device)
        sources.append(ModbusSource(device, collector, bus))
    return sources

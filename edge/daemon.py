"""The gateway process: sources feed the collector, the collector fills the outbox, the uplink drains it, and
the health file is rewritten periodically. Stops cleanly on SIGTERM/SIGINT; a SIGKILL loses nothing that
was already in the outbox."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from . import health
from .collector import Collector
from .config import Config
from .outbox import Outbox
from .sources import make_sources
from .uplink import Uplink, make_transport

log = logging.getLogger(__name__)


class Gateway:
    """One running gateway, built from its config."""

    def __init__(self, config: Config, transport_factory=make_transport):
        self.config = config
        self.outbox = Outbox(config.outbox.path, cap=config.outbox.cap, policy=config.outbox.policy,
                             live_window=config.outbox.live_window)
        self.collector = Collector(self.outbox)
        for device in config.devices:
            self.collector.state(device.name)
        self.uplink = Uplink(config, self.outbox, self.collector, transport_factory)
        self.sources = make_sources(config, self.collector)

    def health(self) -> dict:
        """The current health snapshot."""
        return health.snapshot(self.config.gateway, self.outbox, self.collector, self.uplink.link)

    def write_health(self) -> None:
        """Write the health file next to the outbox."""
        try:
            health.write(self.config.health_path, self.health())
        except OSError:
            log.exception("cannot write %s", self.config.health_path)

    async def _health_loop(self) -> None:
        while True:
            self.write_health()
            await asyncio.sleep(self.config.health_interval)

    async def _supervise(self, name: str, factory) -> None:
        # Sources and the uplink never return; should one fail anyway, it is logged and started again.
        while True:
            try:
                await factory()
                log.error("%s ended unexpectedly; restarting it", name)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("%s failed; restarting it", name)
            await asyncio.sleep(1.0)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or forever)."""
        log.info("gateway %s: %d devices, %d points, %d readings waiting in %s", self.config.gateway,
                 len(self.config.devices), len(self.config.points()), len(self.outbox), self.config.outbox.path)
        jobs = [(f"device {s.device.name}", s.run) for s in self.sources]
        jobs += [("uplink", self.uplink.run), ("health", self._health_loop)]
        tasks = [asyncio.create_task(self._supervise(name, job), name=name) for name, job in jobs]
        try:
            await (stop or asyncio.Event()).wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.write_health()
            self.outbox.close()
            log.info("gateway %s stopped", self.config.gateway)


async def run_async(config: Config) -> None:
    """Run the gateway until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # event loops without signal support (Windows)
            loop.add_signal_handler(sig, stop.set)
    await Gateway(config).run(stop)


def run(config: Config) -> None:
    """Run the gateway in the foreground."""
    asyncio.run(run_async(config))

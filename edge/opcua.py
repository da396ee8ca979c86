"""OPC UA with asyncua: polling, or subscriptions that are re-created after every reconnect.

A watchdog rebuilds a subscription that has been silent (no data change and no keep-alive) for longer than
``watchdog_factor`` publishing intervals, or that the server reported in a bad state (TB-GW #2093, #2028).
A lost connection (seen by asyncua's own server-state watchdog) ends the session; the loop then reconnects
with back-off and subscribes afresh (TB-GW #1641, #1264)."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from asyncua import Client, ua
from asyncua.common.subscription import Subscription

from .config import DeviceConfig, PointConfig
from .points import coerce, scaled
from .sources import Backoff, Schedule

if TYPE_CHECKING:
    from .collector import Collector

log = logging.getLogger(__name__)

#: Keep-alive every this many publishing intervals when nothing changes; the watchdog allows more than that.
KEEPALIVE_COUNT = 3


def sample(point: PointConfig, dv: ua.DataValue | None) -> tuple[object, str]:
    """(engineering value, quality) of a DataValue: bad when the status is not good or the value is unusable."""
    if dv is None:
        return None, "bad"
    good = dv.StatusCode is None or dv.StatusCode.is_good()
    raw = coerce(dv.Value.Value if dv.Value is not None else None, point.data_type)
    value = scaled(raw, point.scale, point.offset) if raw is not None else None
    return value, "good" if good and value is not None else "bad"


class _WatchedSubscription(Subscription):
    """A subscription that notes when the server last published to it (data or keep-alive)."""

    last_publish = 0.0

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish = time.monotonic()
        await super().publish_callback(publish_result)


class _Handler:
    """asyncua's callback target: data changes go to the collector."""

    def __init__(self, source: OpcUaSource, points: dict[str, PointConfig]):
        self.source, self.points = source, points
        self.bad_status: ua.StatusCode | None = None

    def datachange_notification(self, node, val, data) -> None:
        point = self.points.get(node.nodeid.to_string())
        if point is None:
            return
        value, quality = sample(point, data.monitored_item.Value)
        self.source.collector.offer([(point, value, quality, None)])

    def status_change_notification(self, status) -> None:
        code = getattr(status, "Status", status)
        if isinstance(code, ua.StatusCode) and not code.is_good():
            self.bad_status = code


class OpcUaSource:
    """Reads one OPC UA server's points by polling or by subscription."""

    def __init__(self, device: DeviceConfig, collector: Collector):
        self.device, self.collector = device, collector
        self.backoff = Backoff(device.retry_initial, device.retry_max)
        self.failures = 0
        self.subscription: _WatchedSubscription | None = None
        self.handler: _Handler | None = None

    def _ok(self) -> None:
        self.collector.device_ok(self.device)
        self.failures = 0
        self.backoff.reset()

    async def run(self) -> None:
        """Connect, read or subscribe, and on any failure reconnect with back-off; only cancellation ends it."""
        while True:
            client = Client(self.device.endpoint, timeout=self.device.timeout,
                            watchdog_intervall=min(1.0, self.device.timeout))
            try:
                await asyncio.wait_for(client.connect(), self.device.timeout * 2)
                nodes = {p.tag: client.get_node(p.node) for p in self.device.points}
                if self.device.mode == "subscribe":
                    await self._subscribed(client, nodes)
                else:
                    await self._polled(client, nodes)
            except asyncio.CancelledError:
                await self._close(client)
                raise
            except Exception as exc:  # noqa: BLE001 - the loop never dies
                self.failures += 1
                delay = self.backoff.next()
                log.warning("device %s (%s): %s: %s; reconnect in %.1fs", self.device.name, self.device.endpoint,
                            type(exc).__name__, exc, delay)
                self.collector.device_failed(self.device, exc, self.failures)
                await self._close(client)
                await asyncio.sleep(delay)

    async def _close(self, client: Client) -> None:
        self.subscription = None
        try:
            await asyncio.wait_for(client.disconnect(), 2)
        except Exception:  # noqa: BLE001 - a dead server cannot close a session; just drop the socket
            try:
                client.disconnect_socket()
            except Exception:  # noqa: BLE001
                log.debug("dropping the OPC UA socket failed", exc_info=True)

    async def _polled(self, client: Client, nodes: dict[str, object]) -> None:
        schedule = Schedule(self.device.points)
        while True:
            due = schedule.due()
            if due:
                values = await client.read_attributes([nodes[p.tag] for p in due])
                schedule.done(due)
                self._ok()
                self.collector.offer([(p, *sample(p, dv), None) for p, dv in zip(due, values, strict=True)])
            await client.check_connection()
            await asyncio.sleep(min(schedule.wait(), 1.0))

    async def _subscribe(self, client: Client, nodes: dict[str, object]) -> _WatchedSubscription:
        interval_ms = self.device.publishing_interval * 1000
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval_ms, RequestedLifetimeCount=KEEPALIVE_COUNT * 10,
            RequestedMaxKeepAliveCount=KEEPALIVE_COUNT, MaxNotificationsPerPublish=10000, PublishingEnabled=True,
            Priority=0)
        by_node = {nodes[p.tag].nodeid.to_string(): p for p in self.device.points}
        self.handler = _Handler(self, by_node)
        subscription = _WatchedSubscription(client.uaclient, params, self.handler)
        results = await subscription.init()
        revised = client.get_subscription_revised_params(params, results)
        if revised:
            await subscription.update(revised)
        subscription.last_publish = time.monotonic()
        handles = await subscription.subscribe_data_change(list(nodes.values()))
        for point, handle in zip(self.device.points, handles, strict=True):
            if isinstance(handle, ua.StatusCode):  # this node cannot be monitored (unknown id, no access)
                log.warning("point %s: cannot subscribe to %s: %s", point.tag, point.node, handle)
                self.collector.offer([(point, None, "bad", None)])
        self.subscription = subscription
        return subscription

    def silent(self, subscription: _WatchedSubscription) -> bool:
        """True when the subscription has not been published to for ``watchdog_factor`` publishing intervals."""
        limit = self.device.publishing_interval * self.device.watchdog_factor
        return time.monotonic() - subscription.last_publish > limit

    async def _subscribed(self, client: Client, nodes: dict[str, object]) -> None:
        subscription = await self._subscribe(client, nodes)
        self._ok()
        tick = min(self.device.publishing_interval, 1.0)
        while True:
            await asyncio.sleep(tick)
            await client.check_connection()
            self.collector.heartbeat(self.device.points)
            bad = self.handler.bad_status if self.handler else None
            if bad is not None or self.silent(subscription):
                reason = f"status {bad}" if bad is not None else "silent"
                state = self.collector.state(self.device.name)
                state.rebuilds += 1
                log.warning("device %s: subscription %s (%s); rebuilding it", self.device.name,
                            subscription.subscription_id, reason)
                try:
                    await asyncio.wait_for(subscription.delete(), self.device.timeout)
                except Exception:  # noqa: BLE001 - the old one may already be gone on the server
                    log.debug("deleting subscription failed", exc_info=True)
                subscription = await self._subscribe(client, nodes)

"""OPC UA against the in-process asyncua simulator: polling, subscriptions, the watchdog rebuilding a silent
subscription, and a server restart on the same port after which the subscription is re-created and new
values arrive. One test, because starting an asyncua server costs seconds (its standard address space)."""
import asyncio

import pytest

from edge.daemon import Gateway
from edge.simulator import Simulator

from .conftest import free_port, header, until, write_config


def devices(port: int) -> str:
    common = f"""
endpoint = "opc.tcp://127.0.0.1:{port}/sim/"
publishing_interval = 0.1
watchdog_factor = 5
timeout = 2
poll_interval = 0.1
retry_initial = 0.1
retry_max = 0.5
offline_after = 1
"""
    return f"""
[devices.dam]
protocol = "opcua"
mode = "subscribe"
{common}
[devices.dam.points.level]
node = "ns=2;s=Dam.Level"
data_type = "float64"

[devices.dam.points.gate]
node = "ns=3;s=Gate.Open"
data_type = "bool"

[devices.weather]
protocol = "opcua"
mode = "poll"
{common}
[devices.weather.points.rain]
node = "ns=2;i=1001"
data_type = "uint16"
scale = 0.1

[devices.weather.points.temperature]
node = "ns=2;s=Weather.Temperature"
data_type = "float32"
"""


def has(platform, point, value, quality="good"):
    return any(r["value"] == value and r["quality"] == quality for r in platform.readings(point))


@pytest.mark.slow
def test_opcua_poll_subscribe_watchdog_and_server_restart(tmp_path, platform):
    config = write_config(tmp_path, header(platform.url) + devices(free_port()))

    async def scenario(sim, gateway):
        # polling: types and scale
        await sim.set("weather.rain", 45.6)
        await sim.set("weather.temperature", -3.5)
        await until(lambda: has(platform, "weather.rain", 45.6) and has(platform, "weather.temperature", -3.5),
                    what="polled values")
        # subscription: the current value, then a change
        await sim.set("dam.level", 1.5)
        await until(lambda: has(platform, "dam.level", 1.5), what="the first value by subscription")
        await sim.set("dam.level", 2.5)
        await until(lambda: has(platform, "dam.level", 2.5), what="a change by subscription")
        # watchdog: the server forgets the subscription while the connection stays up, so nothing is published
        service = sim.group_of("dam").server.iserver.subscription_service
        await service.delete_subscriptions(list(service.subscriptions))
        await until(lambda: gateway.collector.state("dam").rebuilds >= 1, what="the watchdog to rebuild")
        await sim.set("dam.level", 3.5)
        await until(lambda: has(platform, "dam.level", 3.5), what="a value on the rebuilt subscription")
        # restart: a brand-new server process on the same port knows no sessions or subscriptions
        await sim.stop_device("dam")
        await until(lambda: has(platform, "dam.level", None, "offline") and has(platform, "weather.rain", None,
                                                                               "offline"), what="offline readings")
        await sim.start_device("dam")
        await until(lambda: gateway.collector.statuses() == {"dam": "online", "weather": "online"},
                    what="both devices reconnected")
        await sim.set("dam.level", 4.5)
        await sim.set("dam.gate", True)
        await sim.set("weather.rain", 12.3)
        await until(lambda: has(platform, "dam.level", 4.5) and has(platform, "dam.gate", True)
                    and has(platform, "weather.rain", 12.3), what="new values after the restart")
        return gateway.health()

    async def main():
        sim = Simulator(config, animate=False)
        await sim.start()
        gateway = Gateway(config)
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            return await scenario(sim, gateway)
        finally:
            stop.set()
            await task
            await sim.stop()

    health = asyncio.run(main())
    assert health["devices"]["dam"]["subscription_rebuilds"] >= 1
    assert health["devices"]["dam"]["errors"] >= 1
    assert health["link"]["state"] == "up"

"""Modbus TCP (and RTU framing over a socket) against the in-process pymodbus simulator, with the gateway
sending to the real HTTP test platform: decoding on the wire, device offline/online, and the platform outage."""
import asyncio
from collections import defaultdict

import pytest

from edge.daemon import Gateway
from edge.simulator import Simulator

from .conftest import free_port, header, until, write_config

TYPES = """
[devices.plc.points.i16]
address = 0
data_type = "int16"
scale = 0.1
[devices.plc.points.u16]
address = 1
data_type = "uint16"
byte_order = "little"
[devices.plc.points.i32]
address = 2
data_type = "int32"
word_order = "little"
[devices.plc.points.u32]
address = 4
register = "input"
data_type = "uint32"
byte_order = "little"
word_order = "little"
[devices.plc.points.f32]
address = 6
data_type = "float32"
word_order = "little"
offset = -10
[devices.plc.points.f64]
address = 8
register = "input"
data_type = "float64"
byte_order = "little"
[devices.plc.points.flag]
address = 12
data_type = "bool"
bit = 3
[devices.plc.points.pump]
address = 5
register = "coil"
[devices.plc.points.valve]
address = 2
register = "discrete"
"""
VALUES = {"i16": -12.3, "u16": 65000, "i32": -123456, "u32": 4000000000, "f32": 13.5, "f64": 1234.5678901,
          "flag": True, "pump": True, "valve": True}


def device(port: int, extra: str = "", *, poll: float = 0.05, offline_after: int = 1) -> str:
    return f"""
[devices.plc]
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {port}
device_id = 7
timeout = 0.5
poll_interval = {poll}
retry_initial = 0.05
retry_max = 0.2
offline_after = {offline_after}
{extra}"""


async def run_gateway(config, scenario, *, animate=False, period=0.5):
    """Start the simulator and the gateway, run ``scenario(sim, gateway)``, stop both."""
    sim = Simulator(config, period=period, animate=animate)
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


def latest(platform, point):
    found = platform.readings(point)
    return found[-1] if found else None


def test_every_data_type_and_order_over_the_wire(tmp_path, platform):
    config = write_config(tmp_path, header(platform.url) + device(free_port(), TYPES))

    async def scenario(sim, gateway):
        for name, value in VALUES.items():
            await sim.set(f"plc.{name}", value)
        await until(lambda: all((r := latest(platform, f"plc.{n}")) and r["value"] == pytest.approx(v)
                                for n, v in VALUES.items()), what="every value at the platform")
        return gateway.health()

    health = asyncio.run(run_gateway(config, scenario))
    assert health["devices"]["plc"]["status"] == "online"
    assert all(r["quality"] == "good" and r["ts"].endswith("Z") for r in platform.readings())
    assert platform.statuses[-1]["devices"] == {"plc": "online"}


def test_rtu_framing_over_a_socket_serial_port(tmp_path, platform):
    port = free_port()
    text = header(platform.url) + f"""
[devices.meter]
protocol = "modbus_rtu"
serial_port = "socket://127.0.0.1:{port}"
device_id = 3
timeout = 0.5
poll_interval = 0.05
[devices.meter.points.h2s]
address = 4
register = "input"
data_type = "uint16"
"""
    config = write_config(tmp_path, text)

    async def scenario(sim, gateway):
        await sim.set("meter.h2s", 17)
        await until(lambda: (r := latest(platform, "meter.h2s")) and r["value"] == 17, what="the RTU value")

    asyncio.run(run_gateway(config, scenario))


def test_device_goes_offline_and_comes_back(tmp_path, platform):
    config = write_config(tmp_path, header(platform.url) + device(free_port(), """
[devices.plc.points.level]
address = 0
data_type = "float32"
[devices.plc.points.run]
address = 0
register = "coil"
"""))

    async def scenario(sim, gateway):
        await sim.set("plc.level", 2.5)
        await sim.set("plc.run", True)
        await until(lambda: latest(platform, "plc.level") and latest(platform, "plc.run"), what="first values")
        await sim.stop_device("plc")
        await until(lambda: all((r := latest(platform, f"plc.{n}")) and r["quality"] == "offline"
                                for n in ("level", "run")), what="offline readings")
        assert gateway.health()["devices"]["plc"]["status"] == "offline"
        assert platform.statuses[-1]["devices"] == {"plc": "offline"}
        await sim.start_device("plc")
        await until(lambda: (r := latest(platform, "plc.level")) and r["quality"] == "good", what="back online")
        await until(lambda: platform.statuses[-1]["devices"] == {"plc": "online"}, what="online status")
        return gateway.health()

    health = asyncio.run(run_gateway(config, scenario))
    assert health["devices"]["plc"]["errors"] >= 1
    offline = [r for r in platform.readings() if r["quality"] == "offline"]
    assert sorted(r["point"] for r in offline) == ["plc.level", "plc.run"]  # one per point, not one per retry
    assert all(r["value"] is None for r in offline)


def test_platform_outage_every_reading_arrives_exactly_once_in_order(tmp_path, platform):
    """The platform answers 503, then refuses connections, then returns; readings keep coming meanwhile."""
    config = write_config(tmp_path, header(platform.url, batch_size=10, live_window=0.3) + device(free_port(), """
[devices.plc.points.a]
address = 0
data_type = "float32"
[devices.plc.points.b]
address = 2
data_type = "int16"
scale = 0.01
"""))

    async def scenario(sim, gateway):
        box = gateway.outbox
        await until(lambda: len(platform.seqs("plc.a")) >= 5, what="readings before the outage")
        platform.mode = "503"
        await until(lambda: len(box) >= 40, what="a backlog while the platform answers 503")
        platform.stop()
        await until(lambda: len(box) >= 80, what="a backlog while the platform is down")
        assert gateway.uplink.link.state == "down"
        platform.mode = "up"
        platform.start()
        await until(lambda: any(r["historical"] for r in platform.readings()), what="historical readings")
        await until(lambda: len(platform.readings()) >= 100, what="more readings after the return")
        sim.animate = False
        await sim.stop()  # freeze: the device goes offline, one last reading per point, then nothing new
        await until(lambda: len(box) == 0 and gateway.collector.statuses()["plc"] == "offline",
                    what="the outbox to drain")
        await until(lambda: len(box) == 0 and not box.batch(False, 1), what="nothing left")
        return {p: box.last_seq(p) for p in ("plc.a", "plc.b")}

    last = asyncio.run(run_gateway(config, scenario, animate=True, period=0.02))
    assert platform.duplicates == 0  # nothing was ambiguous: 503 and refused connections accept nothing
    assert platform.refused >= 1
    for point, top in last.items():
        seqs = platform.seqs(point)
        assert sorted(seqs) == list(range(1, top + 1)), f"{point}: missing or extra seqs"
        for historical in (False, True):  # within each lane, strictly in seq order
            lane = platform.seqs(point, historical)
            assert lane == sorted(lane)
    lanes = defaultdict(int)
    for r in platform.readings():
        lanes[r["historical"]] += 1
    assert lanes[True] > 0 and lanes[False] > 0

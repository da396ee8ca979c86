"""Serves a config's points from in-process simulators on 127.0.0.1, for demos, site acceptance and tests:
a pymodbus server per Modbus TCP port (RTU devices too when their serial port is ``socket://host:port``) and
an asyncua server per OPC UA endpoint, with values that change (sine plus noise, within each data type)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from asyncua import Server, ua
from pymodbus import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator.simdata import DataType, SimData
from pymodbus.simulator.simdevice import SimDevice

from .config import Config, DeviceConfig, PointConfig
from .points import encode_registers, register_count, unscaled

log = logging.getLogger(__name__)
HOST = "127.0.0.1"
FUNCTION_CODES = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
VARIANTS = {"int16": ua.VariantType.Int16, "uint16": ua.VariantType.UInt16, "int32": ua.VariantType.Int32,
            "uint32": ua.VariantType.UInt32, "float32": ua.VariantType.Float, "float64": ua.VariantType.Double,
            "bool": ua.VariantType.Boolean}


def wave(point: PointConfig, t: float, noise: float = 0.02) -> float | bool:
    """A plausible changing engineering value: 50 +- 10 with a per-point phase and period, plus noise."""
    seed = zlib.crc32(point.tag.encode())
    phase, period = (seed % 628) / 100.0, 20.0 + seed % 40
    s = math.sin(2 * math.pi * t / period + phase)
    if point.data_type == "bool":
        return s > 0
    return 50.0 + 10.0 * s + random.gauss(0.0, 10.0 * noise)


@dataclass
class _Group:
    """One simulated server and the devices it serves."""

    key: str
    kind: str  # modbus | opcua
    port: int
    devices: list[DeviceConfig]
    path: str = "/"
    framer: FramerType = FramerType.SOCKET
    server: object = None
    task: asyncio.Task | None = None
    nodes: dict[str, object] = field(default_factory=dict)


class Simulator:
    """In-process servers for every device of a config; start(), stop(), and per-device restarts for tests."""

    def __init__(self, config: Config, period: float = 0.5, animate: bool = True):
        self.config, self.period, self.animate = config, period, animate
        self.pinned: dict[str, float | bool] = {}
        self.points = {p.tag: p for p in config.points()}
        self.groups: dict[str, _Group] = {}
        self._animator: asyncio.Task | None = None
        for device in config.devices:
            group = self._group_for(device)
            if group is not None:
                self.groups.setdefault(group.key, group).devices.append(device)
        self._t0 = time.monotonic()

    def _group_for(self, device: DeviceConfig) -> _Group | None:
        if device.protocol == "modbus_tcp":
            return _Group(f"modbus:{device.port}", "modbus", device.port, [])
        if device.protocol == "modbus_rtu":
            url = urlsplit(device.serial_port)
            if url.scheme != "socket" or not url.port:
                log.warning("device %s: cannot simulate serial port %s (use socket://127.0.0.1:PORT)", device.name,
                            device.serial_port)
                return None
            return _Group(f"rtu:{url.port}", "modbus", url.port, [], framer=FramerType.RTU)
        url = urlsplit(device.endpoint)
        return _Group(f"opcua:{url.port}{url.path}", "opcua", url.port or 4840, [], path=url.path or "/")

    def group_of(self, device: str) -> _Group:
        """The server group serving ``device``."""
        return next(g for g in self.groups.values() if any(d.name == device for d in g.devices))

    async def start(self) -> None:
        """Start every server and the value animation."""
        for group in self.groups.values():
            await self._start_group(group)
        await self.update()
        if self.animate and self._animator is None:
            self._animator = asyncio.create_task(self._animate())

    async def stop(self) -> None:
        """Stop the animation and every server."""
        if self._animator is not None:
            self._animator.cancel()
            await asyncio.gather(self._animator, return_exceptions=True)
            self._animator = None
        for group in self.groups.values():
            await self._stop_group(group)

    async def stop_device(self, device: str) -> None:
        """Stop the server that serves ``device`` (and the other devices on it)."""
        await self._stop_group(self.group_of(device))

    async def start_device(self, device: str) -> None:
        """Start the server that serves ``device`` again, on the same port."""
        group = self.group_of(device)
        await self._start_group(group)
        await self._write_group(group, time.monotonic() - self._t0)

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _start_group(self, group: _Group) -> None:
        if group.server is not None:
            return
        if group.kind == "modbus":
            group.server = ModbusTcpServer([self._sim_device(d) for d in group.devices], address=(HOST, group.port),
                                           framer=group.framer)
            await group.server.serve_forever(background=True)
        else:
            await self._start_opcua(group)
        log.info("simulator: %s serving %s on %s:%s", group.kind, ", ".join(d.name for d in group.devices), HOST,
                 group.port)

    async def _stop_group(self, group: _Group) -> None:
        server, group.server = group.server, None
        if server is None:
            return
        if group.kind == "modbus":
            await server.shutdown()
        else:
            await server.stop()
        group.nodes = {}

    @staticmethod
    def _sim_device(device: DeviceConfig) -> SimDevice:
        size = {kind: 1 for kind in FUNCTION_CODES}
        for p in device.points:
            size[p.register] = max(size[p.register], (p.address or 0) + register_count(p.data_type))

        def bits(n):
            return [SimData(0, count=n, values=False, datatype=DataType.BITS)]

        def regs(n):
            return [SimData(0, count=n, values=0, datatype=DataType.REGISTERS)]

        return SimDevice(id=device.device_id, simdata=(bits(size["coil"]), bits(size["discrete"]),
                                                       regs(size["holding"]), regs(size["input"])))

    async def _start_opcua(self, group: _Group) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://{HOST}:{group.port}{group.path}")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_server_name("emflow edge simulator")
        folder = server.nodes.objects
        for device in group.devices:
            for p in device.points:
                nodeid = ua.NodeId.from_string(p.node)
                while len(await server.get_namespace_array()) <= nodeid.NamespaceIndex:
                    await server.register_namespace(f"urn:emflow:simulator:{len(await server.get_namespace_array())}")
                initial = ua.Variant(self._opcua_value(p, 0.0), VARIANTS[p.data_type])
                group.nodes[p.tag] = await folder.add_variable(nodeid, f"{nodeid.NamespaceIndex}:{p.tag}", initial)
        await server.start()
        group.server = server

    def value(self, point: PointConfig, t: float) -> float | bool:
        """The point's engineering value at time ``t`` (a pinned value wins)."""
        return self.pinned[point.tag] if point.tag in self.pinned else wave(point, t)

    def _opcua_value(self, point: PointConfig, t: float):
        return unscaled(self.value(point, t), point.data_type, point.scale, point.offset)

    async def set(self, tag: str, value: float | bool) -> None:
        """Pin a point to an engineering value (it stops changing) and write it now."""
        self.pinned[tag] = value
        point = self.points[tag]
        group = self.group_of(point.device)
        await self._write_point(group, point, time.monotonic() - self._t0)

    async def _write_point(self, group: _Group, point: PointConfig, t: float) -> None:
        if group.server is None:
            return
        raw = unscaled(self.value(point, t), point.data_type, point.scale, point.offset)
        if group.kind == "opcua":
            node = group.nodes.get(point.tag)
            if node is not None:
                await node.write_value(ua.DataValue(ua.Variant(raw, VARIANTS[point.data_type])))
            return
        device = next(d for d in group.devices if d.name == point.device)
        if point.register in ("coil", "discrete"):
            values = [bool(raw)]
        else:
            values = encode_registers(raw, point.data_type, point.byte_order, point.word_order, point.bit)
        await group.server.async_setValues(device.device_id, FUNCTION_CODES[point.register], point.address or 0,
                                           values)

    async def _write_group(self, group: _Group, t: float) -> None:
        for device in group.devices:
            for point in device.points:
                await self._write_point(group, point, t)

    async def update(self) -> None:
        """Write the current value of every point."""
        t = time.monotonic() - self._t0
        for group in self.groups.values():
            await self._write_group(group, t)

    async def _animate(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.update()
            except Exception:  # noqa: BLE001 - a demo simulator keeps going (e.g. while a server restarts)
                log.exception("simulator update failed")


async def serve(config: Config, stop: asyncio.Event | None = None) -> None:
    """Run the simulator until ``stop`` is set (or forever)."""
    async with Simulator(config):
        await (stop or asyncio.Event()).wait()


def simulate(config: Config) -> None:
    """Serve the configured points until interrupted (Ctrl-C)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config))

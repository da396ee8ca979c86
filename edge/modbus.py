"""Modbus TCP and RTU polling with the pymodbus 3.16 async clients (``device_id=``, ``convert_from_registers``).

The loop never dies: any exception is caught, counted and logged, the client is closed, and the next attempt
waits with exponential back-off. Reconnecting is ours, not pymodbus's (``reconnect_delay=0``), so a PLC
power cycle and a dead serial adapter are handled the same way."""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from .config import DeviceConfig, PointConfig
from .points import decode_registers, register_count, scaled
from .sources import Backoff, Schedule

if TYPE_CHECKING:
    from .collector import Collector

log = logging.getLogger(__name__)

#: Exception codes a Modbus gateway answers with when the device behind it is silent: the device is offline.
GATEWAY_SILENT = {0x0A, 0x0B}


class DeviceSilent(ConnectionError):
    """A Modbus gateway answered for a device that did not."""


class ModbusBus:
    """One client (a TCP connection or a serial line) shared by the devices on it, one request at a time."""

    def __init__(self, device: DeviceConfig):
        common = {"timeout": device.timeout, "retries": 0, "reconnect_delay": 0}
        if device.protocol == "modbus_tcp":
            self.target = f"{device.host}:{device.port}"
            self.client = AsyncModbusTcpClient(device.host, port=device.port, **common)
        else:
            self.target = device.serial_port
            self.client = AsyncModbusSerialClient(device.serial_port, baudrate=device.baudrate, parity=device.parity,
                                                  stopbits=device.stopbits, bytesize=device.bytesize, **common)
        self.lock = asyncio.Lock()

    async def connect(self) -> None:
        """Connect unless connected; raises ConnectionError when the endpoint does not answer."""
        if not self.client.connected and not await self.client.connect():
            raise ConnectionError(f"cannot connect to {self.target}")

    def reset(self) -> None:
        """Drop the connection so the next attempt starts clean."""
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a broken client must not stop the loop
            log.debug("closing the Modbus client for %s failed", self.target, exc_info=True)


async def read_point(client, point: PointConfig, device_id: int) -> tuple[object, str]:
    """Read one point: (engineering value, quality). A Modbus exception answer is a bad point, not a dead device."""
    address = point.address or 0
    if point.register in ("coil", "discrete"):
        read = client.read_coils if point.register == "coil" else client.read_discrete_inputs
        rr = await read(address, count=1, device_id=device_id)
    else:
        read = client.read_holding_registers if point.register == "holding" else client.read_input_registers
        rr = await read(address, count=register_count(point.data_type), device_id=device_id)
    if rr.isError():
        code = getattr(rr, "exception_code", None)
        if code in GATEWAY_SILENT:
            raise DeviceSilent(f"gateway reports device {device_id} silent (exception code {code})")
        log.warning("point %s: Modbus exception answer %s", point.tag, rr)
        return None, "bad"
    if point.register in ("coil", "discrete"):
        return bool(rr.bits[0]), "good"
    try:
        raw = decode_registers(list(rr.registers), point.data_type, point.byte_order, point.word_order, point.bit)
    except (ValueError, TypeError) as exc:  # e.g. a short answer
        log.warning("point %s: cannot decode %s: %s", point.tag, rr.registers, exc)
        return None, "bad"
    value = scaled(raw, point.scale, point.offset)
    return value, "good" if value is not None else "bad"


class ModbusSource:
    """Polls one Modbus device's points, each at its own interval."""

    def __init__(self, device: DeviceConfig, collector: Collector, bus: ModbusBus):
        self.device, self.collector, self.bus = device, collector, bus
        self.backoff = Backoff(device.retry_initial, device.retry_max)
        self.schedule = Schedule(device.points)
        self.failures = 0

    async def poll(self) -> int:
        """Read the due points once; returns how many were read. Raises when the device does not answer."""
        due = self.schedule.due()
        if not due:
            return 0
        samples = []
        async with self.bus.lock:
            await self.bus.connect()
            for point in due:
                value, quality = await read_point(self.bus.client, point, self.device.device_id)
                samples.append((point, value, quality, None))
        self.schedule.done(due)
        self.collector.device_ok(self.device)
        self.collector.offer(samples)
        return len(samples)

    async def run(self) -> None:
        """Poll forever; only cancellation ends it."""
        while True:
            try:
                await self.poll()
                self.failures = 0
                self.backoff.reset()
                await asyncio.sleep(self.schedule.wait())
            except asyncio.CancelledError:
                self.bus.reset()
                raise
            except Exception as exc:  # noqa: BLE001 - a polling loop never dies (TB-GW #2132)
                self.failures += 1
                delay = self.backoff.next()
                log.warning("device %s (%s): %s: %s; retry in %.1fs", self.device.name, self.bus.target,
                            type(exc).__name__, exc, delay)
                self.collector.device_failed(self.device, exc, self.failures)
                self.bus.reset()
                await asyncio.sleep(delay)

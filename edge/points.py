"""What one point's value is and when it is worth sending: data types, byte and word order (decoded with
pymodbus's ``convert_from_registers``), scale and offset, and the report-on-change-or-heartbeat decision."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pymodbus.client.mixin import ModbusClientMixin

DATATYPE = ModbusClientMixin.DATATYPE

#: data type -> (pymodbus DATATYPE or None for bool, registers it spans)
DATA_TYPES: dict[str, tuple[Any, int]] = {
    "int16": (DATATYPE.INT16, 1),
    "uint16": (DATATYPE.UINT16, 1),
    "int32": (DATATYPE.INT32, 2),
    "uint32": (DATATYPE.UINT32, 2),
    "float32": (DATATYPE.FLOAT32, 2),
    "float64": (DATATYPE.FLOAT64, 4),
    "bool": (None, 1),
}
ORDERS = ("big", "little")
QUALITIES = ("good", "bad", "offline")
INT_RANGES = {"int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1),
              "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1)}


class Reading(NamedTuple):
    """One value of one point, as it goes into the outbox and up to the platform."""

    point: str
    ts: str
    value: bool | int | float | None
    quality: str = "good"


def utc_now() -> str:
    """The current time as ISO 8601 UTC with milliseconds, e.g. ``2026-11-29T08:15:02.123Z``."""
    return iso(datetime.now(UTC))


def iso(moment: datetime) -> str:
    """``moment`` as ISO 8601 UTC with milliseconds and a ``Z``; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def register_count(data_type: str) -> int:
    """How many 16-bit registers a value of ``data_type`` spans."""
    return DATA_TYPES[data_type][1]


def _swap_bytes(registers: list[int]) -> list[int]:
    return [((r & 0xFF) << 8) | ((r >> 8) & 0xFF) for r in registers]


def decode_registers(registers: list[int], data_type: str, byte_order: str = "big", word_order: str = "big",
                     bit: int | None = None) -> bool | int | float:
    """Decode raw registers. ``byte_order`` is the order of the two bytes inside each register, ``word_order``
    the order of the registers (big = most significant first): big/big is ABCD, little/big BADC, big/little
    CDAB, little/little DCBA. A bool is bit ``bit`` (default 0) of the first register."""
    kind, count = DATA_TYPES[data_type]
    if len(registers) != count:
        raise ValueError(f"{data_type} needs {count} register(s), got {len(registers)}")
    if kind is None:
        return bool((registers[0] >> (bit or 0)) & 1)
    regs = _swap_bytes(list(registers)) if byte_order == "little" else list(registers)
    return ModbusClientMixin.convert_from_registers(regs, kind, word_order=word_order)


def encode_registers(value: bool | int | float, data_type: str, byte_order: str = "big", word_order: str = "big",
                     bit: int | None = None) -> list[int]:
    """The inverse of :func:`decode_registers` (the simulator and the tests write registers with it)."""
    kind, _ = DATA_TYPES[data_type]
    if kind is None:
        return [(1 << (bit or 0)) if value else 0]
    if data_type in INT_RANGES:
        value = int(value)
    regs = ModbusClientMixin.convert_to_registers(value, kind, word_order=word_order)
    return _swap_bytes(regs) if byte_order == "little" else regs


def scaled(raw: bool | int | float, scale: float = 1.0, offset: float = 0.0) -> bool | int | float | None:
    """Engineering value = raw * scale + offset. Bools pass through; an int stays an int when scale and
    offset are integral; NaN and infinity become None (JSON has no such numbers: the caller marks them bad)."""
    if isinstance(raw, bool):
        return raw
    value = raw * scale + offset
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if isinstance(raw, int) and float(scale).is_integer() and float(offset).is_integer():
            return int(value)
    return value


def unscaled(value: float | bool, data_type: str, scale: float = 1.0, offset: float = 0.0) -> float | int | bool:
    """The raw value that :func:`scaled` turns into ``value`` (clamped to the type's range): the simulator's side."""
    if data_type == "bool":
        return bool(value)
    raw = (value - offset) / (scale or 1.0)
    if data_type in INT_RANGES:
        low, high = INT_RANGES[data_type]
        return max(low, min(high, round(raw)))
    return raw


def coerce(value: Any, data_type: str) -> bool | int | float | None:
    """A value read from OPC UA, coerced to the point's declared type; None when it cannot be."""
    try:
        if value is None:
            return None
        if data_type == "bool":
            return bool(value)
        if data_type in INT_RANGES:
            return int(value)
        result = float(value)
        return result if math.isfinite(result) else None
    except (TypeError, ValueError, OverflowError):
        return None


_UNSET = object()


@dataclass
class Reporter:
    """Decides whether a sample is reported: the first one, a quality change, a value change beyond the
    deadband (against the last *reported* value, so a slow drift is reported once it adds up), or the
    heartbeat period elapsed since the last report (0 = no heartbeat). Times are monotonic seconds."""

    deadband: float = 0.0
    heartbeat: float = 60.0

    def __post_init__(self) -> None:
        self.last_value: Any = _UNSET
        self.last_quality: str | None = None
        self.last_time: float | None = None

    def changed(self, value: Any) -> bool:
        """True when ``value`` differs from the last reported one by more than the deadband."""
        last = self.last_value
        if last is _UNSET:
            return True
        if value is None or last is None or isinstance(value, bool) or isinstance(last, bool):
            return value != last or type(value) is not type(last)
        if self.deadband <= 0:
            return value != last
        return abs(value - last) > self.deadband

    def due(self, now: float) -> bool:
        """True when the heartbeat period has elapsed since the last report."""
        return self.heartbeat > 0 and self.last_time is not None and now - self.last_time >= self.heartbeat

    def should_report(self, value: Any, quality: str, now: float) -> bool:
        """Decide, and remember the sample as reported when the answer is yes."""
        report = self.last_time is None or quality != self.last_quality or self.changed(value) or self.due(now)
        if report:
            self.last_value, self.last_quality, self.last_time = value, quality, now
        return report

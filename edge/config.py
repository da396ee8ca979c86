"""The gateway's TOML configuration: loading, defaults, and validation whose errors name the file, the line
and the dotted key (``site.toml line 14: devices.boiler.points.level.data_type: 'int8' is not one of ...``)."""
from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .points import DATA_TYPES, ORDERS

TRANSPORTS = ("http", "mqtt")
POLICIES = ("drop_oldest", "drop_newest")
PROTOCOLS = ("modbus_tcp", "modbus_rtu", "opcua")
REGISTERS = ("holding", "input", "coil", "discrete")
OPCUA_MODES = ("poll", "subscribe")
PARITIES = ("N", "E", "O")
DEFAULT_TOPIC = "emflow/{gateway}/telemetry"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class ConfigError(ValueError):
    """The configuration is invalid; ``errors`` holds one message per problem, each naming line and key."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class PointConfig:
    """One measured point of one device."""

    name: str
    device: str
    tag: str  # the platform's point name: "<device>.<point>", unique per gateway by construction
    address: int | None = None
    node: str | None = None
    register: str = "holding"
    data_type: str = "float32"
    byte_order: str = "big"
    word_order: str = "big"
    bit: int | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    deadband: float = 0.0
    poll_interval: float = 1.0
    heartbeat: float = 60.0


@dataclass(frozen=True)
class DeviceConfig:
    """One field device (a PLC, an RTU slave, an OPC UA server) and its points."""

    name: str
    protocol: str
    points: tuple[PointConfig, ...]
    host: str = ""
    port: int = 502
    device_id: int = 1
    serial_port: str = ""
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    endpoint: str = ""
    mode: str = "poll"
    publishing_interval: float = 1.0
    watchdog_factor: float = 10.0
    timeout: float = 3.0
    retry_initial: float = 1.0
    retry_max: float = 60.0
    offline_after: int = 2


@dataclass(frozen=True)
class PlatformConfig:
    """Where and how readings go up."""

    url: str
    transport: str = "http"
    token_env: str = ""
    token_file: Path | None = None
    timeout: float = 10.0
    topic: str = DEFAULT_TOPIC
    ca_file: Path | None = None
    proxy: str = ""
    retry_initial: float = 0.5
    retry_max: float = 30.0

    def token(self) -> str:
        """The gateway credential, read now from the environment variable or the file (never from the config)."""
        if self.token_env:
            return os.environ.get(self.token_env, "").strip()
        if self.token_file is not None:
            try:
                return self.token_file.read_text(encoding="utf-8").strip()
            except OSError:
                return ""
        return ""


@dataclass(frozen=True)
class OutboxConfig:
    """The local store-and-forward queue."""

    path: Path
    cap: int = 1_000_000
    policy: str = "drop_oldest"
    batch_size: int = 500
    live_window: float = 60.0


@dataclass(frozen=True)
class Config:
    """The whole gateway configuration."""

    gateway: str
    platform: PlatformConfig
    outbox: OutboxConfig
    devices: tuple[DeviceConfig, ...]
    heartbeat: float = 60.0
    health_interval: float = 10.0
    source: Path | None = field(default=None, compare=False)

    def points(self) -> list[PointConfig]:
        """Every point of every device."""
        return [p for d in self.devices for p in d.points]

    @property
    def health_path(self) -> Path:
        """The health JSON file, next to the outbox."""
        return self.outbox.path.with_name(self.outbox.path.stem + ".health.json")

    @property
    def topic(self) -> str:
        """The MQTT topic for this gateway."""
        return self.platform.topic.format(gateway=self.gateway)


# -- where a key is in the TOML text -------------------------------------------------------------------

_KEY_PART = re.compile(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)')


def _split_key(text: str) -> tuple[str, ...]:
    return tuple(m.group(1) if m.group(1) is not None else m.group(2) if m.group(2) is not None else m.group(3)
                 for m in _KEY_PART.finditer(text))


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map every table header and key of a TOML document to the line (1-based) where it is written."""
    found: dict[tuple[str, ...], int] = {}
    header: tuple[str, ...] = ()
    in_multiline = None
    for number, raw in enumerate(text.splitlines(), 1):
        if in_multiline:
            if raw.count(in_multiline) % 2:
                in_multiline = None
            continue
        line = _strip_comment(raw).strip()
        if line.startswith("["):
            inner = line.strip("[]").strip()
            header = _split_key(inner)
            found.setdefault(header, number)
        elif "=" in line:
            key, value = line.split("=", 1)
            path = header + _split_key(key)
            found.setdefault(path, number)
            value = value.strip()
            if value.startswith("{"):  # inline table: its keys are on this line too
                for inner_key in re.findall(r"([A-Za-z0-9_-]+)\s*=", value):
                    found.setdefault(path + (inner_key,), number)
            for quote in ('"""', "'''"):
                if value.count(quote) % 2:
                    in_multiline = quote
    return found


# -- validation ----------------------------------------------------------------------------------------

_MISSING = object()


class _Checker:
    """Reads typed values out of the parsed TOML and collects located errors."""

    def __init__(self, source: str, text: str):
        self.source = source
        self.lines = key_lines(text)
        self.errors: list[str] = []

    def where(self, path: tuple[str, ...]) -> str:
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return f"{self.source} line {self.lines[path[:n]]}"
        return self.source

    def error(self, path: tuple[str, ...], message: str) -> None:
        self.errors.append(f"{self.where(path)}: {'.'.join(path)}: {message}")

    def table(self, data: dict, path: tuple[str, ...], key: str, required: bool = False) -> dict:
        value = data.get(key, _MISSING)
        if value is _MISSING:
            if required:
                self.error(path + (key,), "missing (a table is required)")
            return {}
        if not isinstance(value, dict):
            self.error(path + (key,), f"must be a table, not {type(value).__name__}")
            return {}
        return value

    def get(self, data: dict, path: tuple[str, ...], key: str, kind: type | tuple, default: Any = _MISSING, *,
            choices: tuple | None = None, minimum: float | None = None, positive: bool = False) -> Any:
        full = path + (key,)
        value = data.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                self.error(full, "missing (required)")
                return None
            return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            self.error(full, f"{value!r} must be {names}")
            return default if default is not _MISSING else None
        if isinstance(value, float) and not math.isfinite(value):
            self.error(full, f"{value!r} must be a finite number")
            return default if default is not _MISSING else None
        if choices is not None and value not in choices:
            self.error(full, f"{value!r} is not one of {', '.join(repr(c) for c in choices)}")
            return default if default is not _MISSING else None
        if minimum is not None and value < minimum:
            self.error(full, f"{value!r} must be at least {minimum}")
            return default if default is not _MISSING else None
        if positive and value <= 0:
            self.error(full, f"{value!r} must be greater than 0")
            return default if default is not _MISSING else None
        return value

    def unknown(self, data: dict, path: tuple[str, ...], known: set[str]) -> None:
        # A misspelt key silently falling back to a default is how a site runs for months on wrong settings.
        for key in data:
            if key not in known:
                self.error(path + (key,), f"unknown key (expected one of {', '.join(sorted(known))})")


_POINT_KEYS = {"address", "node", "register", "data_type", "byte_order", "word_order", "bit", "scale", "offset",
               "unit", "deadband", "poll_interval", "heartbeat"}
_DEVICE_KEYS = {"protocol", "points", "host", "port", "device_id", "serial_port", "baudrate", "parity", "stopbits",
                "bytesize", "endpoint", "mode", "publishing_interval", "watchdog_factor", "timeout", "retry_initial",
                "retry_max", "offline_after", "poll_interval", "heartbeat"}


def _point(c: _Checker, device: str, protocol: str, name: str, data: Any, defaults: dict) -> PointConfig | None:
    path = ("devices", device, "points", name)
    if not isinstance(data, dict):
        c.error(path, "must be a table")
        return None
    if not _NAME.match(name):
        c.error(path, "point names use letters, digits, '_' and '-' only")
    c.unknown(data, path, _POINT_KEYS)
    register = c.get(data, path, "register", str, "holding", choices=REGISTERS)
    bit_kinds = register in ("coil", "discrete")
    data_type = c.get(data, path, "data_type", str, "bool" if bit_kinds else "float32", choices=tuple(DATA_TYPES))
    kw: dict[str, Any] = {}
    if protocol == "opcua":
        kw["node"] = c.get(data, path, "node", str)
        if "address" in data:
            c.error(path + ("address",), "OPC UA points use 'node', not 'address'")
    else:
        kw["address"] = c.get(data, path, "address", int, minimum=0)
        if kw["address"] is not None and kw["address"] > 65535:
            c.error(path + ("address",), f"{kw['address']} is beyond 65535")
        if bit_kinds and data_type not in (None, "bool"):
            c.error(path + ("data_type",), f"{data_type!r}: a {register} point is always 'bool'")
        if "node" in data:
            c.error(path + ("node",), "Modbus points use 'address', not 'node'")
    bit = c.get(data, path, "bit", int, None, minimum=0)
    if bit is not None and bit > 15:
        c.error(path + ("bit",), f"{bit} is beyond 15")
    return PointConfig(
        name=name, device=device, tag=f"{device}.{name}", register=register, data_type=data_type, bit=bit,
        byte_order=c.get(data, path, "byte_order", str, "big", choices=ORDERS),
        word_order=c.get(data, path, "word_order", str, "big", choices=ORDERS),
        scale=c.get(data, path, "scale", float, 1.0), offset=c.get(data, path, "offset", float, 0.0),
        unit=c.get(data, path, "unit", str, ""), deadband=c.get(data, path, "deadband", float, 0.0, minimum=0),
        poll_interval=c.get(data, path, "poll_interval", float, defaults["poll_interval"], positive=True),
        heartbeat=c.get(data, path, "heartbeat", float, defaults["heartbeat"], minimum=0), **kw)


def _device(c: _Checker, name: str, data: Any, heartbeat: float) -> DeviceConfig | None:
    path = ("devices", name)
    if not isinstance(data, dict):
        c.error(path, "must be a table")
        return None
    if not _NAME.match(name):
        c.error(path, "device names use letters, digits, '_' and '-' only")
    c.unknown(data, path, _DEVICE_KEYS)
    protocol = c.get(data, path, "protocol", str, choices=PROTOCOLS)
    kw: dict[str, Any] = {}
    if protocol == "modbus_tcp":
        kw["host"] = c.get(data, path, "host", str)
        kw["port"] = c.get(data, path, "port", int, 502, minimum=1)
    elif protocol == "modbus_rtu":
        kw["serial_port"] = c.get(data, path, "serial_port", str)
        kw["baudrate"] = c.get(data, path, "baudrate", int, 9600, positive=True)
        kw["parity"] = c.get(data, path, "parity", str, "N", choices=PARITIES)
        kw["stopbits"] = c.get(data, path, "stopbits", int, 1, choices=(1, 2))
        kw["bytesize"] = c.get(data, path, "bytesize", int, 8, choices=(7, 8))
    elif protocol == "opcua":
        endpoint = c.get(data, path, "endpoint", str)
        if endpoint is not None and not endpoint.startswith("opc.tcp://"):
            c.error(path + ("endpoint",), f"{endpoint!r} must start with opc.tcp://")
        kw["endpoint"] = endpoint
        kw["mode"] = c.get(data, path, "mode", str, "poll", choices=OPCUA_MODES)
        kw["publishing_interval"] = c.get(data, path, "publishing_interval", float, 1.0, positive=True)
        kw["watchdog_factor"] = c.get(data, path, "watchdog_factor", float, 10.0, minimum=2)
    if protocol in ("modbus_tcp", "modbus_rtu"):
        kw["device_id"] = c.get(data, path, "device_id", int, 1, minimum=0)
    retry_initial = c.get(data, path, "retry_initial", float, 1.0, positive=True)
    retry_max = c.get(data, path, "retry_max", float, 60.0, positive=True)
    if retry_max < retry_initial:
        c.error(path + ("retry_max",), f"{retry_max!r} is below retry_initial {retry_initial!r}")
    defaults = {"poll_interval": c.get(data, path, "poll_interval", float, 1.0, positive=True),
                "heartbeat": c.get(data, path, "heartbeat", float, heartbeat, minimum=0)}
    points_data = c.table(data, path, "points", required=True)
    if protocol and not points_data and "points" in data:
        c.error(path + ("points",), "a device needs at least one point")
    points = [p for key, value in points_data.items() if (p := _point(c, name, protocol or "", key, value, defaults))]
    return DeviceConfig(
        name=name, protocol=protocol or "", points=tuple(points), retry_initial=retry_initial, retry_max=retry_max,
        timeout=c.get(data, path, "timeout", float, 3.0, positive=True),
        offline_after=c.get(data, path, "offline_after", int, 2, minimum=1), **kw)


def parse(text: str, source: str = "<config>", base: Path | None = None) -> Config:
    """Parse and validate TOML text; relative paths are taken from ``base``. Raises :class:`ConfigError`."""
    base = base or Path.cwd()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: {exc}"]) from exc
    c = _Checker(source, text)
    c.unknown(data, (), {"gateway", "platform", "outbox", "devices"})

    gw = c.table(data, (), "gateway", required=True)
    c.unknown(gw, ("gateway",), {"id", "heartbeat", "health_interval"})
    gateway = c.get(gw, ("gateway",), "id", str) if gw else None
    if gateway is not None and not _NAME.match(gateway):
        c.error(("gateway", "id"), f"{gateway!r}: use letters, digits, '_' and '-' only")
    heartbeat = c.get(gw, ("gateway",), "heartbeat", float, 60.0, minimum=0)
    health_interval = c.get(gw, ("gateway",), "health_interval", float, 10.0, positive=True)

    pf = c.table(data, (), "platform", required=True)
    pp = ("platform",)
    c.unknown(pf, pp, {"url", "transport", "token_env", "token_file", "token", "timeout", "topic", "ca_file",
                       "proxy", "retry_initial", "retry_max"})
    if "token" in pf:
        c.error(pp + ("token",), "no inline secrets: use token_env (an environment variable) or token_file")
    transport = c.get(pf, pp, "transport", str, "http", choices=TRANSPORTS)
    url = c.get(pf, pp, "url", str) if pf else None
    if url is not None:
        scheme = urlsplit(url).scheme
        allowed = ("http", "https") if transport == "http" else ("mqtt", "mqtts")
        if scheme not in allowed or not urlsplit(url).hostname:
            c.error(pp + ("url",), f"{url!r} must be a {' or '.join(s + '://' for s in allowed)} URL "
                                   f"for transport {transport!r}")
    token_env = c.get(pf, pp, "token_env", str, "")
    token_file = c.get(pf, pp, "token_file", str, "")
    if token_env and token_file:
        c.error(pp + ("token_file",), "give token_env or token_file, not both")
    if pf and not (token_env or token_file):  # the MQTT bridge checks the same credential, carried in the body
        c.error(pp, f"the {transport} transport needs a credential: token_env or token_file")
    topic = c.get(pf, pp, "topic", str, DEFAULT_TOPIC)
    ca_file = c.get(pf, pp, "ca_file", str, "")
    retry_initial = c.get(pf, pp, "retry_initial", float, 0.5, positive=True)
    platform = PlatformConfig(
        url=url or "", transport=transport, token_env=token_env,
        token_file=(base / token_file) if token_file else None, topic=topic,
        timeout=c.get(pf, pp, "timeout", float, 10.0, positive=True), ca_file=(base / ca_file) if ca_file else None,
        proxy=c.get(pf, pp, "proxy", str, ""), retry_initial=retry_initial,
        retry_max=c.get(pf, pp, "retry_max", float, 30.0, minimum=retry_initial or 0))

    ob = c.table(data, (), "outbox", required=True)
    op = ("outbox",)
    c.unknown(ob, op, {"path", "cap", "policy", "batch_size", "live_window"})
    path = c.get(ob, op, "path", str) if ob else None
    outbox = OutboxConfig(
        path=base / (path or "outbox.sqlite"), cap=c.get(ob, op, "cap", int, 1_000_000, minimum=1),
        policy=c.get(ob, op, "policy", str, "drop_oldest", choices=POLICIES),
        batch_size=c.get(ob, op, "batch_size", int, 500, minimum=1),
        live_window=c.get(ob, op, "live_window", float, 60.0, minimum=0))

    devices_data = c.table(data, (), "devices", required=True)
    if "devices" in data and isinstance(data["devices"], dict) and not devices_data:
        c.error(("devices",), "at least one device is required")
    devices = [d for name, value in devices_data.items() if (d := _device(c, name, value, heartbeat))]
    if c.errors:
        raise ConfigError(c.errors)
    return Config(gateway=gateway, platform=platform, outbox=outbox, devices=tuple(devices), heartbeat=heartbeat,
                  health_interval=health_interval)


def load(path: str | Path) -> Config:
    """Read and validate a TOML config file. Raises :class:`ConfigError` (also for an unreadable file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from exc
    config = parse(text, source=path.name, base=path.resolve().parent)
    return replace(config, source=path)

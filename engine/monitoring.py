"""The monitoring registry: gateways and their credentials, devices, points with limits, Excel import of point lists.

Point list workbook (first sheet, first row = headers, data from row 2; empty rows are skipped):

    A 测点名称 <device>.<point> as the edge sends it (required)   B 测点描述      C 指标编码      D 单位
    E 低低报 F 低低报等级   G 低报 H 低报等级   I 高报 J 高报等级   K 高高报 L 高高报等级
    (grades 1-4: 一级 red, 二级 orange, 三级 yellow, 四级 blue)
    M 死区 (deadband)   N 报警延时(秒) (on-delay)   O 恢复延时(秒) (off-delay)   P 监测项编码   Q 监测项名称

A limit without a grade, a grade outside 1-4, limits out of order (lolo ≤ lo ≤ hi ≤ hihi), a name used twice or
a number that is not one: the whole import is refused, with the errors by row number ("row 7").
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from . import audit, clock
from .auth import set_password
from .config import Config
from .errors import AuthenticationFailed, Forbidden, NotFound, ValidationFailed
from .forms import FieldError
from .models import Enterprise, Role, Unit, User, UserRole
from .models.monitoring import Device, Gateway, MonitoredItem, Point

INDUSTRIES = ("危险化学品", "尾矿库", "烟花爆竹")
GRADES = {1: "red", 2: "orange", 3: "yellow", 4: "blue"}
LIMITS = ("lolo", "lo", "hi", "hihi")
REGULATOR_ROLE = "alarm_regulator"
PERMISSION = "monitoring.admin"
COLUMNS = ("name", "label", "indicator_code", "unit", "lolo", "lolo_grade", "lo", "lo_grade", "hi", "hi_grade",
           "hihi", "hihi_grade", "deadband", "on_delay_s", "off_delay_s", "item_code", "item_name")
HEADERS = ("测点名称", "测点描述", "指标编码", "单位", "低低报", "低低报等级", "低报", "低报等级", "高报", "高报等级",
           "高高报", "高高报等级", "死区", "报警延时(秒)", "恢复延时(秒)", "监测项编码", "监测项名称")
POINT_NAME = re.compile(r"^[^.\s]{1,100}\.\S{1,99}$")
TOKEN_PREFIX = "gw_"  # noqa: S105 - a prefix, not a secret


def hash_token(token: str) -> str:
    """The stored form of a gateway credential."""
    return hashlib.sha256(token.encode()).hexdigest()


def _require_admin(actor) -> None:
    if not actor.can(PERMISSION):
        raise Forbidden("only monitoring administrators may change the registry", code="not_monitoring_admin")


def create_gateway(session: Session, actor, code: str, enterprise_id: int, name: str = "") -> tuple[Gateway, str]:
    """Register a gateway; returns it and its credential, which is shown once and stored only as a hash."""
    _require_admin(actor)
    if not code or not re.match(r"^[A-Za-z0-9_.-]{1,64}$", code):
        raise ValidationFailed("a gateway code uses letters, digits, '.', '-' and '_'",
                               errors={"code": [{"code": "pattern", "message": "invalid"}]})
    if session.get(Enterprise, enterprise_id) is None:
        raise NotFound(f"enterprise {enterprise_id} not found")
    if session.scalar(select(Gateway.id).where(Gateway.code == code)) is not None:
        raise ValidationFailed(f"gateway '{code}' exists", errors={"code": [{"code": "unique", "message": "taken"}]})
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    gateway = Gateway(code=code, name=name or code, enterprise_id=enterprise_id, token_hash=hash_token(token))
    session.add(gateway)
    session.flush()
    audit.record_system(session, "gateway_registered", actor, target=code, enterprise_id=enterprise_id)
    return gateway, token


def rotate_token(session: Session, actor, gateway_id: int) -> str:
    """Give a gateway a new credential (the old one stops working at once); returns it."""
    found = gateway(session, actor, gateway_id)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    found.token_hash = hash_token(token)
    audit.record_system(session, "gateway_token_rotated", actor, target=found.code)
    return token


MAX_SILENT_AFTER_S = 7 * 24 * 3600


def update_gateway(session: Session, actor, gateway_id: int, changes: dict) -> Gateway:
    """Change a gateway's ``name``, ``enabled`` or ``silent_after_s`` (how long it may stay unheard before its
    silence alarm; None for the platform default). A disabled gateway's posts are refused and its silence is not
    watched; enabled again, it has its full threshold to report. Works under the gateway's row lock."""
    from .alarms import MIN_SILENT_AFTER_S, silent_after  # alarms imports this module

    _require_admin(actor)
    errors = {}
    if "name" in changes and not (isinstance(changes["name"], str) and 0 < len(changes["name"].strip()) <= 200):
        errors["name"] = [FieldError("maxLength", 200).as_dict()]
    if "enabled" in changes and not isinstance(changes["enabled"], bool):
        errors["enabled"] = [FieldError("type", "boolean").as_dict()]
    threshold = changes.get("silent_after_s")
    if threshold is not None:
        if not isinstance(threshold, int) or isinstance(threshold, bool):
            errors["silent_after_s"] = [FieldError("type", "integer").as_dict()]
        elif threshold < MIN_SILENT_AFTER_S:
            errors["silent_after_s"] = [FieldError("minimum", MIN_SILENT_AFTER_S).as_dict()]
        elif threshold > MAX_SILENT_AFTER_S:
            errors["silent_after_s"] = [FieldError("maximum", MAX_SILENT_AFTER_S).as_dict()]
    if errors:
        raise ValidationFailed("invalid gateway settings", errors=errors)
    gateway = session.scalars(select(Gateway).where(Gateway.id == gateway_id).with_for_update()
                              .execution_options(populate_existing=True)).first()
    if gateway is None:
        raise NotFound(f"gateway {gateway_id} not found")
    now = clock.now()
    before = {"name": gateway.name, "enabled": gateway.enabled, "silent_after_s": gateway.silent_after_s}
    if "name" in changes:
        gateway.name = changes["name"].strip()
    if "silent_after_s" in changes:
        gateway.silent_after_s = threshold
        if gateway.silent_due_at is not None:  # still watched: due from its last contact under the new threshold
            gateway.silent_due_at = (gateway.last_seen_at or now) + silent_after(gateway)
    if "enabled" in changes and changes["enabled"] != gateway.enabled:
        gateway.enabled = changes["enabled"]
        if gateway.enabled and gateway.silent_due_at is not None:
            gateway.silent_due_at = now + silent_after(gateway)
    after = {"name": gateway.name, "enabled": gateway.enabled, "silent_after_s": gateway.silent_after_s}
    changed = {k: {"from": before[k], "to": after[k]} for k in before if before[k] != after[k]}
    if changed:
        audit.record_system(session, "gateway_updated", actor, target=gateway.code, changes=changed)
    session.flush()
    return gateway


def gateways(session: Session, actor) -> list[Gateway]:
    """Every registered gateway, by code (monitoring administrators)."""
    _require_admin(actor)
    return list(session.scalars(select(Gateway).order_by(Gateway.code)))


def gateway(session: Session, actor, gateway_id: int) -> Gateway:
    """One registered gateway (monitoring administrators); NotFound if there is none."""
    _require_admin(actor)
    found = session.get(Gateway, gateway_id)
    if found is None:
        raise NotFound(f"gateway {gateway_id} not found")
    return found


def enterprises(session: Session, actor, q: str = "", limit: int = 20) -> list[Enterprise]:
    """Enterprises whose name or credit code contains ``q``, by name (the gateway page's picker)."""
    _require_admin(actor)
    stmt = select(Enterprise)
    if q:
        stmt = stmt.where(or_(Enterprise.name.icontains(q, autoescape=True),
                              Enterprise.credit_code.icontains(q, autoescape=True)))
    return list(session.scalars(stmt.order_by(Enterprise.name).limit(limit)))


def enterprise_named(session: Session, actor, text: str) -> Enterprise:
    """The enterprise with this credit code, or the only one with exactly this name; ValidationFailed otherwise."""
    _require_admin(actor)
    found = session.scalars(select(Enterprise).where(or_(Enterprise.credit_code == text, Enterprise.name == text))
                            .limit(2)).all()
    if len(found) != 1:
        raise ValidationFailed("no single enterprise has this credit code or name",
                               errors={"enterprise": [{"code": "unknown" if not found else "ambiguous",
                                                       "message": text}]})
    return found[0]


def gateway_by_token(session: Session, token: str) -> Gateway:
    """The enabled gateway holding this credential; AuthenticationFailed otherwise."""
    gateway = session.scalar(select(Gateway).where(Gateway.token_hash == hash_token(token or "")))
    if gateway is None or not gateway.enabled:
        raise AuthenticationFailed("unknown or disabled gateway credential", code="gateway_token_invalid")
    return gateway


def device(session: Session, gateway: Gateway, name: str) -> Device:
    """The gateway's device of this name, created on first use."""
    found = session.scalar(select(Device).where(Device.gateway_id == gateway.id, Device.name == name))
    if found is None:
        found = Device(gateway_id=gateway.id, name=name)
        session.add(found)
        session.flush()
    return found


def item(session: Session, enterprise_id: int, code: str, name: str = "") -> MonitoredItem:
    """The enterprise's monitored item of this code, created on first use."""
    found = session.scalar(select(MonitoredItem).where(MonitoredItem.enterprise_id == enterprise_id,
                                                       MonitoredItem.code == code))
    if found is None:
        found = MonitoredItem(enterprise_id=enterprise_id, code=code, name=name or code)
        session.add(found)
        session.flush()
    elif name:
        found.name = name
    return found


def check_point(fields: dict) -> dict[str, str]:
    """Problems with a point's settings, by field name (empty when it is fine)."""
    errors = {}
    if not isinstance(fields.get("name"), str) or not POINT_NAME.match(fields["name"]):
        errors["name"] = "must be <device>.<point>"
    for limit in LIMITS:
        value, grade = fields.get(limit), fields.get(f"{limit}_grade")
        if value is not None and grade not in (1, 2, 3, 4):
            errors[f"{limit}_grade"] = "a limit needs a grade from 1 to 4"
        if value is None and grade is not None:
            errors[limit] = "a grade needs its limit"
    given = [fields[k] for k in LIMITS if fields.get(k) is not None]
    if given != sorted(given):
        errors["limits"] = "limits must be in order: lolo ≤ lo ≤ hi ≤ hihi"
    for key in ("deadband", "on_delay_s", "off_delay_s"):
        if (fields.get(key) or 0) < 0:
            errors[key] = "must not be negative"
    return errors


def upsert_point(session: Session, gateway: Gateway, fields: dict) -> Point:
    """Create or update the gateway's point named ``fields['name']``."""
    errors = check_point(fields)
    if errors:
        raise ValidationFailed("invalid point settings",
                               errors={k: [{"code": "invalid", "message": v}] for k, v in errors.items()})
    device_name = fields["name"].split(".", 1)[0]
    device_id = device(session, gateway, device_name).id
    item_code = fields.get("item_code")
    item_id = item(session, gateway.enterprise_id, item_code, fields.get("item_name") or "").id if item_code else None
    point = session.scalar(select(Point).where(Point.gateway_id == gateway.id, Point.name == fields["name"]))
    if point is None:
        point = Point(gateway_id=gateway.id, name=fields["name"], enterprise_id=gateway.enterprise_id)
        session.add(point)
    point.device_id, point.item_id = device_id, item_id
    for key in ("label", "indicator_code", "unit"):
        setattr(point, key, fields.get(key) or "")
    for limit in LIMITS:
        setattr(point, limit, fields.get(limit))
        setattr(point, f"{limit}_grade", fields.get(f"{limit}_grade"))
    for key in ("deadband", "on_delay_s", "off_delay_s"):
        setattr(point, key, float(fields.get(key) or 0))
    session.flush()
    return point


def _cell(value, kind: str):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if kind == "str":
        return str(value).strip()
    if isinstance(value, bool):
        raise ValueError("not a number")
    number = float(value)
    if kind == "int":
        if number != int(number):
            raise ValueError("not a whole number")
        return int(number)
    return number


_KINDS = {c: "int" if c.endswith("_grade") else "float" for c in COLUMNS[4:15]}


def read_workbook(stream: BinaryIO) -> list[tuple[int, dict]]:
    """Rows of a point-list workbook as (row number, fields); ValidationFailed with every problem by row."""
    from openpyxl import load_workbook

    try:
        sheet = load_workbook(stream, read_only=True, data_only=True).worksheets[0]
    except Exception as exc:  # noqa: BLE001 - anything openpyxl cannot read is not a workbook for us
        raise ValidationFailed(f"not an Excel workbook (.xlsx): {exc}",
                               errors={"file": [{"code": "invalid", "message": "not an .xlsx workbook"}]}) from exc
    rows, errors, seen = [], {}, {}
    for number, values in enumerate(sheet.iter_rows(min_row=2, max_col=len(COLUMNS), values_only=True), start=2):
        values = list(values) + [None] * (len(COLUMNS) - len(values))
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            continue
        fields, problems = {}, []
        for column, value in zip(COLUMNS, values, strict=True):
            try:
                fields[column] = _cell(value, _KINDS.get(column, "str"))
            except (TypeError, ValueError):
                problems.append(f"{column}: not a number ({value!r})")
        if not problems:
            problems = [f"{k}: {v}" for k, v in check_point(fields).items()]
        name = fields.get("name")
        if name and name in seen:
            problems.append(f"name: '{name}' is also on row {seen[name]}")
        elif name:
            seen[name] = number
        if problems:
            errors[f"row {number}"] = [{"code": "invalid", "message": p} for p in problems]
        rows.append((number, fields))
    if errors:
        raise ValidationFailed(f"the point list has errors on {len(errors)} row(s); nothing was imported",
                               errors=errors)
    return rows


def import_points(session: Session, actor, gateway_id: int, stream: BinaryIO) -> list[Point]:
    """Create or update every point of the workbook for one gateway, all or nothing."""
    _require_admin(actor)
    gateway = session.get(Gateway, gateway_id)
    if gateway is None:
        raise NotFound(f"gateway {gateway_id} not found")
    rows = read_workbook(stream)
    with session.begin_nested():
        points = [upsert_point(session, gateway, fields) for _, fields in rows]
    audit.record_system(session, "points_imported", actor, target=gateway.code, points=len(points))
    return points


def regulators(session: Session, region_code: str) -> list[User]:
    """Users on alarm duty (role alarm_regulator) in exactly this region."""
    return list(session.scalars(select(User).join(UserRole, UserRole.user_id == User.id)
                                .join(Role, Role.id == UserRole.role_id)
                                .where(Role.code == REGULATOR_ROLE, User.region_code == region_code,
                                       User.is_active.is_(True)).order_by(User.id)))


# -- demo organisation: alarm duty in 兴宁区, 南宁市, 柳州市 and the province ----------------------------
DEMO_UNITS = [("XNYJJ", "兴宁区应急管理局", "450102"), ("ZHZX", "应急指挥中心", "450000")]
DEMO_USERS = [("huang.jian", "黄健", "兴宁区应急管理局值班员", "XNYJJ", "450102"),
              ("zheng.hui", "郑辉", "应急指挥中心值班员", "ZHZX", "450000")]
DEMO_REGULATORS = ("huang.jian", "zheng.hui", "chen.jie", "zhao.min")
DEMO_DUTY = {"91450102MA5K000001": "qiye.hg001"}


def load_demo(session: Session, password: str) -> None:
    """Alarm duty for the demo organisation: a county and a provincial duty officer, the city staff on duty too,
    and the demo plant's safety officer as its duty person. Idempotent."""
    role = session.scalar(select(Role).where(Role.code == REGULATOR_ROLE))
    if role is None:
        role = Role(code=REGULATOR_ROLE, name="监测预警值守", permissions=[])
        session.add(role)
    staff = session.scalar(select(Role).where(Role.code == "staff"))
    root = session.scalar(select(Unit).where(Unit.code == "GXYJT"))
    for code, name, region in DEMO_UNITS:
        unit = session.scalar(select(Unit).where(Unit.code == code))
        if unit is None:
            session.add(Unit(code=code, name=name, region_code=region,
                             parent_id=root.id if root and region == "450000" else None, sort_order=50))
    session.flush()
    for username, name, title, unit_code, region in DEMO_USERS:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            user = User(username=username, name=name, title=title, region_code=region,
                        unit_id=session.scalar(select(Unit.id).where(Unit.code == unit_code)))
            session.add(user)
            session.flush()
            if staff is not None:
                session.add(UserRole(user_id=user.id, role_id=staff.id))
        set_password(user, password)
    session.flush()
    for username in DEMO_REGULATORS:
        user = session.scalar(select(User).where(User.username == username))
        if user is not None and session.get(UserRole, (user.id, role.id)) is None:
            session.add(UserRole(user_id=user.id, role_id=role.id))
    for credit_code, username in DEMO_DUTY.items():
        enterprise = session.scalar(select(Enterprise).where(Enterprise.credit_code == credit_code))
        duty = session.scalar(select(User).where(User.username == username))
        if enterprise is not None and duty is not None:
            enterprise.duty_user_id = duty.id
    session.flush()


# -- demo organisation: a monitoring gateway for the demo plant, fed by `emflow edge simulate` -------------
# The edge simulator (edge/simulator.py) serves every point at 50 ± 10 in engineering units (a sine with a per-point
# period and phase, plus noise), so the units below are ones where that range is a plausible reading, and the limits
# are set around it: only 反应釜R201温度 crosses one (高报 58 °C, at the peaks of its 47-second wave).
DEMO_GATEWAY = "gw-xinan-01"
DEMO_GATEWAY_NAME = "鑫安化工安全监测网关"
DEMO_PLANT = "91450102MA5K000001"
DEMO_CONFIG = "edge-demo.toml"  # in the instance folder, next to its credential and its outbox
DEMO_TOKEN_FILE = "edge-demo.token"  # noqa: S105 - a file name, not a secret
DEMO_OUTBOX = "edge-demo-outbox.sqlite"
DEMO_MODBUS_PORT = 15020  # the simulator serves both devices here on 127.0.0.1 (502 would need root)
DEMO_DEVICES = {"dcs": (1, "装置 DCS：甲苯储罐 V101、反应釜 R201"), "gds": (2, "可燃/有毒气体报警控制器 GDS")}
# (platform point settings, edge settings: Modbus address, data type, scale, report-on-change deadband)
DEMO_POINTS = [
    ({"name": "dcs.v101_level", "label": "甲苯储罐V101液位", "indicator_code": "YW", "unit": "%",
      "lolo": 10.0, "lolo_grade": 2, "lo": 20.0, "lo_grade": 3, "hi": 85.0, "hi_grade": 3, "hihi": 90.0,
      "hihi_grade": 2, "deadband": 1.0, "on_delay_s": 5.0, "off_delay_s": 10.0,
      "item_code": "V101", "item_name": "甲苯储罐V101"},
     {"address": 0, "data_type": "float32", "deadband": 0.2}),
    ({"name": "dcs.r201_pressure", "label": "反应釜R201压力", "indicator_code": "YL", "unit": "kPa",
      "hi": 80.0, "hi_grade": 3, "hihi": 100.0, "hihi_grade": 2, "deadband": 2.0, "on_delay_s": 3.0,
      "off_delay_s": 10.0, "item_code": "R201", "item_name": "反应釜R201"},
     {"address": 2, "data_type": "uint16", "scale": 0.1, "deadband": 0.5}),
    ({"name": "dcs.r201_temperature", "label": "反应釜R201温度", "indicator_code": "WD", "unit": "°C",
      "hi": 58.0, "hi_grade": 3, "hihi": 65.0, "hihi_grade": 2, "deadband": 1.5, "on_delay_s": 3.0,
      "off_delay_s": 10.0, "item_code": "R201", "item_name": "反应釜R201"},
     {"address": 3, "data_type": "int16", "scale": 0.1, "deadband": 0.2}),
    # GB/T 50493-2019: 一级报警 ≤ 100 % OEL, 二级报警 ≤ 200 % OEL; 甲苯 PC-STEL 100 mg/m³ (GBZ 2.1)
    ({"name": "gds.v101_toluene", "label": "甲苯储罐区有毒气体（甲苯）浓度", "indicator_code": "YDQT",
      "unit": "mg/m³", "hi": 100.0, "hi_grade": 3, "hihi": 200.0, "hihi_grade": 2, "deadband": 5.0,
      "on_delay_s": 5.0, "off_delay_s": 10.0, "item_code": "V101", "item_name": "甲苯储罐V101"},
     {"address": 0, "register": "input", "data_type": "uint16", "scale": 0.1, "deadband": 0.5}),
]


@dataclass(frozen=True)
class DemoGateway:
    """What the demo load did about the demo plant's gateway (for the command's output)."""

    code: str
    gateway_id: int
    config_path: Path
    token_path: Path
    points: int
    created: bool  # registered by this run (and both files written)
    credential_ok: bool  # the token file holds the gateway's current credential
    config_written: bool  # the config file was written by this run
    url: str | None  # the platform URL in the config file


def _toml(value) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    return repr(value)


def demo_edge_config(url: str, token_file: str = DEMO_TOKEN_FILE, port: int = DEMO_MODBUS_PORT,
                     outbox: str = DEMO_OUTBOX) -> str:
    """The demo gateway's edge collector config (TOML, as edge/config.py reads it): both devices on 127.0.0.1, where
    ``emflow edge simulate`` serves them. Relative paths are taken from the file's folder."""
    lines = [
        f"# The emflow demo plant's monitoring gateway ({DEMO_GATEWAY_NAME}), written by `emflow demo`.",
        "# Serve its points from local simulators:  emflow edge simulate --config <this file>",
        "# Collect them and send them to emflow:   emflow edge run --config <this file>",
        f"# Its credential is in {token_file} next to this file (mode 600); the platform keeps only its hash.",
        "",
        "[gateway]",
        f"id = {_toml(DEMO_GATEWAY)}",
        "heartbeat = 30",
        "health_interval = 10",
        "",
        "[platform]",
        f"url = {_toml(url)}",
        'transport = "http"',
        f"token_file = {_toml(token_file)}",
        "timeout = 10",
        "retry_max = 30",
        "",
        "[outbox]",
        f"path = {_toml(outbox)}",
        "cap = 200000",
        'policy = "drop_oldest"',
        "batch_size = 500",
        "live_window = 60",
    ]
    for device, (device_id, title) in DEMO_DEVICES.items():
        lines += ["", f"[devices.{device}]  # {title}", 'protocol = "modbus_tcp"', 'host = "127.0.0.1"',
                  f"port = {port}", f"device_id = {device_id}", "timeout = 2", "poll_interval = 1",
                  "offline_after = 3"]
        for fields, edge in DEMO_POINTS:
            if fields["name"].split(".", 1)[0] != device:
                continue
            lines += ["", f"[devices.{fields['name'].replace('.', '.points.', 1)}]  # {fields['label']}"]
            lines += [f"{key} = {_toml(value)}" for key, value in edge.items() if key != "deadband"]
            lines += [f"unit = {_toml(fields['unit'])}", f"deadband = {_toml(edge['deadband'])}"]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (mode 600), replacing it whole."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _config_url(path: Path) -> str | None:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))["platform"]["url"]
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return None


def load_demo_gateway(session: Session, config: Config, actor, url: str | None = None,
                      port: int = DEMO_MODBUS_PORT) -> DemoGateway | None:
    """Register the demo plant's monitoring gateway and its points, once, and write its edge collector config into
    the instance folder (``edge-demo.toml``, and its credential in ``edge-demo.token``, both mode 600).

    Idempotent: an existing gateway keeps its credential and its points' settings (missing demo points are added),
    and existing files are left alone. The credential exists only when the gateway is registered, so when the token
    file is gone later, this does not replace it (see ``DemoGateway.credential_ok``): rotating is the
    administrator's call (``rotate_token``, ``POST /api/v1/gateways/{id}/token``). The files are written before the
    caller commits: should the commit fail, the next run registers the gateway again and rewrites them.
    ``url`` is where the collector sends (default ``config.public_url``); None when there is no demo plant."""
    enterprise = session.scalar(select(Enterprise).where(Enterprise.credit_code == DEMO_PLANT))
    if enterprise is None:
        return None
    folder = Path(config.instance_path)
    config_path, token_path = folder / DEMO_CONFIG, folder / DEMO_TOKEN_FILE
    url = (url or config.public_url).rstrip("/")
    gateway = session.scalar(select(Gateway).where(Gateway.code == DEMO_GATEWAY))
    created = gateway is None
    if created:
        gateway, token = create_gateway(session, actor, DEMO_GATEWAY, enterprise.id, DEMO_GATEWAY_NAME)
        folder.mkdir(parents=True, exist_ok=True)
        _write_private(token_path, token + "\n")
        credential_ok = True
    else:
        try:
            credential_ok = hash_token(token_path.read_text(encoding="utf-8").strip()) == gateway.token_hash
        except (OSError, UnicodeDecodeError):
            credential_ok = False
    existing = set(session.scalars(select(Point.name).where(Point.gateway_id == gateway.id)))
    added = [upsert_point(session, gateway, fields) for fields, _ in DEMO_POINTS if fields["name"] not in existing]
    if added:
        audit.record_system(session, "points_imported", actor, target=gateway.code, points=len(added))
    config_written = created or not config_path.exists()
    if config_written:  # no secret in it: rewriting a lost one rotates nothing
        folder.mkdir(parents=True, exist_ok=True)
        _write_private(config_path, demo_edge_config(url, port=port))
    return DemoGateway(code=gateway.code, gateway_id=gateway.id, config_path=config_path, token_path=token_path,
                       points=len(existing) + len(added), created=created, credential_ok=credential_ok,
                       config_written=config_written, url=url if config_written else _config_url(config_path))

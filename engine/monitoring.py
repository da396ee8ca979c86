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

import hashlib
import re
import secrets
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .auth import set_password
from .errors import AuthenticationFailed, Forbidden, NotFound, ValidationFailed
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
    _require_admin(actor)
    gateway = session.get(Gateway, gateway_id)
    if gateway is None:
        raise NotFound(f"gateway {gateway_id} not found")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    gateway.token_hash = hash_token(token)
    audit.record_system(session, "gateway_token_rotated", actor, target=gateway.code)
    return token


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

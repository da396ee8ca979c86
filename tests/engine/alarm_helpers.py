"""Helpers for the monitoring tests: register a gateway with points, send telemetry as the edge does, read alarms."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select

from engine import alarms, clock, monitoring, telemetry
from engine.models import Enterprise
from engine.models.monitoring import Alarm, AlarmEvent, Gateway, Point
from tests.engine.helpers import load_user

PLANT = "91450102MA5K000001"  # the demo hazardous-chemicals plant in 兴宁区; duty person qiye.hg001
LEVEL = {"name": "plc.level", "label": "T101液位", "indicator_code": "YW", "unit": "m", "hi": 8.0, "hi_grade": 3,
         "hihi": 9.0, "hihi_grade": 1, "lo": 1.0, "lo_grade": 4, "deadband": 0.5}


def enterprise_id(db, credit_code: str = PLANT) -> int:
    with db.session() as s:
        return s.scalar(select(Enterprise.id).where(Enterprise.credit_code == credit_code))


def add_enterprise(db, name: str, industry: str, region: str = "450102", duty: str | None = "qiye.hg001") -> int:
    """A further monitored enterprise (e.g. a tailings dam) with a duty person."""
    with db.transaction() as s:
        row = Enterprise(credit_code=f"TEST{uuid.uuid4().hex[:12]}", name=name, region_code=region, industry=industry,
                         duty_user_id=load_user(s, duty).id if duty else None)
        s.add(row)
        s.flush()
        return row.id


def register(db, points: list[dict], code: str = "gw-01", enterprise: int | None = None) -> tuple[str, dict]:
    """Register a gateway (as admin) with these points; returns its token and {point name: id}."""
    with db.transaction() as s:
        admin = load_user(s, "admin")
        gateway, token = monitoring.create_gateway(s, admin, code, enterprise or enterprise_id(db))
        ids = {p["name"]: monitoring.upsert_point(s, gateway, p).id for p in points}
    return token, ids


def point(db, point_id: int) -> Point:
    with db.session() as s:
        return s.get(Point, point_id)


def update_point(db, point_id: int, **values) -> None:
    with db.transaction() as s:
        row = s.get(Point, point_id)
        for k, v in values.items():
            setattr(row, k, v)


class Edge:
    """Sends readings as the edge collector does: per-point seq, uuid ids, the engine clock's time."""

    def __init__(self, db, config, token: str, code: str = "gw-01"):
        self.db, self.config, self.token, self.code = db, config, token, code
        self.seqs: dict[str, int] = {}

    def reading(self, name: str, value, *, ts: datetime | None = None, seq: int | None = None,
                historical: bool = False, quality: str = "good", id: str | None = None) -> dict:
        if seq is None:
            seq = self.seqs.get(name, 0) + 1
        self.seqs[name] = max(seq, self.seqs.get(name, 0))
        return {"id": id or str(uuid.uuid4()), "point": name, "seq": seq,
                "ts": (ts or clock.now()).isoformat().replace("+00:00", "Z"), "value": value, "quality": quality,
                "historical": historical}

    def post(self, readings: list[dict], devices: dict | None = None) -> dict:
        body = {"gateway": self.code, "readings": readings,
                "status": {"devices": devices or {}, "dropped": 0, "backlog": 0, "oldest_backlog_ts": None,
                           "readings_per_minute": 60.0}}
        with self.db.transaction() as s:
            gateway = monitoring.gateway_by_token(s, self.token)
            return telemetry.ingest(s, self.config, gateway, body)

    def send(self, name: str, *values, **kw) -> dict:
        """One post per value (the clock does not move between them unless a test moves it)."""
        answer = {}
        for value in values:
            answer = self.post([self.reading(name, value, **kw)])
        return answer


def tick(db, config) -> int:
    with db.transaction() as s:
        return alarms.tick(s, config)


def open_alarms(db, point_id: int | None = None) -> list[Alarm]:
    with db.session() as s:
        stmt = select(Alarm).where(Alarm.state != "closed")
        if point_id is not None:
            stmt = stmt.where(Alarm.point_id == point_id)
        return list(s.scalars(stmt.order_by(Alarm.id)))


def all_alarms(db) -> list[Alarm]:
    with db.session() as s:
        return list(s.scalars(select(Alarm).order_by(Alarm.id)))


def alarm(db, alarm_id: int) -> Alarm:
    with db.session() as s:
        return s.get(Alarm, alarm_id)


def trail(db, alarm_id: int) -> list[str]:
    with db.session() as s:
        return [e.kind for e in alarms.trail(s, alarm_id)]


def point_events(db, point_id: int) -> list[AlarmEvent]:
    with db.session() as s:
        return list(s.scalars(select(AlarmEvent).where(AlarmEvent.point_id == point_id).order_by(AlarmEvent.id)))


def gateway(db, code: str = "gw-01") -> Gateway:
    with db.session() as s:
        return s.scalar(select(Gateway).where(Gateway.code == code))

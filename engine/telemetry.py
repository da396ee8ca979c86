"""Telemetry ingest from edge gateways, and reading a point's latest value and history.

The uplink contract is the edge collector's (README, "Edge collector"): a batch of readings, each with the edge's
uuid ``id``, ``point`` (``<device>.<point>``), per-point ``seq``, ``ts``, ``value``, ``quality`` and ``historical``,
plus the gateway's status block. The answer lists ``accepted`` and ``duplicates`` (both acknowledge the reading
to the edge) and ``unknown``: readings of points not in the registry, acknowledged (listed in ``accepted`` too,
so the edge stops resending them) but not stored.

Readings are stored whatever their order; a point's latest value is its highest ``seq``; alarm evaluation sees
only readings newer than the last evaluated ``seq`` (a late backlog is stored, not evaluated again).
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from . import clock
from .alarms import Evaluator
from .config import Config
from .errors import AuthenticationFailed, Forbidden, NotFound, ValidationFailed
from .models import Enterprise
from .models.monitoring import Device, Gateway, Point, Reading
from .org import Scope

MAX_READINGS = 5000  # per request
MAX_HISTORY = 10000
_CHUNK = 500


def _bad(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"invalid telemetry: {field} {message}", errors={field: [{"code": "invalid",
                                                                                       "message": message}]})


def _timestamp(value, field: str) -> datetime:
    if not isinstance(value, str):
        raise _bad(field, "must be an ISO 8601 time")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(field, "must be an ISO 8601 time") from None
    if ts.tzinfo is None:
        raise _bad(field, "needs a time zone (Z)")
    return ts


def parse(body) -> tuple[str, list[dict], dict | None]:
    """Check a telemetry body; returns (gateway code, readings, status) or raises ValidationFailed by field."""
    if not isinstance(body, dict) or not isinstance(body.get("gateway"), str):
        raise _bad("gateway", "is required")
    readings = body.get("readings", [])
    if not isinstance(readings, list) or len(readings) > MAX_READINGS:
        raise _bad("readings", f"must be a list of at most {MAX_READINGS}")
    out = []
    for i, r in enumerate(readings):
        where = f"readings[{i}]"
        if not isinstance(r, dict):
            raise _bad(where, "must be an object")
        if not isinstance(r.get("id"), str) or not 0 < len(r["id"]) <= 64:
            raise _bad(f"{where}.id", "must be a string of up to 64 characters")
        if not isinstance(r.get("point"), str) or not r["point"]:
            raise _bad(f"{where}.point", "is required")
        if not isinstance(r.get("seq"), int) or isinstance(r["seq"], bool) or r["seq"] < 0:
            raise _bad(f"{where}.seq", "must be a whole number ≥ 0")
        value = r.get("value")
        if isinstance(value, bool):
            value = float(value)
        elif value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value)):
            # NaN would never cross a limit and cannot be written back as JSON; a bad sensor sends null
            raise _bad(f"{where}.value", "must be a finite number, a boolean or null")
        out.append({"id": r["id"], "point": r["point"], "seq": r["seq"], "ts": _timestamp(r.get("ts"), f"{where}.ts"),
                    "value": float(value) if value is not None else None,
                    "quality": str(r.get("quality") or "good")[:16], "historical": bool(r.get("historical"))})
    status = body.get("status")
    if status is not None and not isinstance(status, dict):
        raise _bad("status", "must be an object")
    devices = (status or {}).get("devices") or {}
    if not isinstance(devices, dict) or any(not isinstance(n, str) or not 0 < len(n) <= 100 for n in devices):
        raise _bad("status.devices", "must map device names of up to 100 characters to a state")
    return body["gateway"], out, status


def ingest(session: Session, config: Config, gateway: Gateway, body) -> dict:
    """Store a batch of readings once each, update latest values, evaluate alarms and the gateway's status."""
    code, readings, status = parse(body)
    if code != gateway.code:
        raise Forbidden("this credential belongs to another gateway", code="gateway_mismatch")
    # Every ingest updates its gateway's row, so two ingests of one gateway (a batch resent while the first delivery
    # is still in flight) never commit side by side anyway. Taking that row lock first costs no concurrency and lets
    # this one read its points (latest and evaluated seq, alarm state) as the other left them.
    token_hash = gateway.token_hash
    session.refresh(gateway, with_for_update=True)
    if not gateway.enabled or gateway.token_hash != token_hash:  # disabled or its credential rotated meanwhile
        raise AuthenticationFailed("unknown or disabled gateway credential", code="gateway_token_invalid")
    now = clock.now()
    names = {r["point"] for r in readings}
    points = {p.name: p for chunk in _chunks(sorted(names)) for p in session.scalars(
        select(Point).where(Point.gateway_id == gateway.id, Point.name.in_(chunk)))}
    first: dict[str, dict] = {}  # an id repeated within the batch is stored as its first occurrence
    for r in readings:
        first.setdefault(r["id"], r)
    new = _insert_new(session, [
        {"reading_id": i, "point_id": points[r["point"]].id, "seq": r["seq"], "ts": r["ts"], "value": r["value"],
         "quality": r["quality"], "historical": r["historical"]}
        for i, r in first.items() if r["point"] in points], now)
    accepted, duplicates, unknown = [], [], []
    by_point: dict[int, list] = {}
    for r in readings:
        point = points.get(r["point"])
        if first[r["id"]] is not r or (point is not None and r["id"] not in new):
            duplicates.append(r["id"])
            continue
        accepted.append(r["id"])
        if point is None:
            unknown.append(r["id"])
            continue
        by_point.setdefault(point.id, []).append((r["seq"], r["ts"], r["value"], r["quality"]))
        if point.last_seq is None or r["seq"] > point.last_seq:
            point.last_seq, point.last_value, point.last_ts, point.last_quality = \
                r["seq"], r["value"], r["ts"], r["quality"]
    evaluator = Evaluator(session, config)
    by_id = {p.id: p for p in points.values()}
    for point_id, batch in by_point.items():
        evaluator.readings(by_id[point_id], batch)
    gateway.last_seen_at = now
    evaluator.heard(gateway, now)  # readings or a heartbeat alike: the gateway is not silent
    if status is not None:
        previous, gateway.health = gateway.health, status
        devices = status.get("devices")
        # The same devices in the same states as the last status block: their rows exist and hold those states, so
        # there is nothing to create, raise or return (most batches; this skips a SELECT of the gateway's devices).
        if isinstance(devices, dict) and devices != (previous or {}).get("devices"):
            known = {d.name: d for d in session.scalars(select(Device).where(Device.gateway_id == gateway.id))}
            for name, state in devices.items():
                device = known.get(name)
                if device is None:
                    device = Device(gateway_id=gateway.id, name=name)
                    session.add(device)
                    session.flush()
                evaluator.device_status(device, gateway, state, now)
    session.flush()
    evaluator.start_processes()
    return {"accepted": accepted, "duplicates": duplicates, "unknown": unknown}


# PostgreSQL takes a batch as eight arrays: one short statement whatever the batch size, so psycopg and the server
# prepare it once. A multi-row VALUES insert of 100 readings (800 parameters) was split and parsed again for every
# batch and cost about a third of the batch's time.
_INSERT_ARRAYS = text("""
    INSERT INTO reading (reading_id, point_id, seq, ts, value, quality, historical, received_at)
    SELECT r.*, CAST(:received_at AS timestamptz)
    FROM unnest(CAST(:reading_id AS varchar[]), CAST(:point_id AS integer[]), CAST(:seq AS bigint[]),
                CAST(:ts AS timestamptz[]), CAST(:value AS double precision[]), CAST(:quality AS varchar[]),
                CAST(:historical AS boolean[])) AS r
    ON CONFLICT (reading_id) DO NOTHING RETURNING reading_id""")
_ARRAY_COLUMNS = ("reading_id", "point_id", "seq", "ts", "value", "quality", "historical")


def _insert_new(session: Session, rows: list[dict], received_at: datetime) -> set[str]:
    """Insert the rows whose reading_id is not stored yet; returns the reading_ids inserted."""
    if not rows:
        return set()
    # On PostgreSQL an id that another open transaction is inserting (the same id through another gateway) makes
    # this insert wait for that one's outcome rather than fail, and skip the row only if it committed.
    if session.bind.dialect.name == "postgresql":
        params = {c: [r[c] for r in rows] for c in _ARRAY_COLUMNS}
        return set(session.connection().scalars(_INSERT_ARRAYS, {**params, "received_at": received_at}))
    stmt = sqlite.insert(Reading).on_conflict_do_nothing(index_elements=[Reading.reading_id])
    return set(session.scalars(stmt.returning(Reading.reading_id), [{**r, "received_at": received_at} for r in rows]))


def _chunks(values: list, size: int = _CHUNK):
    for i in range(0, len(values), size):
        yield values[i:i + size]


def point_in_scope(session: Session, user, point_id: int) -> Point:
    """A point whose enterprise is in the user's data scope; NotFound otherwise (scope is never revealed)."""
    row = session.execute(select(Point, Enterprise.region_code).join(Enterprise, Enterprise.id == Point.enterprise_id)
                          .where(Point.id == point_id)).first()
    if row is None or not Scope(session, user).allows(row[1], row[0].enterprise_id):
        raise NotFound(f"point {point_id} not found")
    return row[0]


def latest(session: Session, user, point_id: int) -> dict:
    """The point's latest value (highest seq) with its limits."""
    point = point_in_scope(session, user, point_id)
    return {"point_id": point.id, "name": point.name, "label": point.label, "unit": point.unit,
            "seq": point.last_seq, "ts": point.last_ts, "value": point.last_value, "quality": point.last_quality,
            "limits": {k: getattr(point, k) for k in ("lolo", "lo", "hi", "hihi")}}


def history(session: Session, user, point_id: int, since: datetime | None = None, until: datetime | None = None,
            limit: int = MAX_HISTORY) -> list[Reading]:
    """The point's readings in [since, until) by time (default: the last 24 hours), at most ``limit``."""
    point = point_in_scope(session, user, point_id)
    until = until or clock.now()
    since = since or until - timedelta(hours=24)
    if since >= until:
        raise ValidationFailed("'from' must be before 'to'", errors={"from": [{"code": "range", "message": ""}]})
    return list(session.scalars(select(Reading).where(Reading.point_id == point.id, Reading.ts >= since,
                                                      Reading.ts < until)
                                .order_by(Reading.ts, Reading.seq).limit(min(limit, MAX_HISTORY))))

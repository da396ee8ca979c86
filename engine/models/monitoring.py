"""Monitoring: gateways, devices, points, readings, alarms and their events, aggregation rules."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, event
from sqlalchemy.orm import Mapped, Session, mapped_column

from .base import Base, JSONType, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER primary keys


class Gateway(Base):
    """An on-site edge host of one enterprise; it authenticates with a token stored only as its sha256."""

    __tablename__ = "gateway"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    health: Mapped[dict | None] = mapped_column(JSONType)  # the last status block the gateway sent
    # Loss of monitoring (engine.alarms): heard nothing, readings or heartbeat, for silent_after_s (None: the platform
    # default) raises the gateway's silence alarm. silent_due_at is when that happens unless the gateway is heard
    # before: set by every ingest, None before the first and while the alarm of the current silence stands.
    silent_after_s: Mapped[int | None] = mapped_column(Integer)
    silent_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class MonitoredItem(Base):
    """A monitored item of an enterprise (坝体位移, 浸润线 …): the unit that aggregation rules count points in."""

    __tablename__ = "monitored_item"
    __table_args__ = (UniqueConstraint("enterprise_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")


class Device(Base):
    """A device behind a gateway (a PLC, a gas-detector controller); online/offline as the gateway reports."""

    __tablename__ = "device"
    __table_args__ = (UniqueConstraint("gateway_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    gateway_id: Mapped[int] = mapped_column(ForeignKey("gateway.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="unknown")  # unknown | online | offline
    status_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Point(Base):
    """A measured point, named ``<device>.<point>`` as the edge sends it, with its limits and anti-chatter settings.

    Each limit (lolo/lo/hi/hihi) has a grade 1-4 (一级 red … 四级 blue); a limit left empty is not monitored."""

    __tablename__ = "point"
    __table_args__ = (UniqueConstraint("gateway_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    gateway_id: Mapped[int] = mapped_column(ForeignKey("gateway.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"), index=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id"), index=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("monitored_item.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(200), default="")
    indicator_code: Mapped[str] = mapped_column(String(64), default="")
    unit: Mapped[str] = mapped_column(String(32), default="")
    lolo: Mapped[float | None] = mapped_column(Float)
    lolo_grade: Mapped[int | None] = mapped_column(Integer)
    lo: Mapped[float | None] = mapped_column(Float)
    lo_grade: Mapped[int | None] = mapped_column(Integer)
    hi: Mapped[float | None] = mapped_column(Float)
    hi_grade: Mapped[int | None] = mapped_column(Integer)
    hihi: Mapped[float | None] = mapped_column(Float)
    hihi_grade: Mapped[int | None] = mapped_column(Integer)
    deadband: Mapped[float] = mapped_column(Float, default=0.0)
    on_delay_s: Mapped[float] = mapped_column(Float, default=0.0)
    off_delay_s: Mapped[float] = mapped_column(Float, default=0.0)
    # Alarm annunciation: shelved until a time (operator), suppressed by design, or out of service.
    shelved_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    suppressed: Mapped[bool] = mapped_column(Boolean, default=False)
    out_of_service: Mapped[bool] = mapped_column(Boolean, default=False)
    # The latest value is the one with the highest seq, not the last to arrive.
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    last_value: Mapped[float | None] = mapped_column(Float)
    last_ts: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_quality: Mapped[str | None] = mapped_column(String(16))
    evaluated_seq: Mapped[int | None] = mapped_column(BigInteger)  # readings up to here went through the alarm rules
    eval_state: Mapped[dict | None] = mapped_column(JSONType)  # per condition: on-delay / off-delay start times
    eval_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)  # a delay or shelve ends


class Reading(Base):
    """One reading as the gateway sent it; ``reading_id`` (the edge's uuid) makes ingest idempotent."""

    __tablename__ = "reading"
    __table_args__ = (Index("ix_reading_point_ts", "point_id", "ts"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reading_id: Mapped[str] = mapped_column(String(64), unique=True)
    point_id: Mapped[int] = mapped_column(ForeignKey("point.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    value: Mapped[float | None] = mapped_column(Float)
    quality: Mapped[str] = mapped_column(String(16), default="good")
    historical: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Alarm(Base):
    """One alarm occurrence of a point's condition (hihi/hi/lo/lolo), a device going offline, an item's aggregate,
    or a whole gateway gone silent (loss of monitoring).

    ``state`` (ISA-18.2): unack (active, unacknowledged) → ack → rtn (returned, acknowledged, handling goes on);
    unack → rtn_unack (returned before anyone acknowledged) → rtn; any → closed. ``open_key`` is set while the
    alarm is not closed, and unique: one open alarm per (point, condition), device, item or gateway."""

    __tablename__ = "alarm"
    __table_args__ = (Index("ix_alarm_region_raised", "region_code", "raised_at"),
                      Index("ix_alarm_enterprise_raised", "enterprise_id", "raised_at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    open_key: Mapped[str | None] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # limit | offline | aggregate | gateway_silent
    condition: Mapped[str] = mapped_column(String(16))  # hihi | hi | lo | lolo | offline | aggregate | gateway_silent
    point_id: Mapped[int | None] = mapped_column(ForeignKey("point.id", ondelete="SET NULL"), index=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("device.id", ondelete="SET NULL"), index=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("monitored_item.id", ondelete="SET NULL"), index=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id"))
    region_code: Mapped[str] = mapped_column(String(12))
    industry: Mapped[str] = mapped_column(String(50), default="")
    grade: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="unack")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    value: Mapped[float | None] = mapped_column(Float)  # the value that raised it
    limit: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(32), default="")
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acked_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    rtn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    activations: Mapped[int] = mapped_column(Integer, default=1)  # raised, returned and raised again = 2
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instance.id", ondelete="SET NULL"),
                                                    index=True)


class AlarmEvent(Base):
    """Every alarm transition and registry action on a point's annunciation, with actor and time."""

    __tablename__ = "alarm_event"
    __table_args__ = (Index("ix_alarm_event_alarm", "alarm_id", "id"), Index("ix_alarm_event_at", "at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    alarm_id: Mapped[int | None] = mapped_column(ForeignKey("alarm.id", ondelete="CASCADE"))
    point_id: Mapped[int | None] = mapped_column(ForeignKey("point.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    actor_name: Mapped[str] = mapped_column(String(100), default="")
    detail: Mapped[dict | None] = mapped_column(JSONType)
    reason: Mapped[str | None] = mapped_column(Text)


class AggregationRule(Base):
    """GB 51108-style aggregation as data: ``count`` points of one item at grade ``grade`` (or worse) raise the
    item's alarm to ``result_grade``; ``industry`` limits the rule to enterprises of one industry ('' = all)."""

    __tablename__ = "aggregation_rule"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    industry: Mapped[str] = mapped_column(String(50), default="")
    grade: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    result_grade: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


def alarms_follow_processes(session) -> None:
    """Acknowledging or ending an alarm_closure process updates its alarm (see engine.alarms.sync_from_flush).
    Runs before every flush, and before a step writes its own rows with Core (engine.runtime.Step.save)."""
    if any(type(o).__name__ in ("HumanTask", "ProcessInstance") for o in session.dirty):
        from ..alarms import sync_from_flush

        sync_from_flush(session)


@event.listens_for(Session, "before_flush")
def _before_flush(session, flush_context, instances):
    alarms_follow_processes(session)

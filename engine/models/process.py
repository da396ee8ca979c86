"""Deployed process models, their immutable versions, and running instances."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, deferred, mapped_column

from .base import Base, JSONType, UTCDateTime, utcnow


class ProcessModel(Base):
    __tablename__ = "process_model"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ProcessVersion(Base):
    """One immutable deployment: BPMN files, forms and metadata, identified by a sha256."""

    __tablename__ = "process_version"
    __table_args__ = (
        UniqueConstraint("process_key", "version"),
        UniqueConstraint("process_key", "sha256", name="uq_process_version_key_sha"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    process_key: Mapped[str] = mapped_column(ForeignKey("process_model.key"))
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    files: Mapped[dict] = deferred(mapped_column(JSONType))
    spec_json: Mapped[str] = deferred(mapped_column(Text))
    meta: Mapped[dict] = mapped_column(JSONType)
    deployed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ProcessInstance(Base):
    """A running (or finished) instance; its workflow state is stored without the spec."""

    __tablename__ = "process_instance"
    __table_args__ = (
        Index("ix_instance_timer", "next_timer_at"),
        Index("ix_instance_region_created", "region_code", "created_at"),
        Index("ix_instance_process_status", "process_key", "status"),
        # Every step rewrites the row (its state is about 1 KB compressed): room on the page keeps the update
        # HOT, so none of its eight indexes gets a new entry (migration 0012).
        {"postgresql_with": {"fillfactor": 70}},
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    process_key: Mapped[str] = mapped_column(ForeignKey("process_model.key"))
    version_id: Mapped[int] = mapped_column(ForeignKey("process_version.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    business_key: Mapped[str | None] = mapped_column(String(128), index=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    region_code: Mapped[str] = mapped_column(ForeignKey("region.code"))
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprise.id"), index=True)
    initiator_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"))
    state: Mapped[str] = deferred(mapped_column(Text))
    lock_version: Mapped[int] = mapped_column(Integer, default=1)
    next_timer_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    last_event_hash: Mapped[str] = mapped_column(String(64), default="")
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # True while subscription rows exist, so a step with nothing to subscribe skips their DELETE.
    waits_for_messages: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    completed_elements: Mapped[list] = mapped_column(JSONType, default=list)
    active_elements: Mapped[list] = mapped_column(JSONType, default=list)

    # Every UPDATE checks and bumps lock_version: a stale write fails instead of overwriting.
    __mapper_args__ = {"version_id_col": lock_version}


class MessageSubscription(Base):
    """An instance waiting for a message with given correlation values (O(1) matching)."""

    __tablename__ = "message_subscription"
    __table_args__ = (Index("ix_subscription_match", "message_name", "correlation_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id", ondelete="CASCADE"), index=True)
    message_name: Mapped[str] = mapped_column(String(128))
    correlation_key: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

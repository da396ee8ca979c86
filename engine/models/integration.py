"""Integration state: stored connector configuration, encrypted secrets, incidents and the ministry's instructions."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, JSONType, UTCDateTime, utcnow


class ConnectorConfig(Base):
    """A connector's configuration; secrets appear only as references ``{"$secret": "name"}``."""

    __tablename__ = "connector_config"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    config: Mapped[dict] = mapped_column(JSONType, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    timeout: Mapped[float | None] = mapped_column(Float)  # seconds per attempt, overriding the operation's
    retries: Mapped[int | None] = mapped_column(Integer)  # attempts after the first, overriding the operation's
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))


class Secret(Base):
    """A named secret, encrypted at rest with the key from the environment (Fernet)."""

    __tablename__ = "secret"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))


class Incident(Base):
    """Something that stopped an instance and needs an administrator: retry it, or skip it with a reason."""

    __tablename__ = "incident"
    __table_args__ = (Index("ix_incident_open", "resolved_at", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(String(36))
    task_id: Mapped[str | None] = mapped_column(String(36))
    bpmn_id: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))  # service_task, timer, timeout
    operation: Mapped[str | None] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    resolution: Mapped[str | None] = mapped_column(String(16))  # retried, skipped
    reason: Mapped[str | None] = mapped_column(Text)


class MinistryInstruction(Base):
    """A ministry instruction that was delivered: its digest is the key, so the same instruction again delivers
    nothing. Kept for good (a handful a day), which is what makes a replay of any age harmless."""

    __tablename__ = "ministry_instruction"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the canonical instruction
    incident_id: Mapped[str] = mapped_column(String(100))
    delivered: Mapped[list] = mapped_column(JSONType, default=list)  # the instance ids it reached
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

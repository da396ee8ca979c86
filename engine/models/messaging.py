"""Unified messages: per-user channel preferences, SMS delivery records and rate-limit counters."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, JSONType, UTCDateTime, utcnow


class UserChannelPref(Base):
    """Which channels one user wants for one message category; no row means the category's default."""

    __tablename__ = "user_channel_pref"
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    channels: Mapped[list] = mapped_column(JSONType, default=list)  # "inapp", "sms"
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SmsMessage(Base):
    """One text message to one number, from queued through the gateway's delivery receipt."""

    __tablename__ = "sms_message"
    __table_args__ = (UniqueConstraint("job_id", "to", name="uq_sms_message_job_to"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36))
    to: Mapped[str] = mapped_column(String(20))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    template: Mapped[str] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued sent delivered failed
    error: Mapped[str | None] = mapped_column(String(300))
    gateway_id: Mapped[str | None] = mapped_column(String(64), index=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instance.id", ondelete="CASCADE"),
                                                    index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    receipt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the gateway's final word arrived
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RateLimitHit(Base):
    """One counted use of a rate-limited key, once per idempotency key so a retried call is not counted again."""

    __tablename__ = "rate_limit_hit"
    __table_args__ = (UniqueConstraint("key", "idempotency_key", name="uq_rate_limit_hit_key"),
                      Index("ix_rate_limit_hit_window", "key", "at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(128))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

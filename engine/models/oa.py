"""The OA integration's own state: which OA documents were received, and where polling stands."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow


class OaDocument(Base):
    """An OA document received once: its id is the key, so a repeated webhook or poll starts nothing new."""

    __tablename__ = "oa_document"
    oa_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instance.id", ondelete="SET NULL"))
    via: Mapped[str] = mapped_column(String(16))  # webhook | poll
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OaPollState(Base):
    """Where polling the OA stands: the cursor to ask with next, when it last ran, and its failures in a row."""

    __tablename__ = "oa_poll_state"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)

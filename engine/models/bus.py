"""The service bus (服务总线): the catalogue of services, the consumers that call them, and the call log."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, JSONType, UTCDateTime, utcnow


class BusService(Base):
    """A service in the catalogue: an outside REST or SOAP service, or an internal one published on the bus.

    ``definition`` depends on ``kind``: rest {base_url, auth, operations {name: {method, path, params,
    result}}}; soap {wsdl, auth, operations}; connector {operations {name: {operation: 'connector/Op'}}};
    process {operations {name: {process_key, outputs}}}; query {operations {name: {process_key, fields,
    filters}}}. Secrets appear only as {"$secret": name}.
    """

    __tablename__ = "bus_service"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    definition: Mapped[dict] = mapped_column(JSONType, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))


class BusConsumer(Base):
    """An outside caller of the gateway: its API key (stored as a hash), permissions and rate limit.

    Internal services (process, query) run as ``run_as``, so the platform's permissions and data scope
    apply to what a consumer can start or read."""

    __tablename__ = "bus_consumer"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    permissions: Mapped[list] = mapped_column(JSONType, default=list)  # "service/operation" or "service/*"
    rate_per_minute: Mapped[int] = mapped_column(Integer, default=600)
    run_as_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BusCall(Base):
    """One call through the gateway, with secrets removed from what is kept of request and response."""

    __tablename__ = "bus_call"
    __table_args__ = (Index("ix_bus_call_at", "at"), Index("ix_bus_call_service_at", "service", "at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    service: Mapped[str] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(128))
    consumer_id: Mapped[int | None] = mapped_column(ForeignKey("bus_consumer.id", ondelete="SET NULL"))
    protocol: Mapped[str] = mapped_column(String(8), default="json")  # json or soap (how the caller spoke)
    ok: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    request: Mapped[str] = mapped_column(Text, default="")
    response: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)

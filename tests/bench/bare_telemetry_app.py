"""The bare stack bench_telemetry.py compares emflow's telemetry ingest with: Flask + gunicorn + SQLAlchemy Core +
PostgreSQL doing only the essential work of storing a batch of readings once each. No ORM, no point registry, no
latest values, no alarm evaluation, no gateway row lock, no status block.

- ``POST /bare/telemetry`` (the gateway's bearer token, the same JSON body as ``POST /api/v1/telemetry``):
  the token's sha256 looked up in ``bare_gateway`` (one indexed SELECT, as emflow does), the body's gateway code
  checked against it, each reading's ``ts`` parsed, then one ``INSERT … ON CONFLICT (reading_id) DO NOTHING
  RETURNING reading_id`` of the whole batch into ``bare_reading``, COMMIT. The answer has emflow's shape:
  ``{"accepted": [...], "duplicates": [...], "unknown": []}``.

Run by bench_telemetry.py as ``gunicorn 'bare_telemetry_app:create_app()'`` with BARE_DATABASE_URL set; the
tables are created by bench_telemetry.py (see SCHEMA).
"""
from __future__ import annotations

import hashlib
import os
from datetime import datetime

from flask import Flask, abort, request
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    text,
)
from sqlalchemy.dialects.postgresql import insert

SCHEMA = """
CREATE TABLE IF NOT EXISTS bare_gateway (
    id serial PRIMARY KEY, code varchar(64) NOT NULL UNIQUE, token_hash varchar(64) NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS bare_reading (
    id bigserial PRIMARY KEY, reading_id varchar(64) NOT NULL UNIQUE, gateway_id integer NOT NULL,
    point varchar(200) NOT NULL, seq bigint NOT NULL, ts timestamptz NOT NULL, value double precision,
    quality varchar(16) NOT NULL, historical boolean NOT NULL, received_at timestamptz NOT NULL DEFAULT now());
"""

READING = Table("bare_reading", MetaData(),
                Column("id", BigInteger, primary_key=True), Column("reading_id", String(64)),
                Column("gateway_id", Integer), Column("point", String(200)), Column("seq", BigInteger),
                Column("ts", DateTime(timezone=True)), Column("value", Float), Column("quality", String(16)),
                Column("historical", Boolean))
GATEWAY = text("SELECT id, code FROM bare_gateway WHERE token_hash = :h")


def create_app() -> Flask:
    engine = create_engine(os.environ["BARE_DATABASE_URL"], pool_size=5, max_overflow=10)
    store = insert(READING).on_conflict_do_nothing(index_elements=["reading_id"]).returning(READING.c.reading_id)
    app = Flask(__name__)

    @app.get("/bare/health")
    def health():
        return {"ok": True}

    @app.post("/bare/telemetry")
    def telemetry():
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer "):
            abort(401)
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("readings"), list):
            abort(422)
        token_hash = hashlib.sha256(header[7:].strip().encode()).hexdigest()
        with engine.begin() as conn:
            gateway = conn.execute(GATEWAY, {"h": token_hash}).first()
            if gateway is None:
                abort(401)
            if body.get("gateway") != gateway.code:
                abort(403)
            try:
                rows = [{"reading_id": r["id"], "gateway_id": gateway.id, "point": r["point"], "seq": r["seq"],
                         "ts": datetime.fromisoformat(r["ts"].replace("Z", "+00:00")), "value": r.get("value"),
                         "quality": r.get("quality") or "good", "historical": bool(r.get("historical"))}
                        for r in body["readings"]]
            except (KeyError, TypeError, ValueError, AttributeError):
                abort(422)
            new = set(conn.scalars(store, rows)) if rows else set()
        accepted = [r["reading_id"] for r in rows if r["reading_id"] in new]
        duplicates = [r["reading_id"] for r in rows if r["reading_id"] not in new]
        return {"accepted": accepted, "duplicates": duplicates, "unknown": []}

    return app

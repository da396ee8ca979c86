"""The bare stack bench_http.py compares emflow with: Flask + gunicorn + SQLAlchemy Core + PostgreSQL doing only
the SpiffWorkflow work of a completion and only the indexed SELECTs of an inbox read. No ORM, no forms, no
assignment rules, no audit chain, no data-scope checks.

- ``POST /bare/instances/<id>/complete`` (bearer token, JSON ``{"data": {...}}``): SELECT … FOR UPDATE of the
  serialized workflow, ``BpmnWorkflowSerializer.deserialize_json``, run the ready user task with the data and
  ``do_engine_steps``, ``serialize_json``, UPDATE the row, INSERT an event row, COMMIT.
- ``GET /bare/tasks`` (bearer token): the two statements of emflow's ``scope=mine`` inbox (count and the first
  page of 20 open tasks assigned to the caller) on emflow's own ``human_task`` table and index.

Tokens are emflow's own format (itsdangerous, same secret and salt), checked by signature only (emflow also
loads the user). Run by bench_http.py as ``gunicorn 'bare_app:create_app()'`` with BARE_DATABASE_URL and
BARE_SECRET_KEY set; the tables are created by bench_http.py (see SCHEMA).
"""
from __future__ import annotations

import json
import os

from flask import Flask, abort, jsonify, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import create_engine, text

SCHEMA = """
CREATE TABLE IF NOT EXISTS bare_instance (
    id serial PRIMARY KEY, owner_id integer NOT NULL, version integer NOT NULL DEFAULT 1, state text NOT NULL);
CREATE TABLE IF NOT EXISTS bare_event (
    id bigserial PRIMARY KEY, instance_id integer NOT NULL REFERENCES bare_instance (id), task_id varchar(36),
    actor_id integer, at timestamptz NOT NULL DEFAULT now(), data jsonb NOT NULL);
CREATE INDEX IF NOT EXISTS ix_bare_event_instance ON bare_event (instance_id);
"""

LOCK = text("SELECT owner_id, state FROM bare_instance WHERE id = :id FOR UPDATE")
SAVE = text("UPDATE bare_instance SET state = :state, version = version + 1 WHERE id = :id")
EVENT = text("INSERT INTO bare_event (instance_id, task_id, actor_id, data) VALUES (:id, :task, :actor, :data)")
COUNT = text("SELECT count(*) FROM human_task WHERE assignee_id = :uid AND state = 'open'")
PAGE = text("""SELECT id, instance_id, process_key, process_name, instance_title, bpmn_id, name, state, created_at,
                      due_at FROM human_task WHERE assignee_id = :uid AND state = 'open'
               ORDER BY created_at DESC, id LIMIT 20""")


def create_app() -> Flask:
    url = os.environ["BARE_DATABASE_URL"]
    engine = create_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True)
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))
    tokens = URLSafeTimedSerializer(os.environ["BARE_SECRET_KEY"], salt="emflow-api-token")
    app = Flask(__name__)
    app.config["BARE_ENGINE"] = engine  # for bench_http's in-process breakdown

    def caller() -> int:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer "):
            abort(401)
        try:
            return int(tokens.loads(header[7:].strip(), max_age=8 * 3600)["u"])
        except (BadSignature, KeyError, TypeError, ValueError):
            abort(401)

    @app.get("/bare/health")
    def health():
        return {"ok": True}

    @app.post("/bare/instances/<int:instance_id>/complete")
    def complete(instance_id: int):
        uid = caller()
        data = (request.get_json(silent=True) or {}).get("data")
        if not isinstance(data, dict):
            abort(422)
        with engine.begin() as conn:
            row = conn.execute(LOCK, {"id": instance_id}).first()
            if row is None:
                abort(404)
            if row.owner_id != uid:
                abort(403)
            wf = serializer.deserialize_json(row.state)
            ready = wf.get_tasks(state=TaskState.READY, manual=True)
            if not ready:
                abort(409)
            task = ready[0]
            task.set_data(**data)
            task.run()
            wf.do_engine_steps()
            conn.execute(SAVE, {"state": serializer.serialize_json(wf), "id": instance_id})
            conn.execute(EVENT, {"id": instance_id, "task": str(task.id), "actor": uid,
                                 "data": json.dumps(data, ensure_ascii=False)})
        return {"id": instance_id, "completed": str(task.id), "completed_workflow": wf.is_completed()}

    @app.get("/bare/tasks")
    def inbox():
        uid = caller()
        with engine.connect() as conn:
            total = conn.scalar(COUNT, {"uid": uid})
            items = [dict(r) for r in conn.execute(PAGE, {"uid": uid}).mappings()]
        for item in items:
            item["created_at"] = item["created_at"].isoformat()
            item["due_at"] = item["due_at"].isoformat() if item["due_at"] else None
        return jsonify(items=items, total=total, page=1, per_page=20)

    return app

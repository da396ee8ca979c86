"""Append-only, hash-chained audit events: tampering with any stored event breaks the chain."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from . import rowwrites
from .models import ChainHead, InstanceEvent, ProcessInstance, SystemEvent, User, utcnow


def _digest(prev_hash: str, fields: dict[str, Any]) -> str:
    body = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def _fields(e: dict) -> dict:
    return {
        "instance_id": e["instance_id"], "seq": e["seq"], "at": e["at"].isoformat(), "kind": e["kind"],
        "actor_id": e["actor_id"], "actor_name": e["actor_name"], "task_id": e["task_id"], "bpmn_id": e["bpmn_id"],
        "task_name": e["task_name"], "opinion": e["opinion"], "detail": e["detail"],
    }


def _instance_fields(e: InstanceEvent) -> dict:
    return _fields({c: getattr(e, c) for c in _HASHED})


_HASHED = ("instance_id", "seq", "at", "kind", "actor_id", "actor_name", "task_id", "bpmn_id", "task_name",
           "opinion", "detail")
# Events wait in session.info until the session flushes, then go in as one Core INSERT: nothing reads the
# event objects back, and the ORM unit of work per event costs more than the event itself.
_PENDING = "audit_pending_events"


def record(session: Session, instance: ProcessInstance, kind: str, actor: User | None = None, *,
           task_id: str | None = None, bpmn_id: str | None = None, task_name: str | None = None,
           opinion: str | None = None, **detail) -> None:
    """Append an event to the instance's chain; the caller holds the instance lock. The row is written
    with the step's own rows or the session's next flush (it names only the instance and users, which exist)."""
    # Store exactly what is hashed: a JSON copy, detached from objects the workflow may still change.
    detail = json.loads(json.dumps(detail, ensure_ascii=False, default=str))
    instance.event_count += 1  # also marks the instance dirty, so the session will flush
    row = {
        "instance_id": instance.id, "seq": instance.event_count, "at": utcnow(), "kind": kind,
        "actor_id": actor.id if actor else None, "actor_name": actor.name if actor else "",
        "task_id": task_id, "bpmn_id": bpmn_id, "task_name": task_name, "opinion": opinion, "detail": detail,
        "prev_hash": instance.last_event_hash,
    }
    row["hash"] = _digest(row["prev_hash"], _fields(row))
    instance.last_event_hash = row["hash"]
    session.info.setdefault(_PENDING, []).append(row)


def write_pending(session: Session) -> None:
    """Write the events recorded since the last flush (a flush does it too)."""
    events = session.info.pop(_PENDING, None)
    if events:
        rowwrites.insert_rows(session, InstanceEvent.__table__, events)


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context) -> None:
    write_pending(session)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    # Normally the flush writes them; this covers a session with nothing else left to flush.
    if session.info.get(_PENDING):
        session.flush()
        write_pending(session)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, _previous) -> None:
    # A rollback (also of a savepoint, which began with a flush) discards the events not yet written.
    session.info.pop(_PENDING, None)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction) -> None:
    # Closing a session without committing discards them too (read sessions write nothing).
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def verify_instance(session: Session, instance_id: int) -> int | None:
    """Return the seq of the first event that does not match its chain, or None if intact.
    The chain must also end at the head kept on the instance row, so deleting the newest events shows."""
    prev, seq = "", 0
    for e in session.scalars(select(InstanceEvent).where(InstanceEvent.instance_id == instance_id)
                             .order_by(InstanceEvent.seq)):
        if e.prev_hash != prev or e.hash != _digest(prev, _instance_fields(e)):
            return e.seq
        prev, seq = e.hash, e.seq
    head = session.scalar(select(ProcessInstance.last_event_hash).where(ProcessInstance.id == instance_id))
    return seq + 1 if head is not None and head != prev else None


def _system_fields(e: SystemEvent) -> dict:
    return {"seq": e.seq, "at": e.at.isoformat(), "kind": e.kind, "actor_id": e.actor_id,
            "actor_name": e.actor_name, "target": e.target, "detail": e.detail}


def record_system(session: Session, kind: str, actor: User | None = None, target: str = "", **detail) -> None:
    """Append to the system-wide chain (logins, deployments, admin actions), serialised by a row lock."""
    head = session.scalars(select(ChainHead).where(ChainHead.name == "system").with_for_update()).first()
    if head is None:
        head = ChainHead(name="system", seq=0, hash="")
        session.add(head)
        session.flush()
    event = SystemEvent(seq=head.seq + 1, at=utcnow(), kind=kind, actor_id=actor.id if actor else None,
                        actor_name=actor.name if actor else "", target=target, detail=detail,
                        prev_hash=head.hash)
    event.hash = _digest(event.prev_hash, _system_fields(event))
    head.seq, head.hash = event.seq, event.hash
    session.add(event)


def verify_system(session: Session) -> int | None:
    """Return the seq of the first broken system event, or None if the chain is intact (up to its head)."""
    prev, seq = "", 0
    for e in session.scalars(select(SystemEvent).order_by(SystemEvent.seq)):
        if e.prev_hash != prev or e.hash != _digest(prev, _system_fields(e)):
            return e.seq
        prev, seq = e.hash, e.seq
    head = session.scalar(select(ChainHead.hash).where(ChainHead.name == "system"))
    return seq + 1 if head is not None and head != prev else None

"""Turning engine rows into API dictionaries, with batched lookups of names."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.models import Group, HumanTask, ProcessInstance, TaskCandidate, User


def page(items, total: int, page_no: int, per_page: int) -> dict:
    return {"items": items, "page": page_no, "per_page": per_page, "total": total}


def tasks_out(session: Session, rows: list[HumanTask]) -> list[dict]:
    ids = [t.id for t in rows]
    cands = session.execute(select(TaskCandidate.task_id, User.username, Group.code)
                            .outerjoin(User, User.id == TaskCandidate.user_id)
                            .outerjoin(Group, Group.id == TaskCandidate.group_id)
                            .where(TaskCandidate.task_id.in_(ids))).all() if ids else []
    user_ids = {t.assignee_id for t in rows} | {t.completed_by_id for t in rows}
    names = dict(session.execute(select(User.id, User.username).where(User.id.in_(user_ids - {None}))).all()) \
        if user_ids - {None} else {}
    out = []
    for t in rows:
        out.append({
            "id": t.id, "instance_id": t.instance_id, "process_key": t.process_key, "process_name": t.process_name,
            "instance_title": t.instance_title, "bpmn_id": t.bpmn_id, "name": t.name, "state": t.state,
            "assignee": names.get(t.assignee_id), "loop_item": t.loop_item, "assignment_error": t.assignment_error,
            "candidates": [u for tid, u, _ in cands if tid == t.id and u],
            "candidate_groups": [g for tid, _, g in cands if tid == t.id and g],
            "created_at": t.created_at, "due_at": t.due_at, "completed_by": names.get(t.completed_by_id),
            "completed_at": t.completed_at, "opinion": t.opinion,
        })
    return out


def instance_out(session: Session, inst: ProcessInstance, version: int) -> dict:
    initiator = session.scalar(select(User.username).where(User.id == inst.initiator_id)) if inst.initiator_id else None
    return {
        "id": inst.id, "process_key": inst.process_key, "version": version, "status": inst.status,
        "business_key": inst.business_key, "title": inst.title, "region_code": inst.region_code,
        "initiator": initiator, "created_at": inst.created_at, "updated_at": inst.updated_at,
        "ended_at": inst.ended_at, "error": inst.error,
    }

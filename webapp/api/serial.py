"""Turning engine rows into API dictionaries, with batched lookups of names."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.models import Group, HumanTask, ProcessInstance, TaskCandidate, User
from engine.tasks import known_open_tasks
from engine.versions import VERSIONS

from ..platform import platform


def username_of(session: Session, user_id: int) -> str:
    """Usernames never change once created, so the app remembers them."""
    known = platform().usernames
    name = known.get(user_id)
    if name is None:
        name = known[user_id] = session.scalar(select(User.username).where(User.id == user_id))
    return name


def page(items, total: int, page_no: int, per_page: int) -> dict:
    return {"items": items, "page": page_no, "per_page": per_page, "total": total}


def tasks_out(session: Session, rows: list[HumanTask]) -> list[dict]:
    """Tasks as API dicts, with usernames from the app's cache (one query for those it lacks)."""
    ids = [t.id for t in rows if t.state == "open" and t.assignee_id is None]  # only those can have candidates
    cands = session.execute(select(TaskCandidate.task_id, User.username, Group.code)
                            .outerjoin(User, User.id == TaskCandidate.user_id)
                            .outerjoin(Group, Group.id == TaskCandidate.group_id)
                            .where(TaskCandidate.task_id.in_(ids))).all() if ids else []
    names = platform().usernames
    missing = ({t.assignee_id for t in rows} | {t.completed_by_id for t in rows} | {t.owner_id for t in rows}) \
        - names.keys() - {None}
    if missing:
        names.update(session.execute(select(User.id, User.username).where(User.id.in_(missing))).all())
    users, groups = {}, {}
    for task_id, username, group in cands:
        if username:
            users.setdefault(task_id, []).append(username)
        if group:
            groups.setdefault(task_id, []).append(group)
    out = []
    for t in rows:
        out.append({
            "id": t.id, "instance_id": t.instance_id, "process_key": t.process_key, "process_name": t.process_name,
            "instance_title": t.instance_title, "bpmn_id": t.bpmn_id, "name": t.name, "state": t.state,
            "assignee": names.get(t.assignee_id), "loop_item": t.loop_item, "assignment_error": t.assignment_error,
            "candidates": users.get(t.id, []), "candidate_groups": groups.get(t.id, []),
            "created_at": t.created_at, "due_at": t.due_at, "completed_by": names.get(t.completed_by_id),
            "completed_at": t.completed_at, "opinion": t.opinion, "kind": t.kind, "parent_task_id": t.parent_task_id,
            "sign_position": t.sign_position, "delegated_by": names.get(t.owner_id), "blocked": t.blocked,
            "waiting_for_signers": t.waiting_for_signers, "returned_from": t.returned_from,
            "straight_back": t.return_to_me,
        })
    return out


def instance_out(session: Session, inst: ProcessInstance, version: int | None = None,
                 initiator: str | None = None) -> dict:
    """An instance's summary fields; the version number comes from the version cache unless given, the
    initiator's username from the username cache unless given."""
    if version is None:
        version = VERSIONS.get(session, inst.version_id).version
    if initiator is None and inst.initiator_id:
        initiator = username_of(session, inst.initiator_id)
    return {
        "id": inst.id, "process_key": inst.process_key, "version": version, "status": inst.status,
        "business_key": inst.business_key, "title": inst.title, "region_code": inst.region_code,
        "initiator": initiator, "created_at": inst.created_at, "updated_at": inst.updated_at,
        "ended_at": inst.ended_at, "error": inst.error,
    }


def instance_summary(session: Session, inst: ProcessInstance) -> dict:
    """An instance with its open tasks: what a client needs after acting on it (history is a GET away)."""
    known = platform().usernames
    initiator = known.get(inst.initiator_id) if inst.initiator_id else None
    rows = known_open_tasks(session, inst.id)  # the step that just ran may know them: then no query
    if rows is None:
        stmt = (select(HumanTask, User.id, User.username).outerjoin(User, User.id == HumanTask.assignee_id)
                .where(HumanTask.instance_id == inst.id, HumanTask.state == "open").order_by(HumanTask.created_at))
        if inst.initiator_id and initiator is None:
            # The initiator's username rides along with the tasks: one round trip instead of two.
            stmt = stmt.add_columns(select(User.username).where(User.id == inst.initiator_id)
                                    .scalar_subquery().label("initiator"))
        found = session.execute(stmt).all()
        if inst.initiator_id and initiator is None and found:
            initiator = known[inst.initiator_id] = found[0].initiator
        known.update((r[1], r[2]) for r in found if r[1])
        rows = [r[0] for r in found]
    body = instance_out(session, inst, initiator=initiator)
    body["tasks"] = tasks_out(session, rows)
    return body


def copy_out(row) -> dict:
    """A (TaskCopy, instance title, sender name, total) row from engine.operations.copies."""
    copy, title, sender = row[0], row[1], row[2]
    return {"id": copy.id, "instance_id": copy.instance_id, "instance_title": title, "task_id": copy.task_id,
            "sender": sender, "note": copy.note, "created_at": copy.created_at, "read_at": copy.read_at}


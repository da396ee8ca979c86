"""Human tasks: the inbox, reading a task with its form, claiming, and completing."""
from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, replace
from functools import lru_cache
from uuid import UUID

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import bindparam, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from . import files, notifications, signatures
from .config import Config
from .db import page_of, paginate, run_page
from .errors import Conflict, Forbidden, NotFound, ValidationFailed
from .forms import FieldError, Form, raise_for
from .models import HumanTask, ProcessInstance, ProxyGrant, TaskCandidate, TaskCopy, Unit, User, utcnow
from .org import Scope, group_ids
from .runtime import Step, instance_data
from .taskconfig import TaskConfig
from .versions import VERSIONS

SCOPES = ("mine", "group", "done", "unassigned")
# An added signer's task: sign with an opinion, that is all.
SIGNER_CONFIG = TaskConfig(buttons=("approve",), require_opinion=frozenset(), signature="optional")
OWNER_ONLY = ("reject", "return", "transfer")  # what a delegate may not do (委派: the owner decides)


def _offered_to(session: Session, user):
    # A literal list of group ids lets the planner use both candidate indexes (a sub-select would not).
    return or_(TaskCandidate.user_id == user.id, TaskCandidate.group_id.in_(group_ids(session, user)))


def _candidate_clause(session: Session, user):
    return exists().where(TaskCandidate.task_id == HumanTask.id, _offered_to(session, user))


_SUMMARY_COLUMNS = ("id", "instance_id", "process_key", "process_name", "instance_title", "bpmn_id", "name", "state",
                    "assignee_id", "loop_item", "assignment_error", "created_at", "due_at", "completed_by_id",
                    "completed_at", "opinion", "kind", "parent_task_id", "sign_position", "owner_id", "blocked",
                    "returned_from", "return_to_me")
# The API's inbox rows: the columns a task summary shows, built once (coercing columns is not free).
_PLAIN_TASKS = select(*(HumanTask.__table__.c[key] for key in _SUMMARY_COLUMNS),
                      HumanTask.pending.is_not(None).label("waiting_for_signers"))
# A page's rows as named tuples: a SQLAlchemy Row's attribute access costs ten times a tuple's, which adds up
# over a page of two dozen fields per row.
TaskSummary = namedtuple("TaskSummary", (*_SUMMARY_COLUMNS, "waiting_for_signers", "total"))


def _summaries(page: tuple[list, int]) -> tuple[list, int]:
    rows, total = page
    return [TaskSummary._make(row) for row in rows], total


@lru_cache(maxsize=8)
def _scope_page(scope: str, plain: bool):
    """The page query of a scope that depends on the user only through the ``uid`` parameter, built once."""
    base = _PLAIN_TASKS if plain else select(HumanTask)
    uid = bindparam("uid")
    if scope == "mine":
        return paginate(base.where(HumanTask.assignee_id == uid, HumanTask.state == "open"),
                        (HumanTask.created_at.desc(), HumanTask.id))
    if scope == "done":
        return paginate(base.where(HumanTask.completed_by_id == uid), (HumanTask.completed_at.desc(), HumanTask.id))
    return paginate(base.where(HumanTask.state == "open", HumanTask.assignment_error.is_not(None)),
                    (HumanTask.created_at.desc(), HumanTask.id))


def inbox(session: Session, user: User, scope: str = "mine", page: int = 1, per_page: int = 20, *,
          plain: bool = False):
    """One page of the user's tasks: mine (assigned), group (offered to claim), done; (items, total).

    ``plain``: the items are TaskSummary tuples of the attributes a task summary shows
    (webapp.api.serial.tasks_out) instead of HumanTask objects: loading rows skips the ORM's per-object work."""
    if scope == "group":
        stmt = (_PLAIN_TASKS if plain else select(HumanTask)).where(
            HumanTask.state == "open", HumanTask.assignee_id.is_(None), _candidate_clause(session, user))
        order = (HumanTask.created_at.desc(), HumanTask.id)
        if plain:  # plain columns need none of the ORM's result handling: the query runs on the connection
            return _summaries(page_of(session.connection(), stmt, order, page, per_page, entities=False))
        return page_of(session, stmt, order, page, per_page)
    if scope == "unassigned" and not user.can("instance.admin"):
        raise Forbidden("only process administrators see unassigned tasks", code="not_admin")
    if scope not in ("mine", "done", "unassigned"):
        raise ValidationFailed(f"unknown scope '{scope}'", errors={"scope": [{"code": "enum", "message": scope}]})
    if plain:
        return _summaries(run_page(session.connection(), _scope_page(scope, True), {"uid": user.id}, page, per_page,
                                   entities=False))
    return run_page(session, _scope_page(scope, False), {"uid": user.id}, page, per_page)


def counts(session: Session, user: User) -> dict[str, int]:
    """Badge numbers for the inbox tabs."""
    mine = session.scalar(select(func.count()).select_from(HumanTask).where(
        HumanTask.assignee_id == user.id, HumanTask.state == "open"))
    group = session.scalar(select(func.count()).select_from(HumanTask).where(
        HumanTask.state == "open", HumanTask.assignee_id.is_(None), _candidate_clause(session, user)))
    cc = session.scalar(select(func.count()).select_from(TaskCopy).where(TaskCopy.user_id == user.id,
                                                                        TaskCopy.read_at.is_(None)))
    return {"mine": mine, "group": group, "cc": cc}


def is_candidate(session: Session, user: User, task: HumanTask) -> bool:
    q = select(TaskCandidate.id).where(TaskCandidate.task_id == task.id, _offered_to(session, user)).limit(1)
    return session.scalar(q) is not None


def may_act(session: Session, user: User, task: HumanTask) -> bool:
    """The assignee acts; while unassigned, any candidate may (completing claims it)."""
    if task.assignee_id is not None:
        return task.assignee_id == user.id
    return is_candidate(session, user, task)


def _visible(session: Session, user: User, task: HumanTask) -> bool:
    if task.assignee_id == user.id or task.completed_by_id == user.id or user.can("instance.admin"):
        return True
    if Scope(session, user).allows(task.region_code, task.enterprise_id):
        return True
    return is_candidate(session, user, task)


def get(session: Session, user: User, task_id: str) -> HumanTask:
    """A task the user may see; NotFound otherwise."""
    task = session.get(HumanTask, task_id)
    if task is None or not _visible(session, user, task):
        raise NotFound(f"task {task_id} not found")
    return task


@dataclass
class TaskView:
    task: HumanTask
    instance: ProcessInstance
    form: Form | None
    data: dict
    can_act: bool
    candidates: list[str]
    config: TaskConfig
    signers: list[HumanTask]
    proxy_for: list[User]


def view(session: Session, config: Config, user: User, task_id: str) -> TaskView:
    """A task with its form, the data the form shows, what it offers, its added signers, and whose paper
    opinions the caller may record on it (for rendering or the API)."""
    task = get(session, user, task_id)
    instance = session.get(ProcessInstance, task.instance_id)
    version = VERSIONS.get(session, instance.version_id)
    main = session.get(HumanTask, task.parent_task_id) if task.kind == "signer" else task
    form = version.form(main.form_key)
    # An open task shows its own data (a signer: its main task's); a closed one the instance's data now.
    current = instance_data(session, instance, main.id if main.state == "open" else None)
    data = {k: v for k, v in current.items() if form is None or k in form.properties}
    names = list(session.scalars(select(User.name).join(TaskCandidate, TaskCandidate.user_id == User.id)
                                 .where(TaskCandidate.task_id == task.id)))
    signers = list(session.scalars(select(HumanTask).where(HumanTask.parent_task_id == task.id)
                                   .order_by(HumanTask.created_at)))
    grants = session.scalars(select(User).join(ProxyGrant, ProxyGrant.principal_id == User.id)
                             .where(ProxyGrant.proxy_id == user.id, User.is_active.is_(True))).all()
    proxy_for = [p for p in grants if task.state == "open" and may_act(session, p, task)]
    ops = version.task_config(task.bpmn_id) if task.kind == "task" else SIGNER_CONFIG
    if task.owner_id is not None:  # a delegate acts and hands back; deciding and passing on stay with the owner
        ops = replace(ops, buttons=tuple(b for b in ops.buttons if b not in (*OWNER_ONLY, "delegate")))
    return TaskView(task, instance, form, data, task.state == "open" and may_act(session, user, task), names,
                    ops, signers, proxy_for)


def _lock_open_task(session: Session, config: Config, user: User, task_id: str) -> tuple[Step, HumanTask]:
    # The instance and the task are read locked: what we read is what no one else can change now.
    try:
        step = Step.open(session, config, None, user, task_id=task_id)
    except NotFound:
        raise NotFound(f"task {task_id} not found") from None
    task = step.task_row
    if not _visible(session, user, task):
        raise NotFound(f"task {task_id} not found")
    if task.state != "open":
        raise Conflict("this task has already been completed or cancelled", code="task_closed", state=task.state)
    step.require_running()
    return step, task


def claim(session: Session, config: Config, user: User, task_id: str) -> HumanTask:
    """Take an offered task; 409 if someone else took it first."""
    step, task = _lock_open_task(session, config, user, task_id)
    if task.assignee_id == user.id:
        return task
    if task.assignee_id is not None:
        raise Conflict("another user has already claimed this task", code="task_claimed")
    if not is_candidate(session, user, task):
        raise Forbidden("this task is not offered to you", code="not_a_candidate")
    task.assignee_id, task.claimed_at = user.id, utcnow()
    step.event("task_claimed", task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name)
    session.flush()
    return task


def unclaim(session: Session, config: Config, user: User, task_id: str) -> HumanTask:
    """Give a claimed task back to its candidates."""
    step, task = _lock_open_task(session, config, user, task_id)
    if task.assignee_id != user.id:
        raise Forbidden("only the user who claimed the task can give it back", code="not_assignee")
    has_pool = session.scalar(select(TaskCandidate.id).where(TaskCandidate.task_id == task.id).limit(1))
    if has_pool is None:
        raise Conflict("this task was assigned, not claimed, and cannot be given back", code="not_claimable")
    task.assignee_id, task.claimed_at = None, None
    step.event("task_unclaimed", task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name)
    session.flush()
    return task


def assign(session: Session, config: Config, user: User, task_id: str, username: str, reason: str = "") -> HumanTask:
    """An administrator assigns a task (e.g. one whose rule matched nobody)."""
    if not user.can("instance.admin"):
        raise Forbidden("only process administrators may assign tasks", code="not_admin")
    step, task = _lock_open_task(session, config, user, task_id)
    target = session.scalar(select(User).where(User.username == username, User.is_active.is_(True)))
    if target is None:
        raise ValidationFailed("no such user", errors={"username": [FieldError("unknown_user", username).as_dict()]})
    task.assignee_id, task.assignment_error = target.id, None
    step.event("task_assigned", task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name,
               opinion=reason or None, assignee=target.username)
    session.flush()
    return task


def _check_references(session: Session, user: User, form: Form, data: dict, instance_id: int) -> dict:
    errors: dict[str, list[FieldError]] = {}
    for name, kind in form.references().items():
        if name not in data or name in form.readonly:
            continue
        value = data[name]
        values = value if isinstance(value, list) else [value]
        for v in values:
            if kind == "user" and session.scalar(select(User.id).where(User.username == str(v))) is None:
                errors.setdefault(name, []).append(FieldError("unknown_user", v))
            elif kind == "unit" and session.scalar(select(Unit.id).where(Unit.code == str(v))) is None:
                errors.setdefault(name, []).append(FieldError("unknown_unit", v))
            elif kind == "file" and not files.usable(session, user, v, instance_id):
                errors.setdefault(name, []).append(FieldError("unknown_file"))
    return errors


OPEN_TASKS = "emflow.open_tasks"  # session.info key: instance id -> its open task rows after a step
# Added signers still to come, loaded when the step found that there are some; built once.
_WAITING_SIGNERS = select(HumanTask).where(HumanTask.parent_task_id == bindparam("task_id"),
                                           HumanTask.state.in_(("open", "planned")))


def complete(session: Session, config: Config, user: User, task_id: str, data: dict | None = None, *,
             opinion: str | None = None, decision: str | None = None, action: str = "complete",
             signature: str | None = None, on_behalf_of: str | None = None) -> ProcessInstance:
    """Complete a task: validate the form data, run the workflow to its next wait, record it all.

    ``decision`` ("approve"/"reject") is put in the data as ``decision``; ``opinion`` may come with the form
    or apart from it; ``signature`` is a PNG data URL drawn by hand; ``on_behalf_of`` names the leader whose
    paper opinion a clerk records (领导意见代录). A delegate's completion hands the task back to its owner;
    added signers are waited for; a task returned with "send straight back" goes back to the step that
    returned it."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValidationFailed("data must be a JSON object", errors={"data": [FieldError("type", "object").as_dict()]})
    step, task = _lock_open_task(session, config, user, task_id)
    principal = _acting_for(session, user, task, on_behalf_of)
    if task.blocked:
        raise Conflict("added signers must sign before this task", code="waiting_for_signers")
    if task.pending is not None:
        raise Conflict("this task is decided and waits for added signers", code="waiting_for_signers")
    ops = step.version.task_config(task.bpmn_id) if task.kind == "task" else None
    if ops is not None and action == "approve" and not ops.allows("approve"):
        raise Conflict("this task does not offer 'approve'", code="operation_not_allowed", action="approve")
    if task.kind == "signer":
        form_data, errors = {}, {}
    else:
        spiff_task = step.workflow.get_task_from_id(UUID(task.id))
        if spiff_task is None or spiff_task.state != TaskState.READY:
            raise Conflict("the task is no longer ready", code="task_not_ready")
        form = step.version.form(task.form_key)
        form_data, errors = form.clean(data, spiff_task.data)
        errors.update(_check_references(session, user, form, form_data, task.instance_id))
        opinion = opinion or form_data.pop("opinion", None)
        form_data.pop("opinion", None)
    opinion = (opinion or "").strip() or None
    if not opinion and ops is not None and ops.opinion_required(action):
        errors.setdefault("opinion", []).append(FieldError("required"))
    if not signature and ops is not None and ops.signature == "required" and action != "complete_delegated":
        errors.setdefault("signature", []).append(FieldError("required"))
    raise_for(errors)
    signature_id = signatures.store(session, principal, signature, task.instance_id) if signature else None
    decided = {"data": form_data, "decision": decision, "opinion": opinion, "action": action,
               "by": user.id, "for": principal.id if principal is not user else None, "signature": signature_id}
    if task.kind == "signer":
        return _sign(step, task, user, decided)
    if task.owner_id is not None and task.assignee_id == user.id and on_behalf_of is None:
        return _resolve_delegation(step, task, spiff_task, user, decided)
    waiting = session.scalars(_WAITING_SIGNERS, {"task_id": task.id}).all() if step.signers_waiting else []
    if any(s.sign_position in ("after", "parallel") for s in waiting):
        task.pending = decided
        for signer in waiting:
            if signer.state == "planned":
                signer.state, signer.created_at = "open", utcnow()
                notify_signer(session, signer, step.instance.title)
        step.event("task_decided", task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name, opinion=opinion,
                   decision=decision, waiting_for=[s.id for s in waiting])
        step.save()
        return step.instance
    finish(step, task, spiff_task, decided)
    _remember_open_tasks(step)
    return step.instance


def _remember_open_tasks(step: Step) -> None:
    """Leave the instance's open tasks in the session for the caller's summary, when the step knows them."""
    rows = step.open_tasks()
    if rows is not None:
        step.session.info.setdefault(OPEN_TASKS, {})[step.instance.id] = rows


def known_open_tasks(session: Session, instance_id: int) -> list[HumanTask] | None:
    """The open tasks a step in this session left for ``instance_id`` (once), or None: then ask the database."""
    return session.info.get(OPEN_TASKS, {}).pop(instance_id, None)


def notify_signer(session: Session, signer: HumanTask, title: str) -> None:
    """Tell an added signer that their signature is wanted now, with a link to their task."""
    notifications.send(session, [session.get(User, signer.assignee_id)], f"加签：{signer.name}", title, "task",
                       f"/tasks/{signer.id}", signer.instance_id)


def finish(step: Step, task: HumanTask, spiff_task, decided: dict) -> None:
    """Apply a decision to the workflow: data in, task completed and recorded, the flow moved on."""
    session = step.session
    form = step.version.form(task.form_key)
    form_data = decided["data"]
    changes = {k: v for k, v in form_data.items() if spiff_task.data.get(k) != v and k not in form.readonly}
    spiff_task.data.pop("opinion", None)
    spiff_task.data.update(form_data)
    if decided.get("decision"):
        spiff_task.data["decision"] = decided["decision"]
    files.attach(session, [v for n, kind in form.references().items() if kind == "file" and n in changes
                           for v in (changes[n] if isinstance(changes[n], list) else [changes[n]])],
                 task.instance_id)
    by = decided["for"] or decided["by"]
    if task.assignee_id is None:
        task.assignee_id, task.claimed_at = by, utcnow()
    step.closed_by_caller.add(task.id)
    if task.claimed_at is not None:  # a claimed pool task: its candidates are no longer needed
        session.execute(delete(TaskCandidate).where(TaskCandidate.task_id == task.id))
    task.state, task.completed_by_id, task.completed_at = "completed", by, utcnow()
    task.opinion, task.pending = decided["opinion"], None
    extra = {k: decided.get(k) for k in ("decision", "action", "signature") if decided.get(k)}
    label = step.version.task_config(task.bpmn_id).labels.get(decided.get("action") or "")
    if label:  # the button's own wording (签收, 批示 …) is what the trail and the handling sheet show
        extra["label"] = label
    if decided["for"]:
        principal = session.get(User, decided["for"])
        extra["on_behalf_of"] = {"id": principal.id, "name": principal.name}
    # Recorded as the decider's act, also when the last added signer's signature completes it.
    actor = step.actor
    if decided["by"] != getattr(actor, "id", None):
        actor = session.get(User, decided["by"]) if decided["by"] else None
    step.event("task_completed", actor=actor, task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name,
               opinion=decided["opinion"], changes=changes, loop_item=task.loop_item, **extra)
    step.origin_task_id, step.decided_by = task.id, by
    if task.return_to_me and task.returned_from:  # 原路返回: straight back to the step that returned it
        step.jump(spiff_task, task.returned_from, returned_from=task.bpmn_id, to_me=False)
        step.run()
    else:
        step.run(spiff_task)
    step.save()


def _acting_for(session: Session, user, task: HumanTask, on_behalf_of: str | None):
    """Whose decision this is: the caller's own, or a leader's recorded by their proxy."""
    if on_behalf_of is None:
        if not may_act(session, user, task):
            raise Forbidden("you may not act on this task", code="not_your_task")
        return user
    principal = session.scalar(select(User).where(User.username == on_behalf_of, User.is_active.is_(True)))
    if principal is None or session.scalar(select(ProxyGrant.id).where(
            ProxyGrant.principal_id == principal.id, ProxyGrant.proxy_id == user.id)) is None:
        raise Forbidden("you may not record opinions for this person", code="not_a_proxy")
    if not may_act(session, principal, task):
        raise Forbidden("this task is not that person's to decide", code="not_your_task")
    return principal


def _resolve_delegation(step: Step, task: HumanTask, spiff_task, user, decided: dict) -> ProcessInstance:
    """The delegate has acted: their data and opinion stay with the task, which goes back to its owner."""
    form = step.version.form(task.form_key)
    changes = {k: v for k, v in decided["data"].items() if spiff_task.data.get(k) != v and k not in form.readonly}
    spiff_task.data.update(decided["data"])
    owner = task.owner_id
    task.assignee_id, task.owner_id = owner, None
    step.event("delegation_resolved", task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name,
               opinion=decided["opinion"], changes=changes, returned_to=owner, signature=decided["signature"])
    step.save()
    return step.instance


def _sign(step: Step, signer: HumanTask, user, decided: dict) -> ProcessInstance:
    """An added signer signs; the main task is released, or completed, when its signers are done."""
    session = step.session
    signer.state, signer.completed_by_id, signer.completed_at = "completed", user.id, utcnow()
    signer.opinion = decided["opinion"]
    step.closed_by_caller.add(signer.id)
    step.event("signer_signed", task_id=signer.id, bpmn_id=signer.bpmn_id, task_name=signer.name,
               opinion=decided["opinion"], decision=decided.get("decision"), position=signer.sign_position,
               signature=decided["signature"])
    main = session.get(HumanTask, signer.parent_task_id)
    left = [s for s in session.scalars(select(HumanTask).where(
        HumanTask.parent_task_id == main.id, HumanTask.state.in_(("open", "planned")))) if s.id != signer.id]
    if main.blocked and not any(s.sign_position == "before" for s in left):
        main.blocked = False
        step.event("task_released", task_id=main.id, bpmn_id=main.bpmn_id, task_name=main.name)
    if main.pending is not None and not left:
        spiff_task = step.workflow.get_task_from_id(UUID(main.id))
        finish(step, main, spiff_task, main.pending)
        return step.instance
    step.save()
    return step.instance

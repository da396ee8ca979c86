"""Human tasks: the inbox, reading a task with its form, claiming, and completing."""
from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.orm import Session

from . import files
from .config import Config
from .db import page_of
from .errors import Conflict, Forbidden, NotFound, ValidationFailed
from .forms import FieldError, Form, raise_for
from .models import HumanTask, ProcessInstance, TaskCandidate, Unit, User, utcnow
from .org import Scope, group_ids
from .runtime import Step, instance_data
from .versions import VERSIONS

SCOPES = ("mine", "group", "done", "unassigned")


def _offered_to(session: Session, user):
    # A literal list of group ids lets the planner use both candidate indexes (a sub-select would not).
    return or_(TaskCandidate.user_id == user.id, TaskCandidate.group_id.in_(group_ids(session, user)))


def _candidate_clause(session: Session, user):
    return exists().where(TaskCandidate.task_id == HumanTask.id, _offered_to(session, user))


def inbox(session: Session, user: User, scope: str = "mine", page: int = 1, per_page: int = 20):
    """One page of the user's tasks: mine (assigned), group (offered to claim), done; (items, total)."""
    if scope == "mine":
        stmt = select(HumanTask).where(HumanTask.assignee_id == user.id, HumanTask.state == "open")
        order = (HumanTask.created_at.desc(),)
    elif scope == "group":
        stmt = select(HumanTask).where(HumanTask.state == "open", HumanTask.assignee_id.is_(None),
                                       _candidate_clause(session, user))
        order = (HumanTask.created_at.desc(),)
    elif scope == "done":
        stmt = select(HumanTask).where(HumanTask.completed_by_id == user.id)
        order = (HumanTask.completed_at.desc(),)
    elif scope == "unassigned":
        if not user.can("instance.admin"):
            raise Forbidden("only process administrators see unassigned tasks", code="not_admin")
        stmt = select(HumanTask).where(HumanTask.state == "open", HumanTask.assignment_error.is_not(None))
        order = (HumanTask.created_at.desc(),)
    else:
        raise ValidationFailed(f"unknown scope '{scope}'", errors={"scope": [{"code": "enum", "message": scope}]})
    return page_of(session, stmt, order + (HumanTask.id,), page, per_page)



def counts(session: Session, user: User) -> dict[str, int]:
    """Badge numbers for the inbox tabs."""
    mine = session.scalar(select(func.count()).select_from(HumanTask).where(
        HumanTask.assignee_id == user.id, HumanTask.state == "open"))
    group = session.scalar(select(func.count()).select_from(HumanTask).where(
        HumanTask.state == "open", HumanTask.assignee_id.is_(None), _candidate_clause(session, user)))
    return {"mine": mine, "group": group}


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


def view(session: Session, config: Config, user: User, task_id: str) -> TaskView:
    """A task with its form and the data the form shows (for rendering or the API)."""
    task = get(session, user, task_id)
    instance = session.get(ProcessInstance, task.instance_id)
    version = VERSIONS.get(session, instance.version_id)
    form = version.form(task.form_key)
    # An open task shows its own data; a closed one shows the instance's data as it is now.
    current = instance_data(session, instance, task.id if task.state == "open" else None)
    data = {k: v for k, v in current.items() if form is None or k in form.properties}
    names = list(session.scalars(select(User.name).join(TaskCandidate, TaskCandidate.user_id == User.id)
                                 .where(TaskCandidate.task_id == task.id)))
    return TaskView(task, instance, form, data, task.state == "open" and may_act(session, user, task), names)


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


def complete(session: Session, config: Config, user: User, task_id: str, data: dict) -> ProcessInstance:
    """Complete a task: validate the form data, run the workflow to its next wait, record it all."""
    if not isinstance(data, dict):
        raise ValidationFailed("data must be a JSON object", errors={"data": [FieldError("type", "object").as_dict()]})
    step, task = _lock_open_task(session, config, user, task_id)
    if not may_act(session, user, task):
        raise Forbidden("you may not act on this task", code="not_your_task")
    spiff_task = step.workflow.get_task_from_id(UUID(task.id))
    if spiff_task is None or spiff_task.state != TaskState.READY:
        raise Conflict("the task is no longer ready", code="task_not_ready")
    form = step.version.form(task.form_key)
    cleaned, errors = form.clean(data, spiff_task.data)
    errors.update(_check_references(session, user, form, cleaned, task.instance_id))
    raise_for(errors)
    opinion = cleaned.pop("opinion", None)
    changes = {k: v for k, v in cleaned.items() if spiff_task.data.get(k) != v and k not in form.readonly}
    spiff_task.data.pop("opinion", None)
    spiff_task.data.update(cleaned)
    files.attach(session, [v for n, kind in form.references().items() if kind == "file" and n in changes
                           for v in (changes[n] if isinstance(changes[n], list) else [changes[n]])],
                 task.instance_id)
    if task.assignee_id is None:
        task.assignee_id, task.claimed_at = user.id, utcnow()
    step.closed_by_caller.add(task.id)
    if task.claimed_at is not None:  # a claimed pool task: its candidates are no longer needed
        session.execute(delete(TaskCandidate).where(TaskCandidate.task_id == task.id))
    task.state, task.completed_by_id, task.completed_at, task.opinion = "completed", user.id, utcnow(), opinion
    step.event("task_completed", task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name, opinion=opinion,
               changes=changes, loop_item=task.loop_item)
    step.run(spiff_task)
    step.save()
    return step.instance

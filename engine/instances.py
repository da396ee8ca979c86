"""Process instances: start, read and list within the caller's data scope, and admin operations."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.orm import Session

from . import incidents
from .config import Config
from .db import page_of
from .errors import Conflict, Forbidden, NotFound, ValidationFailed
from .models import (
    HumanTask,
    InstanceEvent,
    Job,
    MessageSubscription,
    ProcessInstance,
    ProcessModel,
    TaskCandidate,
    TaskCopy,
    User,
    utcnow,
)
from .org import Scope, group_ids
from .runtime import Step
from .versions import VERSIONS, latest_version_id

MAX_START_DATA = 64 * 1024
STATUSES = ("running", "suspended", "completed", "terminated", "error")


def may_start(user: User, meta: dict) -> bool:
    """Who may start a process: ``starters`` in process.json lists role codes, or '*' for everyone.
    Without it, any staff (non-enterprise) user may start."""
    starters = meta.get("starters")
    if user.is_superuser:
        return True
    if starters == "*":
        return True
    if not starters:
        return not user.is_enterprise
    return any(user.has_role(code) for code in starters)


def startable_models(session: Session, user: User) -> list[tuple[ProcessModel, dict]]:
    """Models the user may start, with their latest metadata."""
    out = []
    for model in session.scalars(select(ProcessModel).where(ProcessModel.latest_version > 0)
                                 .order_by(ProcessModel.category, ProcessModel.key)):
        version = VERSIONS.get(session, latest_version_id(session, model.key))
        if may_start(user, version.meta):
            out.append((model, version.meta))
    return out


def start(session: Session, config: Config, user: User, process_key: str, data: dict | None = None,
          business_key: str | None = None, title: str | None = None, start_event=None) -> ProcessInstance:
    """Start an instance of the latest version of a model and run it to its first wait.

    ``start_event`` (a BpmnEvent) triggers a message start event once the instance waits for it.
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValidationFailed("data must be a JSON object", errors={"data": [{"code": "type", "message": "object"}]})
    if len(repr(data)) > MAX_START_DATA:
        raise ValidationFailed("start data is too large", errors={"data": [{"code": "maxLength",
                                                                             "message": str(MAX_START_DATA)}]})
    bad = [k for k in data if not isinstance(k, str) or not k.isidentifier() or k.startswith("_")]
    if bad:
        raise ValidationFailed("data keys must be identifiers not starting with _",
                               errors={k: [{"code": "invalid", "message": "invalid key"}] for k in map(str, bad)})
    version_id = latest_version_id(session, process_key)
    version = VERSIONS.get(session, version_id)
    if not may_start(user, version.meta):
        raise Forbidden(f"you may not start '{process_key}'", code="not_a_starter")
    today = utcnow().astimezone(ZoneInfo(config.timezone))
    title = title or f"{version.name}（{user.name} {today:%Y-%m-%d}）"
    instance = ProcessInstance(
        process_key=process_key, version_id=version_id, status="running", business_key=business_key,
        title=title[:300], region_code=user.region_code, enterprise_id=user.enterprise_id, initiator_id=user.id,
        unit_id=user.unit_id, state="", completed_elements=[], active_elements=[], waits_for_messages=False,
    )
    session.add(instance)
    session.flush()
    step = Step.new(session, config, instance, user)
    step.workflow.get_next_task(state=TaskState.READY).set_data(
        **data, initiator=user.username, business_key=business_key)
    step.event("started", business_key=business_key, title=instance.title, version=version.version)
    step.run()
    if start_event is not None:
        step.workflow.send_event(start_event)
        step.run()
    step.save()
    return instance


def participates(session: Session, user: User, instance_id: int) -> bool:
    """True if the user holds, is offered or completed one of the instance's tasks, or it was copied to them."""
    cand = exists().where(TaskCandidate.task_id == HumanTask.id, or_(
        TaskCandidate.user_id == user.id, TaskCandidate.group_id.in_(group_ids(session, user))))
    q = select(HumanTask.id).where(HumanTask.instance_id == instance_id, or_(
        HumanTask.assignee_id == user.id, HumanTask.completed_by_id == user.id, cand)).limit(1)
    if session.scalar(q) is not None:
        return True
    return session.scalar(select(TaskCopy.id).where(TaskCopy.instance_id == instance_id,
                                                    TaskCopy.user_id == user.id).limit(1)) is not None


def get(session: Session, user: User, instance_id: int) -> ProcessInstance:
    """An instance the user may see; NotFound otherwise (scope is never revealed)."""
    inst = session.get(ProcessInstance, instance_id)
    if inst is None:
        raise NotFound(f"process instance {instance_id} not found")
    if Scope(session, user).allows(inst.region_code, inst.enterprise_id) or inst.initiator_id == user.id \
            or participates(session, user, instance_id):
        return inst
    raise NotFound(f"process instance {instance_id} not found")


@dataclass
class Filters:
    process_key: str | None = None
    status: str | None = None
    business_key: str | None = None
    q: str | None = None
    mine: bool = False
    created_from: datetime | None = None
    created_to: datetime | None = None


def query(session: Session, user: User, f: Filters, page: int = 1, per_page: int = 20):
    """Instances in the user's data scope (plus ones they initiated), newest first; (items, total)."""
    scope = Scope(session, user)
    stmt = select(ProcessInstance).where(or_(
        scope.clause(ProcessInstance.region_code, ProcessInstance.enterprise_id),
        ProcessInstance.initiator_id == user.id))
    if f.process_key:
        stmt = stmt.where(ProcessInstance.process_key == f.process_key)
    if f.status:
        stmt = stmt.where(ProcessInstance.status == f.status)
    if f.business_key:
        stmt = stmt.where(ProcessInstance.business_key == f.business_key)
    if f.q:
        stmt = stmt.where(ProcessInstance.title.contains(f.q, autoescape=True))
    if f.mine:
        stmt = stmt.where(ProcessInstance.initiator_id == user.id)
    if f.created_from:
        stmt = stmt.where(ProcessInstance.created_at >= f.created_from)
    if f.created_to:
        stmt = stmt.where(ProcessInstance.created_at < f.created_to)
    return page_of(session, stmt, (ProcessInstance.created_at.desc(), ProcessInstance.id.desc()), page, per_page)


def history(session: Session, instance_id: int) -> list[InstanceEvent]:
    return list(session.scalars(select(InstanceEvent).where(InstanceEvent.instance_id == instance_id)
                                .order_by(InstanceEvent.seq)))


def active_tasks(session: Session, instance_id: int) -> list[HumanTask]:
    return list(session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                        HumanTask.state == "open").order_by(HumanTask.created_at)))


def _require_admin(user: User) -> None:
    if not user.can("instance.admin"):
        raise Forbidden("only process administrators may do this", code="not_admin")


def suspend(session: Session, config: Config, user: User, instance_id: int, reason: str = "") -> ProcessInstance:
    """Stop an instance from moving: tasks stay open but cannot be completed; timers and jobs wait."""
    _require_admin(user)
    get(session, user, instance_id)
    step = Step.open(session, config, instance_id, user)
    step.require_running()
    step.instance.status = "suspended"
    step.event("suspended", opinion=reason or None)
    session.flush()
    return step.instance


def resume(session: Session, config: Config, user: User, instance_id: int, reason: str = "",
           resolution: str = "resumed") -> ProcessInstance:
    """Let a suspended or failed instance move again; its open incidents count as handled."""
    _require_admin(user)
    get(session, user, instance_id)
    step = Step.open(session, config, instance_id, user)
    if step.instance.status not in ("suspended", "error"):
        raise Conflict(f"the process instance is {step.instance.status}", code="instance_not_suspended")
    step.instance.status, step.instance.error = "running", None
    step.event("resumed", opinion=reason or None)
    incidents.resolve_open(session, user, instance_id, resolution, reason)
    # Failed calls get a fresh set of attempts; results that arrived while suspended are applied.
    session.execute(update(Job).where(Job.instance_id == instance_id, Job.status == "failed")
                    .values(status="pending", attempts=0, available_at=utcnow()))
    session.execute(update(Job).where(Job.instance_id == instance_id, Job.status == "waiting")
                    .values(status="pending", available_at=utcnow()))
    step.run()
    step.save()
    return step.instance


def terminate(session: Session, config: Config, user: User, instance_id: int, reason: str = "") -> ProcessInstance:
    """End an instance for good: open tasks are cancelled, waiting jobs and subscriptions dropped."""
    _require_admin(user)
    get(session, user, instance_id)
    step = Step.open(session, config, instance_id, user)
    if step.instance.status in ("completed", "terminated"):
        raise Conflict(f"the process instance is already {step.instance.status}", code="instance_ended")
    inst = step.instance
    inst.status, inst.ended_at, inst.next_timer_at = "terminated", utcnow(), None
    session.execute(update(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.state == "open")
                    .values(state="cancelled"))
    # A running job's result is then ignored: applying it checks the job is still "running".
    session.execute(update(Job).where(Job.instance_id == instance_id,
                                      Job.status.in_(("pending", "queued", "running", "waiting", "failed")))
                    .values(status="cancelled"))
    session.execute(delete(MessageSubscription).where(MessageSubscription.instance_id == instance_id))
    inst.waits_for_messages = False
    inst.active_elements = []
    step.event("terminated", opinion=reason or None)
    session.flush()
    return inst

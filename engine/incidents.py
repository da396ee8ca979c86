"""Incidents: what stopped an instance and needs an administrator, who retries it or skips it with a reason."""
from __future__ import annotations

from uuid import UUID

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import audit, clock
from .config import Config
from .db import page_of
from .errors import Conflict, Forbidden, NotFound, ValidationFailed
from .forms import FieldError
from .models import Incident, Job, ProcessInstance, User
from .runtime import Step


def raise_for_job(session: Session, inst: ProcessInstance, job: Job, message: str, operation: str | None) -> Incident:
    """A service call failed for good and no error boundary caught it: the instance stops in error."""
    bpmn_id = (job.payload or {}).get("bpmn_id")
    return _raise(session, inst, "service_task", f"service task {bpmn_id}: {message}", job_id=job.id,
                  task_id=job.task_id, bpmn_id=bpmn_id, operation=operation, attempts=job.attempts)


def raise_for_step(session: Session, inst: ProcessInstance, message: str) -> Incident:
    """A background engine step (a timer, a timeout) failed: the instance stops in error."""
    return _raise(session, inst, "engine", message)


def _raise(session: Session, inst: ProcessInstance, kind: str, message: str, **fields) -> Incident:
    inst.status, inst.error = "error", message[:2000]
    incident = Incident(instance_id=inst.id, kind=kind, message=message[:4000], **fields)
    session.add(incident)
    session.flush()
    audit.record(session, inst, "incident", task_id=fields.get("task_id"), bpmn_id=fields.get("bpmn_id"),
                 error=message[:2000], attempts=fields.get("attempts", 0), incident=incident.id)
    return incident


def _require_admin(user: User) -> None:
    if not user.can("instance.admin"):
        raise Forbidden("only process administrators may handle incidents", code="not_admin")


def search(session: Session, user: User, state: str = "open", instance_id: int | None = None,
           page: int = 1, per_page: int = 20) -> tuple[list[Incident], int]:
    """Incidents, newest first, with the total; ``state`` is open, resolved or all."""
    _require_admin(user)
    stmt = select(Incident)
    if state == "open":
        stmt = stmt.where(Incident.resolved_at.is_(None))
    elif state == "resolved":
        stmt = stmt.where(Incident.resolved_at.is_not(None))
    if instance_id is not None:
        stmt = stmt.where(Incident.instance_id == instance_id)
    return page_of(session, stmt, (Incident.created_at.desc(), Incident.id.desc()), page, per_page)


def _open(session: Session, user: User, incident_id: int) -> Incident:
    _require_admin(user)
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(f"incident {incident_id} does not exist")
    if incident.resolved_at is not None:
        raise Conflict(f"incident {incident_id} was already {incident.resolution}", code="incident_resolved")
    return incident


def resolve_open(session: Session, user: User | None, instance_id: int, resolution: str, reason: str = "") -> None:
    """Mark every open incident of an instance as handled (the instance is running again)."""
    session.execute(update(Incident).where(Incident.instance_id == instance_id, Incident.resolved_at.is_(None))
                    .values(resolved_at=clock.now(), resolved_by_id=getattr(user, "id", None),
                            resolution=resolution, reason=reason or None))


def retry(session: Session, config: Config, user: User, incident_id: int, reason: str = "") -> Incident:
    """Run the failed step again: failed calls get a fresh set of attempts with the same idempotency key."""
    from .instances import resume

    incident = _open(session, user, incident_id)
    resume(session, config, user, incident.instance_id, reason, resolution="retried")
    return incident


def skip(session: Session, config: Config, user: User, incident_id: int, reason: str) -> Incident:
    """Give up on a failed service call: its result variable is left empty and the process moves on."""
    incident = _open(session, user, incident_id)
    if not (reason or "").strip():
        raise ValidationFailed("skipping a failed step needs a reason", errors={"reason": [FieldError("required")
                                                                                           .as_dict()]})
    if incident.kind != "service_task":
        raise Conflict("only a failed service task can be skipped; retry this one", code="incident_not_skippable")
    step = Step.open(session, config, incident.instance_id, user)
    if step.instance.status != "error":
        raise Conflict(f"the process instance is {step.instance.status}", code="instance_not_in_error")
    task = step.workflow.get_task_from_id(UUID(incident.task_id))
    if task is None or task.state != TaskState.STARTED:
        raise Conflict("the failed service task is no longer waiting", code="task_not_waiting")
    job = session.get(Job, incident.job_id)
    result_variable = (job.payload or {}).get("result_variable") if job else None
    if result_variable:
        task.data[result_variable] = None
    if job is not None:
        job.status, job.updated_at = "skipped", clock.now()
    step.instance.status, step.instance.error = "running", None
    resolve_open(session, user, incident.instance_id, "skipped", reason)
    step.event("incident_skipped", task_id=incident.task_id, bpmn_id=incident.bpmn_id, opinion=reason,
               incident=incident.id, operation=incident.operation)
    step.run(task)
    step.save()
    return incident
